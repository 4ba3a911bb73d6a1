"""In-memory state of streams and shards, and its round trip to the metadata file."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

from ..models import (
    ChildShard,
    HashKeyRange,
    PutRecordsEntry,
    SequenceNumberRange,
    Shard,
    StreamMode,
    StreamStatus,
)
from ..storage.log import LogTable, ShardLog
from . import sequence
from .hashing import MAX_HASH_KEY, HashRouter
from .limits import TokenBucket
from .stats import IncomingCounts, ShardCounters, StreamCounters

__all__ = ["ShardSignal", "ShardState", "StreamState", "shard_id_of"]

META_VERSION = 1


def shard_id_of(index: int) -> str:
    return f"shardId-{index:012d}"


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _distribution(value: object) -> str:
    if value not in ("AUTO", "USER_PARTITION_KEY"):
        raise ValueError(f"unknown record distribution strategy {value!r}")
    return str(value)


@dataclass(eq=False, slots=True)
class ShardState:
    index: int
    start_key: int
    end_key: int
    created_ms: int
    parent: int | None = None
    adjacent_parent: int | None = None
    closed_ms: int | None = None
    expired: bool = False  # closed and past retention: files deleted, kept only for lineage
    log: ShardLog | None = None
    seq_prefix: int = 0
    shard_id: str = ""
    write_bytes: TokenBucket | None = None
    write_records: TokenBucket | None = None
    read_bytes: TokenBucket | None = None
    read_calls: TokenBucket | None = None
    counters: ShardCounters = field(default_factory=ShardCounters)

    def __post_init__(self) -> None:
        self.shard_id = shard_id_of(self.index)

    @property
    def is_open(self) -> bool:
        return self.closed_ms is None

    def seq(self, offset: int) -> str:
        return str(self.seq_prefix + offset)

    def to_model(self) -> Shard:
        return Shard(
            shard_id=self.shard_id,
            hash_key_range=HashKeyRange(self.start_key, self.end_key),
            sequence_number_range=SequenceNumberRange(
                self.seq(0), None if self.is_open else self.seq(sequence.MAX_OFFSET)
            ),
            parent_shard_id=shard_id_of(self.parent) if self.parent is not None else None,
            adjacent_parent_shard_id=shard_id_of(self.adjacent_parent) if self.adjacent_parent is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_key": str(self.start_key),
            "end_key": str(self.end_key),
            "created_ms": self.created_ms,
            "parent": self.parent,
            "adjacent_parent": self.adjacent_parent,
            "closed_ms": self.closed_ms,
            "expired": self.expired,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardState:
        return cls(
            index=int(d["index"]),
            start_key=int(d["start_key"]),
            end_key=int(d["end_key"]),
            created_ms=int(d["created_ms"]),
            parent=d.get("parent"),
            adjacent_parent=d.get("adjacent_parent"),
            closed_ms=d.get("closed_ms"),
            expired=bool(d.get("expired", False)),
        )


class ShardSignal(asyncio.Event):
    """Set whenever new records become readable in a shard, or it closes. Readers that share it clear it before a
    read that may come back empty, then wait on it; a reader that must not lose a wake-up to another's clear (a
    SubscribeToShard subscription) adds an event of its own to ``listeners``, which is set with it."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners: set[asyncio.Event] = set()

    def set(self) -> None:
        super().set()
        for event in self.listeners:
            event.set()


@dataclass(eq=False)
class ConsumerState:
    name: str
    created_ms: int
    status: str = "CREATING"
    status_until_ms: int = 0


@dataclass(eq=False)
class StreamState:
    stream_id: str
    name: str
    arn: str
    created_ms: int
    mode: StreamMode
    tag: int = 0  # random per stream (sequence numbers, iterators, tokens)
    retention_hours: int = 24
    status: StreamStatus = StreamStatus.CREATING
    status_until_ms: int = 0
    shards: list[ShardState] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    consumers: dict[str, ConsumerState] = field(default_factory=dict)
    encryption_type: str = "NONE"
    key_id: str | None = None
    shard_level_metrics: list[str] = field(default_factory=list)
    scaling_ops_ms: list[int] = field(default_factory=list)
    mode_switches_ms: list[int] = field(default_factory=list)
    max_record_size_kib: int = 1024
    # stream_settings.py: the warm throughput (target, the value before its last change, when that change ends) and
    # the record distribution strategy, with ``auto_next``, the shard position AUTO distribution puts to next.
    warm_target_mibps: int | None = None
    warm_current_mibps: int | None = None
    warm_until_ms: int = 0
    distribution: str = "USER_PARTITION_KEY"
    auto_next: int = 0
    # Reshards accepted while the stream is UPDATING, carried out (in order) when it becomes ACTIVE: until then the
    # shard map, the routing of puts and every reader see the shards as they were, as on AWS. Each is a dict:
    # {"op": "split", "shard": index, "key": str}, {"op": "merge", "shard": index, "adjacent": index} or
    # {"op": "scale", "target": count}, with "delta", the change in open shards it makes.
    pending: list[dict[str, Any]] = field(default_factory=list)
    reshard_error: str | None = None  # why carrying out the pending reshards failed, until they are (not saved)
    router: HashRouter | None = None  # hash key -> index of the open shard that takes it
    # What a put touches per record, kept per stream and indexed by shard index so that no per-shard object is on
    # the hot path (see LogTable): the shard logs' write state, which also makes each record's PutRecords result
    # (shard id, sequence number) and counts its bytes.
    table: LogTable = field(default_factory=lambda: LogTable(PutRecordsEntry))
    incoming: IncomingCounts = field(init=False)
    # Set whenever new records become readable in a shard (or it closes), by shard index; consumers in this process
    # wait on it instead of polling. Created by the first waiter (ShardSignal).
    signals: dict[int, ShardSignal] = field(default_factory=dict)
    write_bytes: TokenBucket | None = None
    write_records: TokenBucket | None = None
    read_bytes: TokenBucket | None = None
    counters: StreamCounters = field(default_factory=StreamCounters)

    def __post_init__(self) -> None:
        self.incoming = IncomingCounts(self.table)

    @property
    def created_s(self) -> int:
        return self.created_ms // 1000

    def shard(self, index: int) -> ShardState | None:
        # Shard indexes are dense and in creation order, so the list position is the index.
        if 0 <= index < len(self.shards):
            return self.shards[index]
        return None

    def open_shards(self) -> list[ShardState]:
        return [s for s in self.shards if s.is_open]

    def pending_shards(self) -> int:
        """How many open shards the pending reshards add (or remove, when negative)."""
        return sum(int(op.get("delta", 0)) for op in self.pending)

    def warm_current(self, now_ms: int) -> int | None:
        """The warm throughput in force: the target once its change has ended (UPDATING), the previous value until
        then; None when none was ever set."""
        if self.warm_target_mibps is None:
            return None
        if now_ms >= self.warm_until_ms:
            return self.warm_target_mibps
        return self.warm_current_mibps or 0

    def auto_slots(self) -> list[int]:
        """The open shards' indexes, in hash key order: where AUTO distribution puts records in turn."""
        return [s.index for s in sorted(self.open_shards(), key=lambda s: s.start_key)]

    def rebuild_router(self) -> None:
        """Route to the open shards (after a create, an open or a reshard)."""
        self.router = HashRouter([(s.start_key, s.end_key, s.index) for s in self.shards if s.is_open])

    def children_of(self, shard: ShardState) -> tuple[ChildShard, ...]:
        return tuple(
            ChildShard(
                shard_id=c.shard_id,
                parent_shards=tuple(shard_id_of(p) for p in (c.parent, c.adjacent_parent) if p is not None),
                hash_key_range=HashKeyRange(c.start_key, c.end_key),
            )
            for c in self.shards
            if shard.index in (c.parent, c.adjacent_parent)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": META_VERSION,
            "name": self.name,
            "arn": self.arn,
            "created_ms": self.created_ms,
            "tag": self.tag,
            "mode": self.mode.value,
            "retention_hours": self.retention_hours,
            "status": self.status.value,
            "status_until_ms": self.status_until_ms,
            "shards": [s.to_dict() for s in self.shards],
            "tags": self.tags,
            "consumers": [
                {
                    "name": c.name,
                    "created_ms": c.created_ms,
                    "status": c.status,
                    "status_until_ms": c.status_until_ms,
                }
                for c in self.consumers.values()
            ],
            "encryption_type": self.encryption_type,
            "key_id": self.key_id,
            "shard_level_metrics": self.shard_level_metrics,
            "scaling_ops_ms": self.scaling_ops_ms,
            "mode_switches_ms": self.mode_switches_ms,
            "max_record_size_kib": self.max_record_size_kib,
            "warm_target_mibps": self.warm_target_mibps,
            "warm_current_mibps": self.warm_current_mibps,
            "warm_until_ms": self.warm_until_ms,
            "distribution": self.distribution,
            "pending": self.pending,
        }

    def snapshot(self) -> dict[str, Any]:
        """The metadata as it is now, sharing nothing with the live state (for ``restore``)."""
        return copy.deepcopy(self.to_dict())

    def restore(self, snap: dict[str, Any]) -> None:
        """Put the metadata back as ``snap`` (from ``snapshot``) has it: a change that could not be saved is undone.
        The objects stay (shards and consumers keep their identity, logs and counters); shards added since the
        snapshot are dropped, their logs closed by the caller first. Runtime state (the router, the token buckets)
        is the caller's to rebuild when the shard map changed."""
        old = StreamState.from_dict(self.stream_id, snap)
        for key in snap:
            if key not in ("version", "shards", "consumers"):
                setattr(self, key, getattr(old, key))
        del self.shards[len(old.shards) :]
        for sh, was in zip(self.shards, old.shards, strict=True):
            sh.start_key, sh.end_key, sh.created_ms = was.start_key, was.end_key, was.created_ms
            sh.parent, sh.adjacent_parent = was.parent, was.adjacent_parent
            sh.closed_ms, sh.expired = was.closed_ms, was.expired
        consumers = dict(self.consumers)
        self.consumers.clear()
        for name, was_c in old.consumers.items():
            c = consumers.get(name, was_c)
            c.created_ms, c.status, c.status_until_ms = was_c.created_ms, was_c.status, was_c.status_until_ms
            self.consumers[name] = c

    @classmethod
    def from_dict(cls, stream_id: str, d: dict[str, Any]) -> StreamState:
        if d.get("version") != META_VERSION:
            raise ValueError(f"unsupported metadata version {d.get('version')!r}")
        st = cls(
            stream_id=stream_id,
            name=d["name"],
            arn=d["arn"],
            created_ms=int(d["created_ms"]),
            mode=StreamMode(d["mode"]),
            tag=int(d["tag"]),
            retention_hours=int(d["retention_hours"]),
            status=StreamStatus(d["status"]),
            status_until_ms=int(d["status_until_ms"]),
            shards=[ShardState.from_dict(s) for s in d["shards"]],
            tags=dict(d.get("tags", {})),
            encryption_type=d.get("encryption_type", "NONE"),
            key_id=d.get("key_id"),
            shard_level_metrics=list(d.get("shard_level_metrics", [])),
            scaling_ops_ms=list(d.get("scaling_ops_ms", [])),
            mode_switches_ms=list(d.get("mode_switches_ms", [])),
            max_record_size_kib=int(d.get("max_record_size_kib", 1024)),
            warm_target_mibps=_optional_int(d.get("warm_target_mibps")),
            warm_current_mibps=_optional_int(d.get("warm_current_mibps")),
            warm_until_ms=int(d.get("warm_until_ms", 0)),
            distribution=_distribution(d.get("distribution", "USER_PARTITION_KEY")),
            pending=[dict(op) for op in d.get("pending", [])],
        )
        for c in d.get("consumers", []):
            st.consumers[c["name"]] = ConsumerState(
                c["name"], int(c["created_ms"]), c["status"], int(c["status_until_ms"])
            )
        st.check_shards()
        return st

    def check_shards(self) -> None:
        """Raise ValueError unless the shards are consistent: dense indexes, parents among the older shards, and
        open shards whose hash key ranges cover 0..2^128-1 without a hole or an overlap. Metadata written before it
        had a checksum is checked this way: a changed digit in a range would otherwise route nothing (or twice) to
        some keys, and a later reshard would build on the hole."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("no stream name")
        for i, sh in enumerate(self.shards):
            if sh.index != i:
                raise ValueError(f"shard {i} has index {sh.index}")
            if not 0 <= sh.start_key <= sh.end_key <= MAX_HASH_KEY:
                raise ValueError(f"{sh.shard_id}: impossible hash key range {sh.start_key}..{sh.end_key}")
            for parent in (sh.parent, sh.adjacent_parent):
                if parent is not None and not (isinstance(parent, int) and 0 <= parent < i):
                    raise ValueError(f"{sh.shard_id}: impossible parent {parent!r}")
            if sh.expired and sh.is_open:
                raise ValueError(f"{sh.shard_id}: expired but open")
        for op in self.pending:
            self._check_pending(op)
        expect = 0
        for sh in sorted(self.open_shards(), key=lambda s: s.start_key):
            if sh.start_key != expect:
                what = "hole" if sh.start_key > expect else "overlap"
                raise ValueError(f"open shards leave a {what} in the hash key range at {min(expect, sh.start_key)}")
            expect = sh.end_key + 1
        if expect != MAX_HASH_KEY + 1:
            raise ValueError(f"open shards leave a hole in the hash key range at {expect}")

    def _check_pending(self, op: dict[str, Any]) -> None:
        def index(key: str) -> None:
            value = op.get(key)
            if not (isinstance(value, int) and 0 <= value < len(self.shards)):
                raise ValueError(f"pending {op.get('op')}: impossible shard {value!r}")

        kind = op.get("op")
        if kind == "split":
            index("shard")
            if not (isinstance(op.get("key"), str) and str(op["key"]).isdigit()):
                raise ValueError(f"pending split: impossible hash key {op.get('key')!r}")
        elif kind == "merge":
            index("shard")
            index("adjacent")
        elif kind == "scale":
            if not (isinstance(op.get("target"), int) and op["target"] >= 1):
                raise ValueError(f"pending scale: impossible target {op.get('target')!r}")
        else:
            raise ValueError(f"unknown pending operation {kind!r}")
