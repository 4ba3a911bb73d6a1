"""Kinesis queues: a queue over one data stream delivers its records to any number of consumer instances, each record
in flight for a visibility timeout after it is received, redelivered if it is not acknowledged by then, and after
MaxReceiveCount receives set aside as a dead-letter record (docs/queues.md has the rules and their sources).

State: queue_state.py (per queue, in ``queues/<id>.json``). Every change a reply reports (a delivery, an
acknowledgement, a visibility change, a restore) is written before the reply, so a restart loses none of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._fsutil import atomic_write
from .._tasks import first_of
from ..errors import (
    InvalidArgumentException,
    LimitExceededException,
    ResourceInUseException,
    ValidationException,
)
from ..models import Record
from ..storage import unwritten
from ..storage.catalog import DamagedMetadata, read_sealed, seal
from .attached import Attachments
from .queue_state import MAX_PENDING, Handle, Pending, QueueState, decode_handle, encode_handle
from .streams import ShardSignal, ShardState, StreamState

__all__ = ["EntryFailure", "QueueDelivery", "QueueInfo", "Queues"]

log = logging.getLogger("shardline.engine")

_DIR = "queues"
_ID_RE = re.compile(r"[0-9a-f]{32}")
_MAX_BYTES = 10 * 1024 * 1024
# Entry failures. AWS names the codes (ErrorCode) but documents no texts: these are shardline's.
NOT_ISSUED = "The receipt handle was not issued by this queue."
SUPERSEDED = "The receipt handle has expired: the record was received again since it was issued."
GONE = "The record is no longer in the queue (acknowledged, or past the stream's retention period)."
NOT_IN_FLIGHT = "The record is not in flight: its visibility timeout has already expired."
NOT_DEAD = "The record is not a dead-letter record."
HAS_QUEUES = "Stream {stream} under account {account} has queues. Delete them before {what}."


@dataclass(frozen=True, slots=True)
class QueueDelivery:
    receipt_handle: str
    record: Record
    first_receive_ms: int
    receive_count: int


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What DescribeQueue and ListQueues show of a queue."""

    queue_arn: str
    name: str
    status: str
    created_ms: int
    stream_arn: str
    stream_created_ms: int
    start_type: str
    start_ms: int | None  # where delivery begins; while CREATING only AT_TIMESTAMP's configured time
    visibility_s: int
    dead_letter: bool
    max_receive_count: int
    pending: int  # records delivered and not acknowledged (in flight, visible again, or dead-letter records)


EntryFailure = tuple[str, str, str]  # (receipt handle, error code, message)


class Queues(Attachments):
    _queue_map: dict[str, QueueState] | None = None
    _queue_ready: dict[str, tuple[dict[tuple[int, int], None], dict[tuple[int, int], None]]]
    _queue_changed: dict[str, asyncio.Event]
    _queue_locks: dict[str, asyncio.Lock]

    # ----------------------------------------------------------------- control plane
    async def create_queue(
        self,
        name: str,
        streams: Sequence[tuple[str, str, int | None]],
        *,
        visibility_s: int | None = None,
        dead_letter_target: str | None = None,
        max_receive_count: int | None = None,
        tags: dict[str, str] | None = None,
    ) -> QueueInfo:
        """``streams``: (stream ARN, starting position type, AT_TIMESTAMP's time in ms) for each entry."""
        queues = self._queues()
        if len(streams) != 1:
            # (documented: "The list must contain exactly one entry"; the text is shardline's)
            raise InvalidArgumentException("StreamConfigurationList must contain exactly one entry.")
        stream_arn, start_type, start_ms = streams[0]
        if start_type == "AT_TIMESTAMP" and start_ms is None:
            raise ValidationException("Timestamp is required when StartingPosition Type is AT_TIMESTAMP.")
        if start_type != "AT_TIMESTAMP" and start_ms is not None:
            raise ValidationException(f"Timestamp must not be specified when StartingPosition Type is {start_type}.")
        dead, count = _dead_letter(dead_letter_target, max_receive_count, True, 6)
        st = self._new_attached("queue", queues, name, stream_arn, tags)
        on_stream = sum(1 for q in queues.values() if q.stream_id == st.stream_id)
        limit = self.settings.max_consumers_per_stream
        if len(st.consumers) + on_stream >= limit:
            # (documented: a queue shares the stream's registered consumer limit with enhanced fan-out consumers)
            raise LimitExceededException(
                self._fmt(
                    "Stream {stream} under account {account} already has {limit} registered consumers and queues.",
                    st.name,
                    limit=limit,
                )
            )
        now = self.clock.now_ms()
        earliest = max(st.created_ms, now - st.retention_hours * 3600 * 1000)
        q = QueueState(
            queue_id=secrets.token_hex(16),
            name=name,
            stream_name=st.name,
            stream_id=st.stream_id,
            stream_created_ms=st.created_ms,
            created_ms=now,
            start_type=start_type,
            start_ms=start_ms,
            effective_start_ms={"LATEST": now, "TRIM_HORIZON": earliest}.get(start_type, max(start_ms or 0, earliest)),
            visibility_s=30 if visibility_s is None else visibility_s,
            dead_letter=dead,
            max_receive_count=count,
            tags=dict(tags or {}),
        )
        self._enter_status(q, "CREATING")
        for sh in st.shards:  # where delivery begins in each shard there is now; later shards start at their start
            if sh.log is not None:
                lg = sh.log
                if start_type == "LATEST":
                    q.cursors[sh.index] = lg.visible_offset
                elif start_type == "AT_TIMESTAMP" and start_ms is not None:
                    q.cursors[sh.index] = unwritten.offset_for_time(lg, start_ms)
                else:
                    q.cursors[sh.index] = lg.log_start
        queues[q.queue_id] = q  # (first: the name is taken while the file is written)
        try:
            await self._store_queue(q)
        except BaseException:
            del queues[q.queue_id]
            raise
        log.info("queue %s created on stream %s (%s)", name, st.name, start_type)
        return self._info(q)

    async def describe_queue(self, queue_arn: str) -> QueueInfo:
        return self._info(self._queue(queue_arn))

    async def list_queues(
        self,
        *,
        stream_filter: Sequence[tuple[str, int | None]] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[QueueInfo], str | None]:
        """A page of queues in creation order, and the token of the next page (None after the last)."""
        page, token = self._list_attached(self._queues(), self._tick_queue, stream_filter, max_results, next_token)
        return [self._info(q) for q in page], token

    async def update_queue(
        self,
        queue_arn: str,
        *,
        visibility_s: int | None = None,
        dead_letter_target: str | None = None,
        max_receive_count: int | None = None,
    ) -> QueueInfo:
        q = self._queue(queue_arn)
        self._require_attached_active("queue", q)
        if dead_letter_target is not None:
            q.dead_letter, q.max_receive_count = _dead_letter(dead_letter_target, max_receive_count, q.dead_letter, 6)
        elif max_receive_count is not None:
            raise ValidationException("MaxReceiveCount requires DeadLetterConfiguration TargetType.")
        if visibility_s is not None:
            q.visibility_s = visibility_s  # (records in flight keep the timeout they were received with)
        self._enter_status(q, "UPDATING")
        await self._store_queue(q)
        return self._info(q)

    async def delete_queue(self, queue_arn: str) -> None:
        q = self._queue(queue_arn)
        if not self._delete_attached(q):
            return
        q.pending.clear()  # (its receipt handles stop being valid)
        q.due.clear()
        self._ready(q)[0].clear()
        self._ready(q)[1].clear()
        self._wake(q)
        async with self._queue_lock(q):
            (self._queue_dir() / f"{q.queue_id}.json").unlink(missing_ok=True)
        log.info("queue %s deleted", q.name)

    def _refuse_queues(self, st: StreamState, what: str) -> None:
        # (documented: every queue on a stream must be deleted before the stream is deleted or switched to
        # PROVISIONED; the text is shardline's, worded as the one for registered consumers)
        if self._on_stream(self._queues(), st):
            raise ResourceInUseException(self._fmt(HAS_QUEUES, st.name, what=what))

    # ----------------------------------------------------------------- data plane
    async def receive_queue_records(
        self,
        queue_arn: str,
        *,
        limit: int = 10,
        wait_s: int = 9,
        visibility_s: int | None = None,
        dead_letter: bool = False,
    ) -> list[QueueDelivery]:
        """Up to ``limit`` visible records (dead-letter records with ``dead_letter``), waiting up to ``wait_s`` for
        one to become visible: new records in the stream, a visibility timeout passing, a restore, or the queue
        becoming ACTIVE wake the wait."""
        q = self._queue(queue_arn)
        deadline = self.clock.now_ms() + wait_s * 1000
        while True:
            signals = self._signals(q) if not dead_letter else []
            for ev in signals:
                ev.clear()
            changed = self._queue_changed.setdefault(q.queue_id, asyncio.Event())
            changed.clear()
            got = self._deliver(q, limit, visibility_s, dead_letter)
            if got:
                await self._store_queue(q)
            now = self.clock.now_ms()
            if got or now >= deadline or q.status == "DELETING":
                return got
            wake = deadline
            nxt = q.next_visible_ms()
            if nxt is not None:
                wake = min(wake, max(nxt, now))
            if q.status in ("CREATING",):
                wake = min(wake, max(q.status_until_ms, now))
            await first_of(*(ev.wait() for ev in [*signals, changed]), self._sleep_until(wake))
            if q.queue_id not in self._queues():
                return []

    async def _sleep_until(self, when_ms: int) -> None:
        # (from the time it runs, not from when it was scheduled: the clock may have moved in between)
        while (left := when_ms - self.clock.now_ms()) > 0:
            await self.clock.sleep(left / 1000)

    async def acknowledge_queue_records(
        self, queue_arn: str, handles: Sequence[str], *, dead_letter: bool = False
    ) -> tuple[list[str], list[EntryFailure]]:
        q = self._queue(queue_arn)
        ok: list[str] = []
        failed: list[EntryFailure] = []
        for _, text, key, _ in self._found(q, handles, dead_letter, failed):
            del q.pending[key]
            for ready in self._ready(q):
                ready.pop(key, None)
            ok.append(text)
        return await self._changed(q, ok, failed, wake=False)

    async def update_queue_records_visibility(
        self, queue_arn: str, entries: Sequence[tuple[str, int]], *, dead_letter: bool = False
    ) -> tuple[list[str], list[EntryFailure]]:
        q = self._queue(queue_arn)
        now = self.clock.now_ms()
        ok: list[str] = []
        failed: list[EntryFailure] = []
        for i, text, key, p in self._found(q, [text for text, _ in entries], dead_letter, failed):
            if p.visible_ms <= now:
                failed.append((text, "InvalidArgumentException", NOT_IN_FLIGHT))
                continue
            p.visible_ms = now + entries[i][1] * 1000
            q.schedule(key[0], key[1], p)
            ok.append(text)
        return await self._changed(q, ok, failed, wake=True)

    async def restore_dead_letter_queue_records(
        self, queue_arn: str, handles: Sequence[str]
    ) -> tuple[list[str], list[EntryFailure]]:
        """Return dead-letter records to the normal receive path, their receive count reset."""
        q = self._queue(queue_arn)
        now = self.clock.now_ms()
        ok: list[str] = []
        failed: list[EntryFailure] = []
        for _, text, key, p in self._found(q, handles, True, failed):
            self._ready(q)[1].pop(key, None)
            p.dead = False
            p.receive_count = 0
            p.visible_ms = now
            q.schedule(key[0], key[1], p)
            ok.append(text)
        return await self._changed(q, ok, failed, wake=True)

    # ----------------------------------------------------------------- delivery
    def _deliver(self, q: QueueState, limit: int, visibility_s: int | None, dead: bool) -> list[QueueDelivery]:
        self._tick_queue(q)
        st = self.streams.get(q.stream_name)
        if q.status not in ("ACTIVE", "UPDATING") or st is None or st.stream_id != q.stream_id:
            return []
        now = self.clock.now_ms()
        self._sweep(q, now)
        ready = self._ready(q)[1 if dead else 0]
        timeout_ms = (q.visibility_s if visibility_s is None else visibility_s) * 1000
        out: list[QueueDelivery] = []
        while ready and len(out) < limit:
            key = next(iter(ready))
            del ready[key]
            p = q.pending.get(key)
            if p is None or p.dead != dead:
                continue
            rec = self._read_one(st, key)
            if rec is None:  # (past the stream's retention: the queue stops delivering it)
                del q.pending[key]
                continue
            if not dead:
                p.receive_count += 1
            p.delivery += 1
            p.visible_ms = now + timeout_ms
            q.schedule(key[0], key[1], p)
            out.append(self._delivery(q, key, p, rec))
        if not dead:
            self._deliver_new(q, st, limit - len(out), now=now, timeout_ms=timeout_ms, out=out)
        return out

    def _deliver_new(
        self, q: QueueState, st: StreamState, want: int, *, now: int, timeout_ms: int, out: list[QueueDelivery]
    ) -> None:
        shards = [sh for sh in st.shards if sh.log is not None]
        if not shards or want <= 0:
            return
        enc = None if st.encryption_type == "NONE" else st.encryption_type
        q.turn = (q.turn + 1) % len(shards)
        for sh in shards[q.turn :] + shards[: q.turn]:
            room = min(want, MAX_PENDING - len(q.pending))
            if room <= 0:
                return  # (bounded: nothing new until deliveries are acknowledged or pass retention)
            lg = sh.log
            assert lg is not None
            cursor = max(q.cursors.get(sh.index, lg.log_start), lg.log_start)
            if cursor >= lg.visible_offset:
                q.cursors[sh.index] = cursor
                continue
            records, next_offset, _ = unwritten.read_counted(
                lg, cursor, room, _MAX_BYTES, id_base=sh.seq_prefix, encryption=enc
            )
            q.cursors[sh.index] = next_offset
            for rec in records:
                key = (sh.index, int(rec.sequence_number) - sh.seq_prefix)
                p = Pending(1, now, now + timeout_ms, 1)
                q.pending[key] = p
                q.schedule(key[0], key[1], p)
                out.append(self._delivery(q, key, p, rec))
            want -= len(records)
            if want <= 0:
                return

    def _sweep(self, q: QueueState, now: int) -> None:
        """Move the records whose visibility timeout has passed to their path's visible records; a record received
        MaxReceiveCount times becomes a dead-letter record then."""
        normal, dead = self._ready(q)
        for key in q.pop_due(now):
            p = q.pending[key]
            if not p.dead and q.dead_letter and p.receive_count >= q.max_receive_count:
                p.dead = True
            (dead if p.dead else normal)[key] = None

    def _read_one(self, st: StreamState, key: tuple[int, int]) -> Record | None:
        sh: ShardState | None = st.shard(key[0])
        if sh is None or sh.log is None or key[1] < sh.log.log_start:
            return None
        enc = None if st.encryption_type == "NONE" else st.encryption_type
        records, _, _ = unwritten.read_counted(sh.log, key[1], 1, _MAX_BYTES, id_base=sh.seq_prefix, encryption=enc)
        if not records or int(records[0].sequence_number) - sh.seq_prefix != key[1]:
            return None
        rec: Record = records[0]
        return rec

    def _delivery(self, q: QueueState, key: tuple[int, int], p: Pending, rec: Record) -> QueueDelivery:
        handle = encode_handle(self.catalog.secret, Handle(q.queue_id, key[0], key[1], p.delivery, p.dead))
        return QueueDelivery(handle, rec, p.first_receive_ms, p.receive_count)

    async def _changed(
        self, q: QueueState, ok: list[str], failed: list[EntryFailure], *, wake: bool
    ) -> tuple[list[str], list[EntryFailure]]:
        """An entry-by-entry call's answer, the queue written first when any entry changed it (and its receivers
        woken with ``wake``: records became visible)."""
        if ok:
            await self._store_queue(q)
            if wake:
                self._wake(q)
        return ok, failed

    def _found(
        self, q: QueueState, texts: Sequence[str], dead: bool, failed: list[EntryFailure]
    ) -> Iterator[tuple[int, str, tuple[int, int], Pending]]:
        """The pending records the receipt handles ``texts`` name, as (index in ``texts``, handle, key, record); a
        handle that names none is left out, its failure added to ``failed``."""
        for i, text in enumerate(texts):
            found = self._entry(q, text, dead, failed)
            if found is not None:
                yield i, text, *found

    def _entry(
        self, q: QueueState, text: str, dead: bool, failed: list[EntryFailure]
    ) -> tuple[tuple[int, int], Pending] | None:
        """The pending record a receipt handle names, or None with the entry's failure added to ``failed``."""
        h = decode_handle(self.catalog.secret, text)
        if h is None or h.queue_id != q.queue_id:
            failed.append((text, "InvalidArgumentException", NOT_ISSUED))
            return None
        if h.dead != dead:
            failed.append((text, "InvalidArgumentException", NOT_DEAD if dead else NOT_ISSUED))
            return None
        key = (h.shard, h.offset)
        p = q.pending.get(key)
        if p is None:
            failed.append((text, "ResourceNotFoundException", GONE))
            return None
        if p.delivery != h.delivery or p.dead != dead:
            failed.append((text, "InvalidArgumentException", SUPERSEDED))
            return None
        return key, p

    def _signals(self, q: QueueState) -> list[asyncio.Event]:
        st = self.streams.get(q.stream_name)
        if st is None or st.stream_id != q.stream_id:
            return []
        return [st.signals.setdefault(sh.index, ShardSignal()) for sh in st.shards if sh.log is not None]

    def _wake(self, q: QueueState) -> None:
        ev = self._queue_changed.get(q.queue_id)
        if ev is not None:
            ev.set()

    def _ready(self, q: QueueState) -> tuple[dict[tuple[int, int], None], dict[tuple[int, int], None]]:
        ready = self._queue_ready.get(q.queue_id)
        if ready is None:
            ready = self._queue_ready[q.queue_id] = ({}, {})
        return ready

    # ----------------------------------------------------------------- lookup and state
    def _info(self, q: QueueState) -> QueueInfo:
        start = q.effective_start_ms if q.status != "CREATING" else q.start_ms
        return QueueInfo(
            self._attached_arn("queue", q.queue_id),
            q.name,
            q.status,
            q.created_ms,
            self.stream_arn(q.stream_name),
            q.stream_created_ms,
            q.start_type,
            start,
            q.visibility_s,
            q.dead_letter,
            q.max_receive_count,
            len(q.pending),
        )

    def _queue(self, queue_arn: str) -> QueueState:
        return self._find_attached("queue", self._queues(), queue_arn, self._tick_queue)

    def _tick_queue(self, q: QueueState) -> None:
        if not self._transition_due(q):
            return
        if q.status == "DELETING":
            self._queues().pop(q.queue_id, None)
            self._queue_ready.pop(q.queue_id, None)
            self._queue_changed.pop(q.queue_id, None)
            return
        q.status = "ACTIVE"
        self._wake(q)

    def _queue_dir(self) -> Path:
        return self.catalog.root / _DIR

    def _queues(self) -> dict[str, QueueState]:
        if self._queue_map is None:
            self._queue_ready = {}
            self._queue_changed = {}
            self._queue_locks = {}
            found: dict[str, QueueState] = {}
            d = self._queue_dir()
            for path in sorted(d.glob("*.json")) if d.is_dir() else []:
                if not _ID_RE.fullmatch(path.stem):
                    continue
                try:
                    q = QueueState.from_dict(read_sealed(path.read_bytes()))
                except (DamagedMetadata, KeyError, TypeError, ValueError) as exc:
                    log.error("queue file %s is damaged (%s): that queue is not served", path.name, exc)
                    continue
                if q.queue_id == path.stem:
                    found[q.queue_id] = q
            self._queue_map = found
        return self._queue_map

    def _queue_lock(self, q: QueueState) -> asyncio.Lock:
        lock = self._queue_locks.get(q.queue_id)
        if lock is None:
            lock = self._queue_locks[q.queue_id] = asyncio.Lock()
        return lock

    async def _store_queue(self, q: QueueState) -> None:
        """Write the queue's state before the reply that reports it. The file is written off the event loop (its
        size grows with the records outstanding); one write per queue at a time, each of the state when it starts,
        so the last one holds every change."""
        async with self._queue_lock(q):
            if q.status == "DELETING":
                return
            data = seal(q.to_dict())
            with self._refuse_when_full():
                await asyncio.to_thread(_write, self._queue_dir(), f"{q.queue_id}.json", data)


def _write(d: Path, name: str, data: bytes) -> None:
    d.mkdir(mode=0o700, exist_ok=True)
    atomic_write(d / name, data)


def _dead_letter(target: str | None, count: int | None, dead: bool, default: int) -> tuple[bool, int]:
    """(dead-letter handling on, MaxReceiveCount) from a DeadLetterConfiguration (None: as it was)."""
    if target is None:
        if count is not None:
            raise ValidationException("MaxReceiveCount requires DeadLetterConfiguration TargetType.")
        return dead, default
    if target == "BUILT_IN":
        if count is None:  # (documented: required with BUILT_IN; the text is shardline's)
            raise ValidationException("MaxReceiveCount is required when TargetType is BUILT_IN.")
        return True, count
    if count is not None:
        raise ValidationException("MaxReceiveCount must not be specified when TargetType is NONE.")
    return False, default
