"""The SQLite lease file when several processes open it at once: a worker that opens the file while another holds
its write lock (two workers of `shardline up` creating it together) waits for the lock instead of failing."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from shardline.runtime.leases import LeaseUnavailable, SqliteLeaseStore
from shardline.runtime.leases import sqlite as sqlite_module
from shardline.runtime.position import TRIM_HORIZON


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
