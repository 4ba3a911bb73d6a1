"""The engine façade: one object per data directory, methods named after the Kinesis actions."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from .._tasks import cancel_and_wait
from ..clock import Clock, SystemClock
from ..errors import ServiceUnavailable
from ..settings import Settings
from ..storage.catalog import Catalog, DamagedStream
from ..storage.journal import Journal, JournalReport
from ..storage.log import FileCache, RecoveryReport, ShardLog
from ..storage.sync import GroupCommitter
from .account import Account
from .admin import Admin
from .changes import remove_expired
from .channels import Channels
from .control import ControlPlane
from .data import DataPlane
from .iterators import IteratorCodec
from .queues import Queues
from .resharding import Resharding
from .stream_settings import StreamSettings
from .streams import StreamState
from .subscriptions import Subscriptions
from .view import EngineView

__all__ = ["Engine"]

log = logging.getLogger("shardline.engine")


class Engine(DataPlane, StreamSettings, ControlPlane, Resharding, Admin, Account, Channels, Queues, Subscriptions):
    """An embedded Kinesis engine over one data directory.

    ```python
    async with Engine(Settings(data_dir=Path("data"))) as engine:
        await engine.create_stream("orders", 2)
        await engine.put_record(stream_name="orders", data=b"{}", partition_key="o-1")
    ```
    Every method is a coroutine and must be called from the event loop that opened the engine. The layers above
    read its state through ``view`` (engine/view.py), never through its internal objects.
    """

    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None, **overrides: Any) -> None:
        base = settings or Settings()
        if "data_dir" in overrides:
            overrides["data_dir"] = Path(overrides["data_dir"])
        self.settings = replace(base, **overrides) if overrides else base
        self.clock = clock or SystemClock()
        self.catalog = Catalog(Path(self.settings.data_dir))
        self.files = FileCache(self.settings.open_read_files)
        self.committer = GroupCommitter()
        self.streams: dict[str, StreamState] = {}
        self.damaged_streams: dict[str, DamagedStream] = {}
        self.disk_full = False  # the last write failed for want of space (see _no_space)
        self.storage_failed: str | None = None  # an fsync failed: writes refused until a restart (_fsync_failed)
        self.recovery_reports: list[RecoveryReport] = []
        self.journal_report = JournalReport()
        self._checkpoint_lock = asyncio.Lock()
        self._next_transition_ms = 0
        self._next_yield_ms = 0.0
        self._closed = True
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions = {}  # SubscribeToShard: who reads each consumer and shard (engine/subscriptions.py)
        self._subscription_buckets = {}
        self.view = EngineView(self)  # what the layers above read (engine/view.py)

    # ----------------------------------------------------------------- lifecycle
    @property
    def closed(self) -> bool:
        """True before ``open`` and after ``close``: the engine serves nothing then."""
        return self._closed

    async def open(self) -> Engine:
        self.catalog.open()
        self.iterators = IteratorCodec(self.catalog.secret)
        try:
            for stream_id, meta in self.catalog.load_streams():
                try:
                    st = StreamState.from_dict(stream_id, meta)
                except (KeyError, TypeError, ValueError) as exc:
                    reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                    name = meta.get("name")
                    self.catalog.report_damaged(
                        DamagedStream(
                            stream_id,
                            self.catalog.stream_dir(stream_id) / "stream.json",
                            reason,
                            name if isinstance(name, str) and name else None,
                        )
                    )
                    continue
                for sh in st.shards:
                    if not sh.expired:
                        self._open_shard(st, sh)
                    else:  # (what a crash left between the metadata that expired it and the removal of its files)
                        remove_expired(self, st, sh)
                self._make_buckets(st)
                st.rebuild_router()
                self.streams[st.name] = st
            self.damaged_streams = {d.stream_id: d for d in self.catalog.damaged_streams}
            self._open_journal()
        except BaseException:
            self._close_logs()
            self.catalog.close(clean=False)
            raise
        self._closed = False
        self._tick()
        self._tasks.append(asyncio.create_task(self._retention_loop(), name="shardline-retention"))
        self._tasks.append(asyncio.create_task(self._checkpoint_loop(), name="shardline-journal-checkpoint"))
        if self.settings.fsync == "interval":
            self._tasks.append(asyncio.create_task(self._interval_sync_loop(), name="shardline-fsync-interval"))
        log.info(
            "engine open: %s, %d streams, clean=%s",
            self.settings.data_dir,
            len(self.streams),
            self.catalog.was_clean,
        )
        if self.damaged_streams:
            log.error(
                "%d damaged streams not served (see the errors above): %s",
                len(self.damaged_streams),
                ", ".join(d.name or d.stream_id for d in self.damaged_streams.values()),
            )
        return self

    def _salvage_journal(self, records: int) -> None:
        """Some replayed records belong to no loaded stream while a stream is damaged: they may be its acknowledged
        records, which exist nowhere else yet, so the journal is copied aside before the checkpoint drops it."""
        target = self.catalog.salvage_journal(self.clock.now_ms())
        damaged = ", ".join(d.name or d.stream_id for d in self.damaged_streams.values())
        log.error(
            "journal replay: %d records belong to no loaded stream while damaged: %s; the journal is kept in %s so "
            "that they can be restored once the stream's metadata is repaired",
            records,
            damaged,
            target,
        )

    def _open_journal(self) -> None:
        """Replay what the journal holds beyond the shard logs, write it to the segments and checkpoint."""
        s = self.settings
        by_tag = {st.tag: st for st in self.streams.values()}

        def resolve(tag: int, index: int) -> ShardLog | None:
            st = by_tag.get(tag)
            sh = st.shard(index) if st is not None else None
            return sh.log if sh is not None else None

        self.journal, report = Journal.open(
            self.catalog.journal_dir,
            resolve,
            file_bytes=s.journal_file_bytes,
            durable=s.fsync != "never",
            max_span_ms=s.journal_batch_span_ms,
            shards=[(st.tag, sh.index) for st in self.streams.values() for sh in st.shards if sh.log is not None],
            acks_unsynced=s.fsync != "always",
        )
        self.journal_report = report
        if report.orphaned and self.damaged_streams:
            self._salvage_journal(report.orphaned)
        try:
            self.journal.checkpoint_now()
        except OSError as exc:
            if self._no_space(exc) is None:
                raise
            # Start read-only rather than not at all: the replayed records stay staged (readable from memory) and
            # in the journal, which keeps its files until a checkpoint succeeds once space is freed.
            log.error("starting read-only: the replayed records cannot be written to their shards yet")
        for st in self.streams.values():
            st.incoming.restart()  # replayed records were counted when they were put
        if report.records or not report.clean:
            log.warning(
                "journal replay: %d records written to their shards (%d already there, %d of deleted streams), "
                "%d shard bytes after a hole refilled, %d damaged frames repaired, torn tail %d bytes, %d records "
                "lost, damage: %s",
                report.records,
                report.already_written,
                report.orphaned,
                report.cut_bytes,
                report.repaired,
                report.torn_bytes,
                report.lost_records,
                "; ".join(report.damaged) or "none",
            )
        for loss in report.lost:
            lost_st = by_tag.get(loss.tag)
            sh = lost_st.shard(loss.index) if lost_st is not None else None
            if lost_st is not None and sh is not None:
                log.error(
                    "stream %s %s: %d records lost at sequence numbers %s..%s (offsets %d..%d); their numbers are "
                    "never handed out again",
                    lost_st.name,
                    sh.shard_id,
                    loss.end - loss.first,
                    sh.seq_prefix + loss.first,
                    sh.seq_prefix + loss.end - 1,
                    loss.first,
                    loss.end - 1,
                )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._end_all_subscriptions()
        await cancel_and_wait(self._tasks)
        await self.committer.close()
        if self.storage_failed is not None:
            self._close_failed()
            return
        try:
            self._close_logs()
            self.journal.close()
        except OSError as exc:
            # (a full disk) what could not be written to the shard logs is still in the journal, which is left as
            # it is (no checkpoint past it): the next open replays it, as after a crash.
            log.error("closing without a final checkpoint, the next start replays the journal: %s", exc)
            self.files.close()
            self.catalog.close(clean=False)
            return
        self.files.close()
        self.catalog.close(clean=True)

    def _close_failed(self) -> None:
        """Close after a failed fsync (_fsync_failed): no final checkpoint, the journal keeps every record since the
        last good one and the next open replays it, as after a crash."""
        try:
            self._close_logs()
        except OSError as exc:
            log.error("closing the shard logs failed: %s", exc)
        self.journal.release()
        log.error("closing without a final checkpoint after a failed fsync, the next start replays the journal")
        self.files.close()
        self.catalog.close(clean=False)

    def _close_logs(self) -> None:
        """Close every shard log; the first failure is raised once all were tried."""
        error: OSError | None = None
        for st in self.streams.values():
            for sh in st.shards:
                if sh.log is not None:
                    try:
                        sh.log.close()
                    except OSError as exc:
                        error = error or exc
        if error is not None:
            raise error

    async def __aenter__(self) -> Engine:
        return await self.open()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def was_clean(self) -> bool:
        """Whether the previous process closed the data directory cleanly."""
        return self.catalog.was_clean

    @property
    def recovery(self) -> list[RecoveryReport]:
        """What opening each shard log found (torn tails cut, damaged ranges)."""
        return list(self.recovery_reports)

    # ----------------------------------------------------------------- retention
    def enforce_retention(self) -> int:
        """Delete whole segments past each stream's retention, and closed shards whose data has all expired.
        Returns the number of records removed. Runs periodically in the background; callable directly."""
        self._tick()
        now = self.clock.now_ms()
        removed = 0
        for st in list(self.streams.values()):
            cutoff = now - st.retention_hours * 3600_000
            expiring = []
            for sh in st.shards:
                lg = sh.log
                if lg is None:
                    continue
                if sh.closed_ms is not None and sh.closed_ms < cutoff:
                    expiring.append(sh)
                    continue
                removed += lg.trim_before_time(cutoff)
            if expiring:
                records = sum(sh.log.next_offset - sh.log.log_start for sh in expiring if sh.log is not None)
                # Metadata first, files after (_change): a failed save keeps the shards and their records as they
                # were, for the next pass; a crash after it leaves files the next open removes.
                with self._change(st):
                    for sh in expiring:
                        sh.expired = True
                removed += records
        return removed

    async def _retention_loop(self) -> None:
        while True:
            await self.clock.sleep(self.settings.retention_check_interval_s)
            try:
                n = self.enforce_retention()
                if n:
                    log.info("retention removed %d records", n)
            except Exception:
                log.exception("retention pass failed")

    async def _interval_sync_loop(self) -> None:
        """fsync=interval: every put is in the journal, so fsyncing the journal bounds what a crash can lose."""
        while True:
            await asyncio.sleep(self.settings.fsync_interval_ms / 1000)
            position = self.journal.position
            if self.journal.synced_position >= position or self.storage_failed is not None:
                continue
            try:
                await self.committer.run(self.journal.sync)
                self.journal.mark_synced(position)
            except OSError as exc:
                self._fsync_failed(exc, "the journal")  # (puts are refused from now on)
            except Exception:
                log.exception("interval fsync failed")

    async def checkpoint(self) -> None:
        """Write every staged record to its segments, fsync them (unless fsync=never) and move the journal's
        checkpoint, so recovery replays nothing before this point. Runs every journal_checkpoint_ms.

        After a failed fsync (_fsync_failed) it raises ServiceUnavailable and records nothing: a later fsync may
        succeed although bytes were lost, so the journal keeps everything since the last good checkpoint."""
        journal = self.journal
        # One at a time: a later checkpoint must not record its position while an earlier one's fsyncs run.
        async with self._checkpoint_lock:
            self._refuse_when_failed()
            position, logs = journal.begin_checkpoint()
            if journal.durable and logs:
                try:
                    await self.committer.fsync(logs)
                except OSError as exc:
                    journal.abort_checkpoint(logs)
                    raise self._fsync_failed(exc, "a shard segment") from exc
                except BaseException:
                    journal.abort_checkpoint(logs)
                    raise
            self._refuse_when_failed()  # (a put's journal fsync may have failed meanwhile)
            await self.committer.run(journal.finish_checkpoint, position)

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.journal_checkpoint_ms / 1000)
            try:
                await self.checkpoint()
            except ServiceUnavailable:
                pass  # (a failed fsync: logged once when it happened; nothing is recorded until a restart)
            except OSError as exc:
                if self._no_space(exc) is None:  # (a full disk is logged once, not every pass)
                    log.exception("journal checkpoint failed")
            except Exception:
                log.exception("journal checkpoint failed")
