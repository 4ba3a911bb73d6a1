"""Acceptance check 13 (fencing) and the lease transitions, on SQLite and PostgreSQL alike.

Every write is conditional on (owner, epoch): with a stale epoch, checkpoint, renew, SHARD_END and release update
nothing and raise LeaseLost (renew reports the lease lost); with the current epoch they update the row.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from shardline.runtime.leases import ChildShard, Lease, LeaseLost, LeaseStore, Renewal
from shardline.runtime.position import TRIM_HORIZON, Position

from .conftest import StoreFactory

TTL = 30.0


def _stale(lease: Lease) -> Lease:
    return dataclasses.replace(lease, epoch=lease.epoch - 1)


def test_stale_epoch_writes_update_nothing(stores: StoreFactory, app: str) -> None:
    a, b = stores("a"), stores("b")
    a.ensure(app, "s", "shard-0", (), TRIM_HORIZON)
    first = a.take_available(app, 5, TTL)
    assert [(x.shard_id, x.owner, x.epoch) for x in first] == [("shard-0", "a", 1)]
    lease = first[0]
    a.checkpoint(lease, Position.sequence("100"))
    released = a.release(lease)
    assert released is None
    (again,) = b.take_available(app, 5, TTL)
    assert (again.owner, again.epoch, again.checkpoint) == ("b", 3, "100")
    # a's epoch-1 lease is a zombie now: every fenced write updates 0 rows.
    with pytest.raises(LeaseLost):
        a.checkpoint(lease, Position.sequence("200"))
    with pytest.raises(LeaseLost):
        a.finish(lease, [])
    with pytest.raises(LeaseLost):
        a.release(lease)
    assert a.renew(app, {lease.key: lease.epoch}, TTL).lost == [lease.key]
    # b's own stale epoch is fenced too (the row names b, but not that epoch).
    with pytest.raises(LeaseLost):
        b.checkpoint(_stale(again), Position.sequence("200"))
    # The current holder's writes update the row.
    renewal = b.renew(app, {again.key: again.epoch}, TTL)
    assert renewal.kept == {again.key: None} and renewal.lost == []
    b.checkpoint(again, Position.sequence("200"))
    got = b.get(app, "s", "shard-0")
    assert got is not None and (got.owner, got.epoch, got.checkpoint) == ("b", 3, "200")


def test_checkpoints_never_move_backwards(stores: StoreFactory, app: str) -> None:
    a = stores("a")
    a.ensure(app, "s", "shard-0", (), TRIM_HORIZON)
    (lease,) = a.take_available(app, 1, TTL)
    big = "49590338271490256608559692538361571095921575989136588898"
    a.checkpoint(lease, Position.sequence(big))
    a.checkpoint(lease, Position.sequence(big))  # an idempotent retry updates the row
    with pytest.raises(LeaseLost):
        a.checkpoint(lease, Position.sequence("9" * 55))  # fewer digits: smaller
    with pytest.raises(LeaseLost):
        a.checkpoint(lease, Position.sequence(big[:-1] + "7"))
    a.checkpoint(lease, Position.sequence(big, 2))
    with pytest.raises(LeaseLost):
        a.checkpoint(lease, Position.sequence(big, 1))
    got = a.get(app, "s", "shard-0")
    assert got is not None and got.position == Position.sequence(big, 2)


def test_parents_come_first_in_the_take(stores: StoreFactory, app: str) -> None:
    a, b = stores("a"), stores("b")
    a.ensure(app, "s", "p", (), TRIM_HORIZON)
    a.ensure(app, "s", "q", (), TRIM_HORIZON)
    a.ensure(app, "s", "c1", ("p",), TRIM_HORIZON)
    a.ensure(app, "s", "m", ("p", "q"), TRIM_HORIZON)
    taken = a.take_available(app, 10, TTL)
    assert sorted(x.shard_id for x in taken) == ["p", "q"]
    p = next(x for x in taken if x.shard_id == "p")
    q = next(x for x in taken if x.shard_id == "q")
    a.finish(p, [ChildShard("c1", ("p",)), ChildShard("c2", ("p",))])
    done = a.get(app, "s", "p")
    assert done is not None and done.finished and done.checkpoint == "SHARD_END"
    assert done.child_shard_ids == ("c1", "c2")
    # c2's lease was created by the finish; the merge child m still waits for q.
    assert sorted(x.shard_id for x in b.take_available(app, 10, TTL)) == ["c1", "c2"]
    a.finish(q, [ChildShard("m", ("p", "q"))])
    assert [x.shard_id for x in b.take_available(app, 10, TTL)] == ["m"]


def test_graceful_handoff_and_hard_steal(stores: StoreFactory, app: str) -> None:
    a, b, c = stores("a"), stores("b"), stores("c")
    a.ensure(app, "s", "x", (), TRIM_HORIZON)
    (lease,) = a.take_available(app, 1, TTL)
    assert b.request_handoff(app, lease.key, "a", lease.epoch)
    assert not c.request_handoff(app, lease.key, "a", lease.epoch)  # one request at a time
    assert a.renew(app, {lease.key: lease.epoch}, TTL).kept == {lease.key: "b"}
    # Not timed out yet: b cannot force it.
    assert b.steal(app, lease.key, "a", lease.epoch, TTL, force=False, handoff_timeout_s=60) is None
    assert a.release(lease) == "b"
    got = a.get(app, "s", "x")
    assert got is not None and (got.owner, got.epoch, got.owner_switches_since_checkpoint) == ("b", 2, 2)
    assert a.renew(app, {lease.key: lease.epoch}, TTL).lost == [lease.key]  # the zombie's renew
    assert c.steal(app, lease.key, "b", 1, TTL, force=True, handoff_timeout_s=0) is None  # stale epoch
    stolen = c.steal(app, lease.key, "b", 2, TTL, force=True, handoff_timeout_s=0)
    assert stolen is not None and (stolen.owner, stolen.epoch, stolen.owner_switches_since_checkpoint) == ("c", 3, 3)
    c.checkpoint(stolen, Position.sequence("5"))
    got = c.get(app, "s", "x")
    assert got is not None and got.owner_switches_since_checkpoint == 0


def test_expired_leases_are_taken_and_renewed_ones_are_not(stores: StoreFactory, app: str) -> None:
    a, b = stores("a"), stores("b")
    a.ensure(app, "s", "x", (), TRIM_HORIZON)
    a.ensure(app, "s", "y", (), TRIM_HORIZON)
    held = a.take_available(app, 2, 0.0)  # expires at once
    assert len(held) == 2
    x, y = sorted(held, key=lambda lease: lease.shard_id)
    assert a.renew(app, {x.key: x.epoch}, TTL).kept == {x.key: None}  # untaken: the same epoch renews
    taken_all = _until_taken(b, app)
    assert len(taken_all) == 1
    taken = taken_all[0]
    assert (taken.shard_id, taken.owner, taken.epoch) == ("y", "b", 2)
    assert a.renew(app, {y.key: y.epoch}, TTL).lost == [y.key]


def _until_taken(store: LeaseStore, app: str) -> list[Lease]:
    """Take again until the store's clock has passed the expiry (a millisecond or so)."""
    deadline = time.monotonic() + 10
    while not (got := store.take_available(app, 5, TTL)):
        assert time.monotonic() < deadline, "the expired lease was never taken"
    return got


def test_snapshot_and_workers(stores: StoreFactory, app: str) -> None:
    a, b = stores("a"), stores("b")
    a.register(app, TTL)
    b.register(app, TTL)
    for i in range(3):
        a.ensure(app, "s", f"sh{i}", (), TRIM_HORIZON)
    a.take_available(app, 2, TTL)
    snap = b.snapshot(app)
    assert (snap.workers, snap.takeable) == (2, 3)
    assert {k: len(v) for k, v in snap.owners.items()} == {"a": 2}
    # Nothing a cleanup could delete; the leader is the live worker with the lowest id.
    assert (snap.finished, snap.stale_workers, snap.leader) == (0, 0, "a")
    a.deregister(app)
    assert (b.snapshot(app).workers, b.snapshot(app).leader) == (1, "b")


def test_cleanup_waits_for_every_child_to_start(stores: StoreFactory, app: str) -> None:
    a = stores("a")
    a.ensure(app, "s", "p", (), TRIM_HORIZON)
    (p,) = a.take_available(app, 1, TTL)
    assert a.snapshot(app).finished == 0
    a.finish(p, [ChildShard("c1", ("p",)), ChildShard("c2", ("p",))])
    assert a.snapshot(app).finished == 1  # a cleanup pass is due from now on
    assert a.cleanup(app, 0.0) == 0  # both children still at TRIM_HORIZON
    c1, c2 = sorted(a.take_available(app, 2, TTL), key=lambda lease: lease.shard_id)
    a.checkpoint(c1, Position.sequence("1"))
    assert a.cleanup(app, 0.0) == 0  # c2 has not started
    a.checkpoint(c2, Position.sequence("1"))
    assert a.cleanup(app, 3600.0) == 0  # not finished long enough ago
    assert a.cleanup(app, 0.0) == 1
    assert a.get(app, "s", "p") is None
    assert a.snapshot(app).finished == 0  # and none is due any more


def test_keepalive_heartbeats_and_renews_in_one_call(stores: StoreFactory, app: str) -> None:
    """The renew interval's one statement: the worker row counts as live, held leases are renewed (with a pending
    handoff named), a lease at a stale epoch is reported lost; with nothing held it still heartbeats."""
    a, b = stores("a"), stores("b")
    for i in range(3):
        a.ensure(app, "s", f"shard-{i}", (), TRIM_HORIZON)
    assert a.keepalive(app, {}, TTL) == Renewal({}, [])
    assert a.snapshot(app).workers == 1
    taken = {x.key: x for x in a.take_available(app, 2, TTL)}
    b.keepalive(app, {}, TTL)
    snap = b.snapshot(app)
    assert (snap.workers, snap.takeable) == (2, 3)
    assert sorted(snap.owners["a"]) == sorted((k, x.epoch) for k, x in taken.items())
    first, second = sorted(taken)
    assert b.request_handoff(app, first, "a", taken[first].epoch)
    renewal = a.keepalive(app, {first: taken[first].epoch, second: taken[second].epoch - 1}, TTL)
    assert renewal.kept == {first: "b"} and renewal.lost == [second]
