"""The engine's read view: what the layers above (runtime, metrics, api) may read of its state.

``Engine.view`` is one ``EngineView`` made with the engine. It answers from the live objects, and wraps them without
copying: a ``StreamView`` or ``ShardView`` is a slotted object over the engine's own stream or shard, and counters
are the engine's counter objects themselves, typed by a read-only protocol (nothing above the engine can assign to
them under mypy). Positions are shard log offsets: ``log_start`` is the oldest offset still held, ``visible_end``
the offset just past the newest record a reader sees.

A view is for reading on the engine's event loop, between awaits: it is not a snapshot, and a stream that is
deleted (or a shard that expires) after it was looked up answers with what it held then. Look it up again
rather than keeping it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from ..models import StreamMode, StreamStatus
from . import sequence
from ._base import parse_shard_id
from .streams import ShardState, StreamState, shard_id_of

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "STORAGE_STATES",
    "EngineView",
    "HistogramView",
    "JournalFigures",
    "ShardCountersView",
    "ShardView",
    "StorageState",
    "StorageStateName",
    "StreamCountersView",
    "StreamView",
]


class HistogramView(Protocol):
    """Latencies in fixed buckets (upper bounds in ms: engine.stats.LATENCY_BUCKETS_MS, then an overflow bucket)."""

    @property
    def counts(self) -> Sequence[int]: ...  # observations in each bucket alone (not cumulative)

    @property
    def total(self) -> int: ...

    @property
    def sum_ms(self) -> float: ...


class ShardCountersView(Protocol):
    """Counters of one shard since the engine opened (CloudWatch's shard-level metrics)."""

    @property
    def incoming_records(self) -> int: ...

    @property
    def incoming_bytes(self) -> int: ...

    @property
    def write_throttled_records(self) -> int: ...

    @property
    def outgoing_records(self) -> int: ...

    @property
    def outgoing_bytes(self) -> int: ...

    @property
    def get_records_calls(self) -> int: ...

    @property
    def read_throttled_calls(self) -> int: ...

    @property
    def iterator_age_ms(self) -> int: ...  # MillisBehindLatest of the latest GetRecords on the shard

    @property
    def last_read_ms(self) -> int: ...  # when that GetRecords was (-1: never)


class StreamCountersView(Protocol):
    """Counters of one stream since the engine opened. ``put_errors`` counts failed calls of both put APIs;
    ``put_record_errors`` and ``put_records_errors`` split it, and ``put_record_throttled`` is among the former."""

    @property
    def put_record_calls(self) -> int: ...

    @property
    def put_records_calls(self) -> int: ...

    @property
    def put_records_failed_records(self) -> int: ...

    @property
    def put_errors(self) -> int: ...

    @property
    def put_record_errors(self) -> int: ...

    @property
    def put_records_errors(self) -> int: ...

    @property
    def put_record_throttled(self) -> int: ...

    @property
    def put_records_throttled_records(self) -> int: ...

    @property
    def get_records_errors(self) -> int: ...

    @property
    def last_incoming_ms(self) -> int: ...

    @property
    def put_latency(self) -> HistogramView: ...

    @property
    def get_latency(self) -> HistogramView: ...


@dataclass(frozen=True, slots=True)
class JournalFigures:
    """The write-ahead journal's counters (storage/journal.py) and the group committer's fsync rounds."""

    frames_written: int
    checkpoints: int
    staged_bytes: int
    unreplayed_bytes: int  # journal bytes a restart now would replay (written since the last checkpoint)
    replayed_records: int  # records the journal replay at open wrote to their shards
    fsync_rounds: int


StorageStateName = Literal["ok", "disk_full", "failed"]
STORAGE_STATES: tuple[StorageStateName, ...] = ("ok", "disk_full", "failed")


@dataclass(frozen=True, slots=True)
class StorageState:
    """Whether the data directory takes writes (docs/security.md, "Files"); reads go on in every state.

    ``disk_full``: the last write failed for want of space (each write is tried, and refused while the disk stays
    full); the first one that goes through once space is freed clears it, without a restart. ``failed``: an fsync
    failed (``error`` is what it reported), so written bytes may be lost and writes are refused until a restart,
    which replays the journal. ``failed`` wins over ``disk_full``: only the restart clears it."""

    state: StorageStateName
    error: str | None = None


class ShardView:
    """One shard: its lineage, hash key range, sequence number range, log positions and counters."""

    __slots__ = ("_shard", "_stream")

    def __init__(self, stream: StreamState, shard: ShardState) -> None:
        self._stream = stream
        self._shard = shard

    @property
    def shard_id(self) -> str:
        return self._shard.shard_id

    @property
    def state(self) -> Literal["open", "closed", "expired"]:
        """``expired``: closed and past retention, its records deleted (kept for lineage only)."""
        sh = self._shard
        return "expired" if sh.expired else ("open" if sh.is_open else "closed")

    @property
    def is_open(self) -> bool:
        return self._shard.is_open

    @property
    def expired(self) -> bool:
        return self._shard.expired

    @property
    def parent_shard_id(self) -> str | None:
        parent = self._shard.parent
        return shard_id_of(parent) if parent is not None else None

    @property
    def adjacent_parent_shard_id(self) -> str | None:
        parent = self._shard.adjacent_parent
        return shard_id_of(parent) if parent is not None else None

    def children(self) -> list[str]:
        """The shards a split or merge of this one made (none while it is open)."""
        return [c.shard_id for c in self._stream.children_of(self._shard)]

    @property
    def starting_hash_key(self) -> int:
        return self._shard.start_key

    @property
    def ending_hash_key(self) -> int:
        return self._shard.end_key

    @property
    def starting_sequence_number(self) -> str:
        return self._shard.seq(0)

    @property
    def ending_sequence_number(self) -> str | None:
        """None while the shard is open (as in ListShards)."""
        return None if self._shard.is_open else self._shard.seq(sequence.MAX_OFFSET)

    @property
    def created_ms(self) -> int:
        return self._shard.created_ms

    @property
    def closed_ms(self) -> int | None:
        return self._shard.closed_ms

    @property
    def log_start(self) -> int | None:
        """The oldest offset the shard still holds (None once it expired)."""
        lg = self._shard.log
        return lg.log_start if lg is not None else None

    @property
    def visible_end(self) -> int | None:
        """The offset after the newest record readers see (None once it expired)."""
        lg = self._shard.log
        return lg.visible_offset if lg is not None else None

    @property
    def last_arrival_ms(self) -> int:
        """Arrival time of the newest record put into the shard (-1: none, or it expired)."""
        lg = self._shard.log
        return lg.last_arrival_ms if lg is not None else -1

    def records_between(self, start: int, end: int) -> int:
        """How many offsets in [start, end) hold a record (a hole that recovery reported lost holds none)."""
        lg = self._shard.log
        return lg.records_between(start, end) if lg is not None else 0

    def sequence_number(self, offset: int) -> str:
        """The sequence number of the record at ``offset``."""
        return self._shard.seq(offset)

    @property
    def counters(self) -> ShardCountersView:
        return self._shard.counters


class StreamView:
    """One stream: its description, its shards in creation order (the expired ones too) and its counters."""

    __slots__ = ("_stream",)

    def __init__(self, stream: StreamState) -> None:
        self._stream = stream

    @property
    def name(self) -> str:
        return self._stream.name

    @property
    def stream_id(self) -> str:
        """Unique per stream incarnation: a stream deleted and created again under its name gets a new one."""
        return self._stream.stream_id

    @property
    def arn(self) -> str:
        return self._stream.arn

    @property
    def status(self) -> StreamStatus:
        return self._stream.status

    @property
    def mode(self) -> StreamMode:
        return self._stream.mode

    @property
    def retention_hours(self) -> int:
        return self._stream.retention_hours

    @property
    def shard_level_metrics(self) -> Sequence[str]:
        """The shard-level metrics enhanced monitoring names (CloudWatch's names, IncomingBytes ...)."""
        return self._stream.shard_level_metrics

    @property
    def counters(self) -> StreamCountersView:
        return self._stream.counters

    @property
    def shard_count(self) -> int:
        """How many shards the stream has had (expired ones included)."""
        return len(self._stream.shards)

    def shards(self) -> list[ShardView]:
        st = self._stream
        return [ShardView(st, sh) for sh in st.shards]

    def shard(self, shard_id: str) -> ShardView | None:
        """The shard ``shard_id`` names (``shardId-000000000001``, or any id Kinesis reads as that shard), if any."""
        index = parse_shard_id(shard_id)
        sh = self._stream.shard(index) if index is not None else None
        return ShardView(self._stream, sh) if sh is not None else None


class EngineView:
    """The whole engine, read-only: whether it serves, its streams, its journal figures, its storage state."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def closed(self) -> bool:
        """True before the engine opened and after it closed."""
        return self._engine.closed

    @property
    def stream_count(self) -> int:
        return len(self._engine.streams)

    def stream_names(self) -> list[str]:
        return list(self._engine.streams)

    def streams(self) -> list[StreamView]:
        return [StreamView(st) for st in self._engine.streams.values()]

    def stream(self, name: str) -> StreamView | None:
        st = self._engine.streams.get(name)
        return StreamView(st) if st is not None else None

    def journal(self) -> JournalFigures | None:
        """None before the engine first opened (no journal yet)."""
        e = self._engine
        journal = getattr(e, "journal", None)  # (set by open)
        if journal is None:
            return None
        return JournalFigures(
            frames_written=journal.frames_written,
            checkpoints=journal.checkpoints,
            staged_bytes=journal.staged_bytes,
            unreplayed_bytes=max(0, journal.position - journal.checkpointed),
            replayed_records=e.journal_report.records,
            fsync_rounds=e.committer.rounds,
        )

    def storage(self) -> StorageState:
        """Whether writes are refused for a reason of the data directory (a full disk, a failed fsync)."""
        e = self._engine
        if e.storage_failed is not None:
            return StorageState("failed", e.storage_failed)
        return StorageState("disk_full" if e.disk_full else "ok")
