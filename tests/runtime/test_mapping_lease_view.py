"""Monitoring reads a mapping's leases from its lease view, never from the lease store on the event loop: the
figures of /metrics (``Mapping.stats``), the dashboard's overview and its shard map show the checkpoints and finished
shards while every store call of the mapping runs on its store thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

from shardline.metrics.overview import overview, shard_map
from shardline.metrics.service import Monitor
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.checkpoints import LeaseStore
from shardline.runtime.functions import FunctionPool
from shardline.runtime.supervisor import Mapping

from ._rig import Rig

MID = 1 << 127
S = [f"shardId-{i:012d}" for i in range(4)]
LOW_KEY, HIGH_KEY = "1", str(MID + 1)


class ThreadNotingStore:
    """A lease store passing every call on to ``inner``, noting the thread each was made on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, threading.Thread]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def noted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.current_thread()))
            return attr(*args, **kwargs)

        return noted

    def on(self, thread: threading.Thread) -> list[str]:
        return [name for name, t in self.calls if t is thread]


class OneMapping:
    """What the monitor reads from a project, around one mapping."""

    def __init__(self, mapping: Mapping) -> None:
        self.pools: dict[str, FunctionPool] = {}
        self.mappings = [mapping]


async def put(rig: Rig, key: str, n: int) -> dict[str, str]:
    """``n`` records with explicit hash key ``key``; the last sequence number of each shard they went to."""
    res = await rig.eng.put_records([PutRecordsRequestEntry(b"x", "pk", key)] * n, stream_name="s")
    assert res.failed_record_count == 0
    return {str(r.shard_id): str(r.sequence_number) for r in res.records}


def row_of(monitor: Monitor, shard_id: str) -> dict[str, Any]:
    rows = {r["shard_id"]: r for r in shard_map(monitor, "s")["shards"]}
    [row] = rows[shard_id]["mappings"]
    return cast(dict[str, Any], row)


async def test_monitoring_reads_the_lease_view_never_the_store_on_the_event_loop(rig: Rig) -> None:
    await rig.stream("s", shards=2)
    store = ThreadNotingStore(rig.store())
    rec = rig.recorder()
    m = rig.mapping(rec, store=cast(LeaseStore, store), batch_size=3)
    monitor = Monitor(rig.eng, project=OneMapping(m), persist=False)
    loop_thread = threading.current_thread()

    def read_all() -> dict[str, Any]:
        """Every monitoring read on the event loop: a metrics sample, the overview and the shard map."""
        monitor.tick()
        [mp] = overview(monitor)["mappings"]
        shards = {r["shard_id"]: r["mappings"][0] for r in shard_map(monitor, "s")["shards"] if r["mappings"]}
        return {"stats": m.stats(), "overview": mp, "shards": shards}

    async def until(cond: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def check() -> bool:
            seen.update(read_all())
            return cond(seen)

        await rig.wait_for(check, what)
        return seen

    m.start()
    last = {**await put(rig, LOW_KEY, 7), **await put(rig, HIGH_KEY, 5)}
    assert set(last) == {S[0], S[1]}
    await rig.wait_for(lambda: len(rec.delivered()) == 12, "every record delivered")
    await rig.idle(m)

    seen = await until(
        lambda s: all(s["shards"].get(sid, {}).get("checkpoint") == seq for sid, seq in last.items()),
        "the shard map to show each shard's last sequence number as its checkpoint",
    )
    assert {sid: seen["shards"][sid]["finished"] for sid in last} == {S[0]: False, S[1]: False}
    assert {lease["shard_id"]: lease["checkpoint"] for lease in seen["overview"]["leases"]["shards"]} == last
    assert seen["stats"].shards_finished == 0 and seen["overview"]["shards_finished"] == 0
    assert m.lease_of(S[0]) is not None and m.lease_of(S[0]).checkpoint == last[S[0]]  # type: ignore[union-attr]

    # Resharding closes shard 1: the mapping reads it to its end and finishes it; its children start.
    await rig.eng.split_shard(stream_name="s", shard_to_split=S[1], new_starting_hash_key=str(MID + (1 << 126)))
    seen = await until(
        lambda s: s["stats"].shards_finished == 1 and {S[2], S[3]} <= set(s["shards"]),
        "shard 1 to show as finished, and its children's leases",
    )
    assert seen["overview"]["shards_finished"] == 1
    assert seen["shards"][S[1]]["finished"] is True and seen["shards"][S[1]]["checkpoint"] == "SHARD_END"
    assert seen["shards"][S[0]] == {**seen["shards"][S[0]], "checkpoint": last[S[0]], "finished": False}
    more = await put(rig, HIGH_KEY, 4)
    [(child, child_seq)] = more.items()
    assert child in (S[2], S[3])
    await until(lambda s: s["shards"][child]["checkpoint"] == child_seq, "the child's checkpoint")
    await rig.idle(m)
    read_all()

    # The store was called on the mapping's store thread; on the event loop's only for checkpoints that the SQLite
    # file took without waiting (checkpoint_now, which returns False instead of waiting for a lock).
    assert {"leases", "finish"} <= {name for name, _ in store.calls}
    assert set(store.on(loop_thread)) == {"checkpoint_now"}
