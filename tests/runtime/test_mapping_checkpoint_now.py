"""Checkpoints written at once (SqliteLeaseStore.checkpoint_now) beside those that must wait: while another process
holds the lease file's write lock, a shard's checkpoint goes to the mapping's store thread and waits there, the event
loop runs on, and the checkpoint lands once the lock is released."""

from __future__ import annotations

import sqlite3

import pytest

from shardline.runtime.leases import sqlite as sqlite_module

from ._rig import Rig


async def test_a_lease_file_locked_by_another_process_holds_up_only_the_checkpoint(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store waits up to ten minutes for a lock: a checkpoint that waited on the event loop would hold it that
    # long, and this test, which must run to release the lock, would hang instead of passing.
    monkeypatch.setattr(sqlite_module, "_BUSY_TIMEOUT_MS", 600_000)
    await rig.stream()
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=10, store=rig.store())
    m.start()
    first = await rig.put(rig.numbered(10))
    await rig.wait_for(lambda: len(rec.delivered()) == 10, "the first batch")
    await rig.idle(m)
    assert rig.checkpoint(m) == first[-1]  # (written at once: nothing held the lock)

    other = sqlite3.connect(rig.leases_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        second = await rig.put(rig.numbered(10, start=11))
        await rig.wait_for(lambda: len(rec.delivered()) == 20, "the second batch")
        [stats] = m.shard_stats().values()
        await rig.wait_for(lambda: stats.outstanding == 0, "the second batch settled, its checkpoint being written")
        # Read on a plain connection of its own: the mapping's store is busy waiting for the lock, as it should be.
        [(checkpoint,)] = other.execute("SELECT checkpoint FROM shard_lease WHERE app = ?", (m.uuid,)).fetchall()
        assert checkpoint == first[-1]  # the write waits for the lock, off the loop
    finally:
        other.execute("ROLLBACK")
        other.close()
    await rig.idle(m)  # (idle includes the checkpoint write)
    assert rig.checkpoint(m) == second[-1]
    await rig.stop(m)
