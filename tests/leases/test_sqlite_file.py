"""The SQLite lease file when several processes open it at once: a worker that opens the file while another holds
its write lock (two workers of `shardline up` creating it together) waits for the lock instead of failing."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from shardline.runtime.leases import Lease, LeaseLost, LeaseUnavailable, SqliteLeaseStore
from shardline.runtime.leases import sqlite as sqlite_module
from shardline.runtime.position import TRIM_HORIZON, Position


def test_opening_waits_for_a_write_lock_held_while_the_file_is_in_rollback_mode(tmp_path: Path) -> None:
    path = tmp_path / "leases.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other_process (x)")  # a file that exists, in rollback mode, write-locked:
    other.execute("BEGIN IMMEDIATE")  # SQLite refuses the switch to WAL at once here, whatever busy_timeout says
    opened: list[SqliteLeaseStore] = []
    opener = threading.Thread(target=lambda: opened.append(SqliteLeaseStore(path, owner="w1")))
    opener.start()
    opener.join(0.3)
    assert opener.is_alive(), "the store should wait for the lock"
    other.execute("COMMIT")
    other.close()
    opener.join(10)
    [store] = opened
    try:
        store.ensure("app", "s", "shardId-000000000000", (), TRIM_HORIZON)
        assert store.take("app", "s", "shardId-000000000000", ttl_s=10).owner == "w1"
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        store.close()


def test_a_write_lock_held_past_the_busy_timeout_is_a_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "leases.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE other_process (x)")
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LeaseUnavailable, match=r"lease file .*leases\.db: database is locked"):
            SqliteLeaseStore(path, owner="w1")
    finally:
        other.execute("ROLLBACK")
        other.close()


# ------------------------------------------------------------------------------ checkpoints written at once


def _held(store: SqliteLeaseStore, shard: str = "shardId-000000000000") -> Lease:
    store.ensure("app", "s", shard, (), TRIM_HORIZON)
    return store.take("app", "s", shard, ttl_s=10)


def test_a_checkpoint_written_at_once_is_fenced_like_any_other(tmp_path: Path) -> None:
    store = SqliteLeaseStore(tmp_path / "leases.db", owner="w1")
    try:
        lease = _held(store)
        assert store.checkpoint_now(lease, Position.sequence("100")) is True
        assert store.get("app", "s", lease.shard_id).checkpoint == "100"  # type: ignore[union-attr]
        newer = store.take("app", "s", lease.shard_id, ttl_s=10)  # the lease taken again: the old epoch is fenced
        with pytest.raises(LeaseLost):
            store.checkpoint_now(lease, Position.sequence("200"))
        assert store.checkpoint_now(newer, Position.sequence("200")) is True
        assert store.get("app", "s", lease.shard_id).checkpoint == "200"  # type: ignore[union-attr]
    finally:
        store.close()
    assert store.checkpoint_now(newer, Position.sequence("300")) is False  # closed: no connection is opened again
    assert store._now_db is None


def test_a_write_lock_held_elsewhere_makes_it_return_at_once_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the file's write lock: checkpoint_now returns False at once. (The store's own busy
    timeout is ten minutes here: a checkpoint_now that waited for the lock would hang the test.)"""
    monkeypatch.setattr(sqlite_module, "_BUSY_TIMEOUT_MS", 600_000)
    path = tmp_path / "leases.db"
    store = SqliteLeaseStore(path, owner="w1")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        lease = _held(store)
        other.execute("BEGIN IMMEDIATE")
        assert store.checkpoint_now(lease, Position.sequence("100")) is False
        other.execute("ROLLBACK")
        assert store.get("app", "s", lease.shard_id).checkpoint == "TRIM_HORIZON"  # type: ignore[union-attr]
        assert store.checkpoint_now(lease, Position.sequence("100")) is True
    finally:
        other.close()
        store.close()


def test_a_store_that_redefines_checkpoint_writes_every_checkpoint_through_it(tmp_path: Path) -> None:
    class Watched(SqliteLeaseStore):  # (as the tests that inject store faults do)
        def checkpoint(self, lease: Lease, position: Position) -> None:
            super().checkpoint(lease, position)

    store = Watched(tmp_path / "leases.db", owner="w1")
    try:
        assert store.checkpoint_now(_held(store), Position.sequence("100")) is False
    finally:
        store.close()


def test_writes_at_once_leave_the_wal_checkpointing_to_the_thread_so_the_wal_stays_bounded(tmp_path: Path) -> None:
    """Written as a shard processor writes them (at once, else through checkpoint()), 4,000 checkpoints leave a WAL
    of at most the autocheckpoint size (1,000 frames) plus what the writes at once add before the next checkpoint()
    (256 frames at most): the commits at once never checkpoint it, and every 256th write goes to checkpoint()."""
    path = tmp_path / "leases.db"
    store = SqliteLeaseStore(path, owner="w1")
    try:
        lease = _held(store)
        through_checkpoint = 0
        for n in range(1, 4001):
            position = Position.sequence(str(1000 + n))
            if not store.checkpoint_now(lease, position):
                through_checkpoint += 1
                store.checkpoint(lease, position)
        assert through_checkpoint == 4000 // sqlite_module._NOW_WAL_EVERY
        page = store._db.execute("PRAGMA page_size").fetchone()[0]
        frames = (path.with_name("leases.db-wal").stat().st_size - 32) // (page + 24)
        assert frames <= 1000 + sqlite_module._NOW_WAL_EVERY + 8, frames
    finally:
        store.close()


def test_a_connection_that_cannot_be_opened_leaves_the_write_to_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file descriptor left, say: checkpoint_now returns False, and checkpoint() (on its open connection) writes."""
    store = SqliteLeaseStore(tmp_path / "leases.db", owner="w1")

    def no_descriptor(path: Path) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite_module, "_connect_now", no_descriptor)
    try:
        lease = _held(store)
        assert store.checkpoint_now(lease, Position.sequence("100")) is False
        store.checkpoint(lease, Position.sequence("100"))
        assert store.get("app", "s", lease.shard_id).checkpoint == "100"  # type: ignore[union-attr]
    finally:
        store.close()
