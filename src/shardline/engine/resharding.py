"""SplitShard, MergeShards and UpdateShardCount.

A reshard is checked against the shard map when it is asked for, and carried out when the stream's UPDATING time
ends (settings.updating_delay_s; at once without a delay): until then DescribeStream and ListShards show the map as it
was (no children, parents without an EndingSequenceNumber), puts go to the parents, and another reshard is refused,
as on AWS. Carrying it out seals the parents (no more appends; their logs stay readable until retention) and opens
fresh logs for the children. Children get new, higher shard indexes, so their sequence numbers sort after every
parent's.

Carrying out is all or nothing (changes.py): the children's logs are opened first, the new map lands in one atomic
metadata write, and only then are the parents' logs sealed and puts routed to the children. A failure before the
write (no space, no file descriptor left) leaves the map, the routing and the pending reshards as they were, to be
tried again by a later tick.
"""

from __future__ import annotations

import re

from ..errors import (
    InvalidArgumentException,
    LimitExceededException,
    ResourceNotFoundException,
    ValidationException,
    enum_rule,
    validation_error,
)
from ..models import StreamMode, StreamStatus
from . import messages as m
from ._base import EngineBase
from .hashing import even_ranges
from .streams import ShardState, StreamState, shard_id_of

__all__ = ["Resharding"]

_HASH_KEY = re.compile(r"0|[1-9]\d{0,38}", re.ASCII)


class Resharding(EngineBase):
    async def split_shard(
        self,
        *,
        shard_to_split: str,
        new_starting_hash_key: str | int,
        stream_name: str | None = None,
        stream_arn: str | None = None,
    ) -> None:
        name = self._stream_name(stream_name, stream_arn)
        index = self._shard_index(name, shard_to_split)
        st = self._stream(name)
        shard = self._reshard_target(st, index)
        self._check_shard_limit(1)
        text = str(new_starting_hash_key)
        if not _HASH_KEY.fullmatch(text):
            raise validation_error(
                [(text, "newStartingHashKey", "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})")]
            )
        key = int(text)
        if not shard.start_key + 1 < key < shard.end_key:
            raise InvalidArgumentException(
                self._fmt(
                    m.SPLIT_KEY,
                    st.name,
                    key=key,
                    shard=shard.shard_id,
                    start=shard.start_key,
                    end=shard.end_key,
                )
            )
        self._require_active(st)
        self._require_open(st, shard)
        self._commit_reshard(st, {"op": "split", "shard": shard.index, "key": str(key), "delta": 1})

    async def merge_shards(
        self,
        *,
        shard_to_merge: str,
        adjacent_shard_to_merge: str,
        stream_name: str | None = None,
        stream_arn: str | None = None,
    ) -> None:
        name = self._stream_name(stream_name, stream_arn)
        ia, ib = self._shard_index(name, shard_to_merge), self._shard_index(name, adjacent_shard_to_merge)
        st = self._stream(name)
        a, b = self._reshard_target(st, ia), self._reshard_target(st, ib)
        if a.end_key + 1 != b.start_key:
            raise InvalidArgumentException(self._fmt(m.NOT_ADJACENT, st.name, shard=a.shard_id, adjacent=b.shard_id))
        self._require_active(st)
        self._require_open(st, a)
        self._require_open(st, b)
        self._commit_reshard(st, {"op": "merge", "shard": a.index, "adjacent": b.index, "delta": -1})

    async def update_shard_count(
        self,
        *,
        target_shard_count: int,
        scaling_type: str = "UNIFORM_SCALING",
        stream_name: str | None = None,
        stream_arn: str | None = None,
    ) -> tuple[int, int]:
        """Returns (current shard count, target shard count) as AWS reports them."""
        if scaling_type != "UNIFORM_SCALING":
            raise validation_error([(scaling_type, "scalingType", enum_rule(["UNIFORM_SCALING"]))])
        if target_shard_count < 1:
            raise validation_error(
                [
                    (
                        target_shard_count,
                        "targetShardCount",
                        "Member must have value greater than or equal to 1",
                    )
                ]
            )
        st = self._stream(stream_name, stream_arn)
        if st.mode is StreamMode.ON_DEMAND:
            raise ValidationException(self._fmt(m.ON_DEMAND_RESHARD, st.name))
        self._require_active(st)
        opened = sorted(st.open_shards(), key=lambda s: s.start_key)
        n, target = len(opened), target_shard_count
        others = self._open_shard_total() - n
        if target > self.settings.shard_limit - others or target > 10_000:
            raise LimitExceededException(
                m.SCALE_LIMIT.format(limit=min(self.settings.shard_limit - others, 10_000), open=n, target=target)
            )
        if target > 2 * n:
            raise LimitExceededException(m.SCALE_UP_DOUBLE.format(open=n, target=target))
        if target * 2 < n:
            raise LimitExceededException(m.SCALE_DOWN_HALF.format(open=n, target=target))
        recent = self._recent(st.scaling_ops_ms)
        if len(recent) >= self.settings.max_scaling_ops_per_day:
            raise LimitExceededException(self._fmt(m.SCALE_OPS, st.name, limit=self.settings.max_scaling_ops_per_day))
        self._commit_reshard(
            st, {"op": "scale", "target": target, "delta": target - n}, scaling_ops=[*recent, self.clock.now_ms()]
        )
        return n, target

    # ----------------------------------------------------------------- mechanics
    def _reshard_target(self, st: StreamState, index: int) -> ShardState:
        if st.mode is StreamMode.ON_DEMAND:
            raise ValidationException(self._fmt(m.ON_DEMAND_RESHARD, st.name))
        # (a CREATING or DELETING stream has no shards to name: DescribeStream lists none)
        shard = st.shard(index) if self._has_shards(st) else None
        if shard is None or shard.log is None:
            raise ResourceNotFoundException(self._fmt(m.COULD_NOT_FIND_SHARD, st.name, shard=shard_id_of(index)))
        return shard

    def _require_open(self, st: StreamState, shard: ShardState) -> None:
        if not shard.is_open:
            raise InvalidArgumentException(self._fmt(m.ALREADY_RESHARDED, st.name, shard=shard.shard_id))

    def _new_shard(self, st: StreamState, lo: int, hi: int, parent: int, adjacent: int | None = None) -> ShardState:
        child = ShardState(len(st.shards), lo, hi, self.clock.now_ms(), parent=parent, adjacent_parent=adjacent)
        st.shards.append(child)
        self._open_shard(st, child)
        return child

    def _close(self, shard: ShardState) -> None:
        # (its log is sealed, and readers waiting at its end told, once the new shard map is saved: changes.py)
        shard.closed_ms = self.clock.now_ms()

    def _split(self, st: StreamState, shard: ShardState, key: int) -> tuple[ShardState, ShardState]:
        self._close(shard)
        low = self._new_shard(st, shard.start_key, key - 1, shard.index)
        high = self._new_shard(st, key, shard.end_key, shard.index)
        return low, high

    def _merge(self, st: StreamState, a: ShardState, b: ShardState) -> ShardState:
        self._close(a)
        self._close(b)
        return self._new_shard(st, a.start_key, b.end_key, a.index, b.index)

    def _scale_uniformly(self, st: StreamState, target: int) -> None:
        """Reach ``target`` evenly sized open shards by splits and merges only, so every child has at most a parent
        and an adjacent parent, as on AWS (which also creates short-lived intermediate shards this way)."""
        ranges = even_ranges(target)
        # 1. Split every open shard that a target boundary cuts.
        for lo, _hi in ranges[1:]:
            for s in st.open_shards():
                if s.start_key < lo <= s.end_key:
                    self._split(st, s, lo)
                    break
        # 2. Merge, left to right, the open shards that make up each target range.
        for lo, hi in ranges:
            parts = sorted(
                (s for s in st.open_shards() if lo <= s.start_key and s.end_key <= hi),
                key=lambda s: s.start_key,
            )
            acc = parts[0]
            for nxt in parts[1:]:
                acc = self._merge(st, acc, nxt)

    def _commit_reshard(self, st: StreamState, op: dict[str, object], *, scaling_ops: list[int] | None = None) -> None:
        """Accept a checked reshard: the stream is UPDATING until it is carried out (by _tick). ``scaling_ops``:
        UpdateShardCount's new list of the day's scaling operations."""
        with self._change(st):
            if scaling_ops is not None:
                st.scaling_ops_ms = scaling_ops
            st.pending.append(op)
            self._set_status(st, StreamStatus.UPDATING)
        self._tick()

    def _apply_pending(self, st: StreamState) -> None:
        """Carry out the reshards accepted while UPDATING, in order: parents closed, children added with their logs
        open. Called inside a change (EngineBase._finish_reshard), which saves the new map and then seals the
        parents and routes puts to the new open shards, or undoes it all."""
        for op in st.pending:
            kind = op["op"]
            if kind == "split":
                shard = st.shards[int(op["shard"])]
                if shard.is_open and shard.start_key + 1 < int(op["key"]) < shard.end_key:
                    self._split(st, shard, int(op["key"]))
            elif kind == "merge":
                a, b = st.shards[int(op["shard"])], st.shards[int(op["adjacent"])]
                if a.is_open and b.is_open and a.end_key + 1 == b.start_key:
                    self._merge(st, a, b)
            elif kind == "scale":
                target = int(op["target"])
                opened = sorted(st.open_shards(), key=lambda s: s.start_key)
                even = [(s.start_key, s.end_key) for s in opened] == even_ranges(target)
                if not even:
                    self._scale_uniformly(st, target)
        st.pending.clear()
