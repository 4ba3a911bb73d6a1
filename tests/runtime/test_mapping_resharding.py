"""Resharding and ParallelizationFactor (spec §3.4, §3.11): parents are settled before any child record
is invoked, per-key order holds across splits and merges, shards and sub-shards run concurrently, and the
checkpoint never passes an unsettled record."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import replace

from shardline.models import PutRecordsRequestEntry
from shardline.runtime.mapping import RuntimeTuning

from ._rig import Call, Recorder, Rig

MID = 1 << 127
LOW_KEY, HIGH_KEY = "1", str(MID + 1)
S = [f"shardId-{i:012d}" for i in range(8)]


def parse(d: bytes) -> tuple[str, int]:
    key, n = d.decode().split(":")
    return key, int(n)


def assert_per_key_order(delivered: list[bytes], expected_per_key: dict[str, int]) -> None:
    """Each key's records arrive exactly once, numbered 1..n in order."""
    seen: dict[str, list[int]] = defaultdict(list)
    for d in delivered:
        key, n = parse(d)
        seen[key].append(n)
    assert {k: v for k, v in seen.items()} == {k: list(range(1, n + 1)) for k, n in expected_per_key.items()}


def parents_before_children(rec: Recorder, parents: set[str], children: set[str]) -> None:
    """Every invocation of a parent ended before the first invocation of a child started; no batch mixes shards."""
    for c in rec.calls:
        assert len(c.shards) == 1, c.shards
    first_child_start = min(
        (i for i, (what, idx) in enumerate(rec.timeline) if what == "start" and rec.calls[idx].shards <= children),
        default=None,
    )
    last_parent_end = max(
        i for i, (what, idx) in enumerate(rec.timeline) if what == "end" and rec.calls[idx].shards <= parents
    )
    assert first_child_start is not None, "no child record was delivered"
    assert last_parent_end < first_child_start


async def put_keyed(rig: Rig, key: str, numbers: range, *, ehk: str | None = None) -> None:
    entries = [PutRecordsRequestEntry(f"{key}:{n}".encode(), key, ehk) for n in numbers]
    res = await rig.eng.put_records(entries, stream_name="s")
    assert res.failed_record_count == 0


async def test_split_while_records_flow_keeps_order(rig: Rig) -> None:
    await rig.stream()
    await put_keyed(rig, "k", range(1, 101))
    release = rig.gate()

    async def hold_first(call: Call) -> None:
        if call.index == 0:
            await release.wait()

    rec = rig.recorder(before=hold_first)
    m = rig.mapping(rec, batch_size=10)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) == 1, "the first batch in flight")
    await rig.eng.split_shard(stream_name="s", shard_to_split=S[0], new_starting_hash_key=MID)
    await put_keyed(rig, "k", range(101, 201))
    for key in ("a", "b", "c", "d", "e", "f"):
        await put_keyed(rig, key, range(1, 21))
    release.set()
    expected = {"k": 200} | {key: 20 for key in "abcdef"}
    await rig.wait_for(lambda: len(rec.delivered()) >= 320, "every record")
    await rig.idle(m)
    await rig.stop(m)
    assert_per_key_order(rec.delivered(), expected)
    assert [parse(d)[1] for d in rec.delivered() if parse(d)[0] == "k"] == list(range(1, 201))
    children = {S[1], S[2]}
    assert {s for c in rec.calls for s in c.shards} == {S[0]} | children
    parents_before_children(rec, {S[0]}, children)
    assert rig.finished(m, S[0])


async def test_trim_horizon_after_a_split_reads_the_closed_parent_first(rig: Rig) -> None:
    await rig.stream()
    await put_keyed(rig, "p", range(1, 31))
    await rig.eng.split_shard(stream_name="s", shard_to_split=S[0], new_starting_hash_key=MID)
    await put_keyed(rig, "lo", range(1, 21), ehk=LOW_KEY)
    await put_keyed(rig, "hi", range(1, 21), ehk=HIGH_KEY)
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=10)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 70, "all 70 records")
    await rig.idle(m)
    await rig.stop(m)
    assert_per_key_order(rec.delivered(), {"p": 30, "lo": 20, "hi": 20})
    assert rec.delivered()[:30] == [f"p:{n}".encode() for n in range(1, 31)]
    parents_before_children(rec, {S[0]}, {S[1], S[2]})


async def test_merge_waits_for_both_parents(rig: Rig) -> None:
    await rig.stream(shards=2)
    await put_keyed(rig, "a", range(1, 21), ehk=LOW_KEY)
    await put_keyed(rig, "b", range(1, 21), ehk=HIGH_KEY)
    release = rig.gate()

    async def hold_shard1(call: Call) -> None:
        if S[1] in call.shards and not release.is_set():
            await release.wait()

    rec = rig.recorder(before=hold_shard1)
    m = rig.mapping(rec, batch_size=5)
    m.start()
    await rig.wait_for(lambda: any(S[1] in c.shards for c in rec.calls), "shard 1 held in flight")
    await rig.eng.merge_shards(stream_name="s", shard_to_merge=S[0], adjacent_shard_to_merge=S[1])
    await put_keyed(rig, "a", range(21, 41), ehk=LOW_KEY)
    await put_keyed(rig, "b", range(21, 41), ehk=HIGH_KEY)
    await rig.wait_for(lambda: rig.finished(m, S[0]), "shard 0 to reach SHARD_END")
    await rig.synced(m)
    assert m.processor(S[2]) is None, "the child started before its second parent ended"
    assert not any(S[2] in c.shards for c in rec.calls)
    release.set()
    await rig.wait_for(lambda: len(rec.delivered()) >= 80, "every record")
    await rig.idle(m)
    await rig.stop(m)
    assert_per_key_order(rec.delivered(), {"a": 40, "b": 40})
    parents_before_children(rec, {S[0], S[1]}, {S[2]})


async def test_update_shard_count_while_records_flow(rig: Rig) -> None:
    """1 -> 2 -> 4 shards: nothing lost or repeated, per-key order kept, and the four leaves run concurrently."""
    await rig.stream()
    keys = [f"k{i}" for i in range(16)]
    leaves = set(S[3:7])
    leaf_in_flight: set[str] = set()
    two_leaves = asyncio.Event()
    max_leaves = 0

    async def meet_another_leaf(call: Call) -> None:
        nonlocal max_leaves
        shard = next(iter(call.shards))
        if shard not in leaves:
            await asyncio.sleep(0.002)
            return
        leaf_in_flight.add(shard)
        max_leaves = max(max_leaves, len(leaf_in_flight))
        if len(leaf_in_flight) >= 2:
            two_leaves.set()
        try:
            # Held until a second leaf is in flight too: a runtime that served one shard at a time never gets there.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(two_leaves.wait(), 3)
        finally:
            leaf_in_flight.discard(shard)

    rec = rig.recorder(before=meet_another_leaf)
    m = rig.mapping(rec, batch_size=10)
    m.start()
    per_key = 0
    for phase, target in enumerate((2, 4, None)):
        for n in range(per_key + 1, per_key + 7):
            entries = [PutRecordsRequestEntry(f"{k}:{n}".encode(), k) for k in keys]
            await rig.eng.put_records(entries, stream_name="s")
            await asyncio.sleep(0)
        per_key += 6
        if target is not None:
            await rig.wait_for(lambda: len(rec.calls) > phase, "the mapping to be reading")  # noqa: B023 (awaited here)
            await rig.eng.update_shard_count(stream_name="s", target_shard_count=target)
    await rig.wait_for(lambda: len(rec.delivered()) >= 16 * per_key, "every record")
    await rig.idle(m)
    await rig.stop(m)
    assert_per_key_order(rec.delivered(), dict.fromkeys(keys, per_key))
    assert max_leaves >= 2
    parents_before_children(rec, {S[0]}, {S[1], S[2]})
    parents_before_children(rec, {S[1]}, {S[3], S[4]})
    parents_before_children(rec, {S[2]}, {S[5], S[6]})


async def test_every_shard_of_a_150_shard_stream_is_polled(rig: Rig) -> None:
    await rig.open(shard_limit=500)
    await rig.stream(shards=150)
    shards = (await rig.eng.list_shards("s")).shards
    assert len(shards) == 150
    entries = [
        PutRecordsRequestEntry(f"{s.shard_id}:1".encode(), "k", str(s.hash_key_range.starting_hash_key)) for s in shards
    ]
    await rig.eng.put_records(entries, stream_name="s")
    rec = rig.recorder()
    tuning = replace(RuntimeTuning(), poll_interval_s=0.2, retry_backoff_s=0.001)
    m = rig.mapping(rec, tuning=tuning)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 150, "one record from every shard", timeout=30)
    await rig.stop(m)
    assert sorted(rec.delivered()) == sorted(e.data for e in entries)
    for c in rec.calls:
        [shard] = c.shards
        assert c.datas == [f"{shard}:1".encode()]


async def test_parallelization_factor_keeps_per_key_order(rig: Rig) -> None:
    """PF 4: batches of one shard run concurrently (at most 4), a key is never in two batches at once, and
    [DESIGN] a key always maps to the same sub-shard, so no batch mixes keys of two sub-shards."""
    await rig.stream()
    keys = [f"k{i}" for i in range(1, 9)]
    for n in range(1, 51):
        await rig.eng.put_records([PutRecordsRequestEntry(f"{k}:{n}".encode(), k) for k in keys], stream_name="s")
    keys_in_flight: list[set[str]] = []
    overlaps: list[set[str]] = []
    met = asyncio.Event()

    async def slow(call: Call) -> None:
        mine = set(call.keys)
        for other in keys_in_flight:
            if other & mine:
                overlaps.append(other & mine)
        keys_in_flight.append(mine)
        if len(keys_in_flight) >= 2:
            met.set()
        try:
            if call.index == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(met.wait(), 3)
            await asyncio.sleep(0.005)
        finally:
            keys_in_flight.remove(mine)

    rec = rig.recorder(before=slow)
    m = rig.mapping(rec, batch_size=10, parallelization_factor=4)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 400, "400 records")
    await rig.idle(m)
    await rig.stop(m)
    assert_per_key_order(rec.delivered(), dict.fromkeys(keys, 50))
    assert 1 < rec.max_in_flight <= 4
    assert overlaps == []
    # Keys that ever shared a batch form groups; there can be no more groups than sub-shards.
    group = {k: {k} for k in keys}
    for c in rec.calls:
        merged = set().union(*(group[k] for k in c.keys))
        for k in merged:
            group[k] = merged
    groups = {frozenset(g) for g in group.values()}
    assert 2 <= len(groups) <= 4


async def test_checkpoint_never_passes_an_unsettled_record(rig: Rig) -> None:
    """PF 4: a failing key blocks the shard checkpoint behind its oldest unsettled record, while the other
    sub-shards carry on; once it succeeds, the checkpoint catches up."""
    await rig.stream()
    # k1 and k3 fall in different sub-shards with PF 4.
    [first] = await rig.put([b"k3:1"], pk="k3")
    [stuck] = await rig.put([b"k1:1"], pk="k1")
    later = await rig.put([f"k3:{n}".encode() for n in range(2, 12)], pk="k3")
    failing = {"on": True}
    rec = rig.recorder(fail=lambda c: failing["on"] and "k1" in c.keys)
    m = rig.mapping(rec, batch_size=3, parallelization_factor=4)
    m.start()
    await rig.wait_for(lambda: sum(k == "k3" for c in rec.calls for k in c.keys) >= 11, "every k3 record")
    await rig.wait_for(lambda: sum("k1" in c.keys for c in rec.calls) >= 3, "k1 retried")
    assert rig.checkpoint(m) == first
    checkpoint = rig.checkpoint(m)
    assert checkpoint is not None and int(checkpoint) < int(stuck)
    failing["on"] = False
    await rig.wait_for(lambda: rig.checkpoint(m) == later[-1], "the checkpoint to catch up")
    await rig.stop(m)
