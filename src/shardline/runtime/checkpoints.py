"""Durable checkpoints in a lease table: one row per (mapping, stream, shard).

The row has the shape of the multi-worker lease table (owner, epoch, checkpoint, parents), so running many
workers later is another backend for the same store. In one process the worker simply holds every lease; the
epoch still fences writes, so a late result from a superseded shard task can never move a checkpoint.

Checkpoint values are a sequence number (every record up to and including it is settled) or a sentinel:
``TRIM_HORIZON``, ``LATEST``, ``AT_TIMESTAMP:<ms>`` before anything was settled, ``SHARD_END`` once the whole
shard is settled.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SHARD_END", "Lease", "LeaseLost", "LeaseStore"]

SHARD_END = "SHARD_END"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shard_lease (
  app TEXT NOT NULL,
  lease_key TEXT NOT NULL,
  stream TEXT NOT NULL,
  shard_id TEXT NOT NULL,
  owner TEXT,
  epoch INTEGER NOT NULL DEFAULT 0,
  expires_at_ms INTEGER,
  checkpoint TEXT NOT NULL,
  checkpoint_at_ms INTEGER,
  owner_switches_since_checkpoint INTEGER NOT NULL DEFAULT 0,
  parent_shard_ids TEXT NOT NULL DEFAULT '[]',
  child_shard_ids TEXT NOT NULL DEFAULT '[]',
  created_at_ms INTEGER NOT NULL,
  finished_at_ms INTEGER,
  PRIMARY KEY (app, lease_key)
) WITHOUT ROWID;
"""


class LeaseLost(RuntimeError):
    """The lease changed owner or epoch: this shard task must stop without writing."""


@dataclass(frozen=True, slots=True)
class Lease:
    app: str
    stream: str
    shard_id: str
    owner: str | None
    epoch: int
    checkpoint: str
    parent_shard_ids: tuple[str, ...]
    finished: bool


class LeaseStore:
    """SQLite lease table (WAL). ``path`` is created if missing."""

    def __init__(self, path: Path, *, owner: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _key(stream: str, shard_id: str) -> str:
        return f"{stream}:{shard_id}"

    def _row(self, app: str, stream: str, shard_id: str) -> Lease | None:
        row = self._db.execute(
            "SELECT owner, epoch, checkpoint, parent_shard_ids, finished_at_ms FROM shard_lease "
            "WHERE app=? AND lease_key=?",
            (app, self._key(stream, shard_id)),
        ).fetchone()
        if row is None:
            return None
        owner, epoch, checkpoint, parents, finished = row
        return Lease(
            app, stream, shard_id, owner, int(epoch), checkpoint, tuple(json.loads(parents)), finished is not None
        )

    def get(self, app: str, stream: str, shard_id: str) -> Lease | None:
        return self._row(app, stream, shard_id)

    def leases(self, app: str) -> list[Lease]:
        rows = self._db.execute(
            "SELECT stream, shard_id, owner, epoch, checkpoint, parent_shard_ids, finished_at_ms FROM shard_lease "
            "WHERE app=? ORDER BY lease_key",
            (app,),
        ).fetchall()
        return [Lease(app, s, sh, o, int(e), c, tuple(json.loads(p)), f is not None) for s, sh, o, e, c, p, f in rows]

    def ensure(self, app: str, stream: str, shard_id: str, parents: tuple[str, ...], initial: str) -> Lease:
        """The lease of a shard, created with checkpoint ``initial`` the first time the shard is seen."""
        now = _now_ms()
        self._db.execute(
            "INSERT OR IGNORE INTO shard_lease (app, lease_key, stream, shard_id, checkpoint, parent_shard_ids, "
            "created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (app, self._key(stream, shard_id), stream, shard_id, initial, json.dumps(list(parents)), now),
        )
        lease = self._row(app, stream, shard_id)
        assert lease is not None
        return lease

    def take(self, app: str, stream: str, shard_id: str, *, ttl_ms: int = 10_000) -> Lease:
        """Become the owner: the epoch goes up, which fences every earlier holder."""
        now = _now_ms()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE shard_lease SET owner_switches_since_checkpoint = owner_switches_since_checkpoint + "
                "(owner IS NOT ?), owner=?, epoch=epoch+1, expires_at_ms=? WHERE app=? AND lease_key=?",
                (self.owner, self.owner, now + ttl_ms, app, self._key(stream, shard_id)),
            )
        lease = self._row(app, stream, shard_id)
        if lease is None:
            raise KeyError(f"no lease for {app} {stream} {shard_id}")
        return lease

    def checkpoint(self, lease: Lease, value: str, *, finished: bool = False) -> None:
        """Record that everything up to ``value`` is settled. Raises LeaseLost when fenced."""
        now = _now_ms()
        cur = self._db.execute(
            "UPDATE shard_lease SET checkpoint=?, checkpoint_at_ms=?, owner_switches_since_checkpoint=0, "
            "finished_at_ms=CASE WHEN ? THEN ? ELSE finished_at_ms END "
            "WHERE app=? AND lease_key=? AND owner=? AND epoch=?",
            (value, now, finished, now, lease.app, self._key(lease.stream, lease.shard_id), self.owner, lease.epoch),
        )
        if cur.rowcount != 1:
            raise LeaseLost(f"lease {lease.stream}:{lease.shard_id} of {lease.app} is no longer ours")

    def finish(self, lease: Lease, children: tuple[str, ...]) -> None:
        """The shard is settled to its end: SHARD_END, and the children it ended into."""
        self.checkpoint(lease, SHARD_END, finished=True)
        self._db.execute(
            "UPDATE shard_lease SET child_shard_ids=? WHERE app=? AND lease_key=?",
            (json.dumps(list(children)), lease.app, self._key(lease.stream, lease.shard_id)),
        )

    def release(self, lease: Lease) -> None:
        self._db.execute(
            "UPDATE shard_lease SET owner=NULL, expires_at_ms=NULL WHERE app=? AND lease_key=? AND owner=? AND epoch=?",
            (lease.app, self._key(lease.stream, lease.shard_id), self.owner, lease.epoch),
        )

    def delete_app(self, app: str) -> None:
        self._db.execute("DELETE FROM shard_lease WHERE app=?", (app,))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
