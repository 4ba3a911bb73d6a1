"""A MySQL/MariaDB source from end to end: check the server, snapshot, then stream the binary log into a sink.

Order and completeness:
- The snapshot's rows are put before streaming starts, and streaming starts at the position the first snapshot
  read was consistent with, so every change after the snapshot is put after it. Rows a resumed snapshot read at a
  later position already hold the changes logged before that position: the reader skips those changes
  (``Checkpoint.tables[...].read_at``), so no row goes back in time.
- Records go out through ``put_ordered`` (sink.py: no two records of one key in flight). The checkpoint moves to
  the end of a transaction only after every record up to it is acknowledged, and only there; after a crash the
  source resumes there and puts again what followed (at most the transactions whose records were in flight).
  Consumers can drop those duplicates by ``source.file``/``pos``/``row`` (or the GTID).
"""

from __future__ import annotations

import asyncio
import logging
import queue
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock
from .binlog import Batch, BinlogReader
from .checkpoint import Checkpoint, TableProgress, is_mariadb_gtid, merge_gtid
from .config import SourceConfig
from .envelope import Change, Position, record
from .server import (
    ServerInfo,
    SourceSetupError,
    Table,
    binary_logs,
    check_server,
    connect,
    list_tables,
    row_estimates,
)
from .sink import Sink, put_ordered
from .snapshot import begin_consistent_read, current_position, decode_row, fetch_rows, read_chunk, scan
from .stats import SourceStats

__all__ = ["MySqlSource"]

log = logging.getLogger("shardline.sources")

MAX_TAKE_ROWS = 5000  # changes put (and held in memory) at once at most, beyond one transaction's batch


class MySqlSource:
    def __init__(
        self,
        cfg: SourceConfig,
        sink: Sink,
        state_dir: Path,
        *,
        clock: Clock | None = None,
        stats: SourceStats | None = None,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.checkpoint = Checkpoint.load(state_dir / f"{cfg.name}.json")
        self.clock = clock or SystemClock()
        # (a source started again after a failure keeps counting into the same stats: its counters never go back)
        self.stats = stats or SourceStats(cfg.name, cfg.stream, self.clock)
        self.info: ServerInfo | None = None
        self.tables: dict[str, Table] = {}
        self._reader: BinlogReader | None = None
        self._stopping = False

    # ----------------------------------------------------------------- running
    async def run(self) -> None:
        """Snapshot (when configured and not done) and then stream until ``stop``."""
        conn = await asyncio.to_thread(connect, self.cfg)
        try:
            self.info = await asyncio.to_thread(check_server, conn)
            self.tables = {t.full_name: t for t in await asyncio.to_thread(list_tables, conn, self.cfg)}
            log.info(
                "source %s: %s %s at %s, %d tables -> stream %s (%s)",
                self.cfg.name, self.info.flavour, self.info.version, self.cfg.where, len(self.tables),
                self.cfg.stream, self.cfg.format,
            )  # fmt: skip
            cp = self.checkpoint
            if cp.binlog is None and (self.cfg.snapshot == "never" or not self.tables):
                cp.binlog = await asyncio.to_thread(current_position, conn)
                cp.snapshot_done = True
                await asyncio.to_thread(cp.save)
        finally:
            await asyncio.to_thread(conn.close)
        if not self.checkpoint.snapshot_done:
            await self._snapshot()
        if not self._stopping:
            await self._stream()

    async def stop(self) -> None:
        self._stopping = True
        if self._reader is not None:
            self._reader.stop()

    def _record(self, change: Change) -> tuple[bytes, str]:
        assert self.info is not None
        return record(
            change,
            fmt=self.cfg.format,
            source_name=self.cfg.name,
            connector=self.info.flavour,
            server_id=self.info.server_id,
            now_ms=self.clock.now_ms(),
        )

    # ----------------------------------------------------------------- snapshot
    async def _snapshot(self) -> None:
        cp = self.checkpoint
        conn = await asyncio.to_thread(connect, self.cfg, autocommit=False)
        try:
            assert self.info is not None
            at = await asyncio.to_thread(begin_consistent_read, conn, self.info.flavour)
            if cp.snapshot_start is None:
                cp.snapshot_start = at
            self.stats.snapshot_started({n: t.rows for n, t in cp.tables.items()}, list(self.tables))
            self.stats.snapshot_estimates = await asyncio.to_thread(row_estimates, conn, list(self.tables.values()))
            for name, table in self.tables.items():
                progress = cp.tables.setdefault(name, TableProgress())
                if progress.done:
                    continue
                if progress.after is not None and table.integer_key:
                    progress.segments.append((list(progress.after), at))
                else:  # (a key Python cannot order like the server: read the table again from its first row)
                    progress.after, progress.segments = None, [(None, at)]
                await asyncio.to_thread(cp.save)
                await self._snapshot_table(conn, table, progress, at)
                if self._stopping:
                    return
            # End the consistent read before streaming starts: its transaction holds a metadata lock on every table it
            # read, which would hold up (and queue every later query of the table behind) an ALTER TABLE.
            await asyncio.to_thread(conn.rollback)
            cp.snapshot_done = True
            if cp.binlog is None:
                cp.binlog = cp.snapshot_start
            await asyncio.to_thread(cp.save)
            self.stats.snapshot_finished()
            log.info("source %s: snapshot done; streaming from %s:%d", self.cfg.name, cp.binlog.file, cp.binlog.pos)
        finally:
            await asyncio.to_thread(conn.close)

    async def _snapshot_table(self, conn: Any, table: Table, progress: TableProgress, at: Position) -> None:
        cursor = await asyncio.to_thread(scan, conn, table) if not table.key else None
        try:
            await self._snapshot_rows(conn, cursor, table, progress, at)
        finally:
            if cursor is not None:
                await asyncio.to_thread(cursor.close)

    async def _snapshot_rows(self, conn: Any, cursor: Any, table: Table, progress: TableProgress, at: Position) -> None:
        while not self._stopping:
            if cursor is not None:
                rows = await asyncio.to_thread(fetch_rows, cursor, table, self.cfg.chunk_size)
            else:
                rows = await asyncio.to_thread(read_chunk, conn, table, progress.after, self.cfg.chunk_size)
            now = self.clock.now_ms()
            key_cols = tuple(c for c in table.columns if c in table.key)  # (key columns in column order)
            changes = [
                Change("r", table.db, table.name, key_cols, None, image, now, at.file, at.pos, 0, None, snapshot="true")
                for image in (decode_row(table, row) for row in rows)
            ]
            if changes:
                await put_ordered(self.sink, [self._record(c) for c in changes])
                progress.rows += len(rows)
                self.stats.rows(table.full_name, len(rows), snapshot=True)
            if len(rows) < self.cfg.chunk_size:
                progress.done = True
            elif table.key:
                progress.after = [rows[-1][k] for k in table.key]
            await asyncio.to_thread(self.checkpoint.save)
            if progress.done:
                return

    # ----------------------------------------------------------------- streaming
    def _skip(self, change: Change) -> bool:
        """Whether a resumed snapshot already read this change's result (its row was read at a later position)."""
        progress = self.checkpoint.tables.get(f"{change.db}.{change.table}")
        table = self.tables.get(f"{change.db}.{change.table}")
        if progress is None or table is None or not progress.segments:
            return False
        image = change.after if change.after is not None else change.before
        assert image is not None
        key = tuple(image.get(k) for k in table.key) if table.integer_key else None
        read_at = progress.read_at(key)
        return read_at is not None and Position(change.file, change.pos).before(read_at)

    async def _stream(self) -> None:
        cp = self.checkpoint
        assert cp.binlog is not None
        conn = await asyncio.to_thread(connect, self.cfg)
        try:
            logs = await asyncio.to_thread(binary_logs, conn)
        finally:
            await asyncio.to_thread(conn.close)
        by_gtid = self.info is not None and self.info.flavour == "mariadb" and is_mariadb_gtid(cp.gtid)
        have_file = cp.binlog.file in [name for name, _size in logs]
        if not have_file and not by_gtid:
            raise SourceSetupError(
                f"source {self.cfg.name}: the server no longer has {cp.binlog.file}, where its checkpoint is (the "
                f"binary log was purged); remove {cp.path} to start over with a snapshot"
            )
        # (resumed by GTID from a purged file: no binary-log figures until the next commit)
        self.stats.checkpoint = cp.binlog if have_file else None
        if by_gtid:
            log.info("source %s: resuming after GTID %s", self.cfg.name, cp.gtid)
        reader = self._reader = BinlogReader(self.cfg, cp.binlog, gtid=cp.gtid if by_gtid else None)
        reader.begin()
        try:
            while not self._stopping:
                batches = await asyncio.to_thread(_take, reader.queue, 0.5)
                if not batches:
                    self.stats.idle()
                    continue
                entries: list[tuple[bytes, str]] = []
                end: Batch | None = None
                for batch in batches:
                    for change in batch.changes:
                        if not self._skip(change):
                            entries.append(self._record(change))
                            self.stats.rows(f"{change.db}.{change.table}", 1, snapshot=False)
                    if batch.end is not None:
                        end = batch
                    self.stats.event(batch.event_ts_ms)
                if entries:
                    await put_ordered(self.sink, entries)
                if end is not None and end.end is not None:
                    cp.binlog = end.end
                    if end.gtid is not None:
                        mariadb = is_mariadb_gtid(end.gtid)
                        cp.gtid = (
                            merge_gtid(cp.gtid if is_mariadb_gtid(cp.gtid) else None, end.gtid) if mariadb else end.gtid
                        )
                    await asyncio.to_thread(cp.save)
                    self.stats.checkpointed(end.end)
        finally:
            reader.stop()
            await asyncio.to_thread(reader.thread.join)


def _take(q: queue.Queue[Batch | BaseException], timeout_s: float) -> list[Batch]:
    """Wait up to ``timeout_s`` for a batch, then take every batch already queued (a reader error is raised)."""
    out: list[Batch] = []
    rows = 0
    try:
        item = q.get(timeout=timeout_s)
    except queue.Empty:
        return out
    while True:
        if isinstance(item, BaseException):
            raise item
        out.append(item)
        rows += len(item.changes)
        if rows >= MAX_TAKE_ROWS:
            return out
        try:
            item = q.get_nowait()
        except queue.Empty:
            return out
