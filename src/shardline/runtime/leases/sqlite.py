"""The lease table in a SQLite file (WAL): one machine, one or several worker processes sharing the file.

SQLite has one writer at a time, so a read-then-write (take, steal, SHARD_END) runs as ``BEGIN IMMEDIATE``: the
write lock is taken first and ``busy_timeout`` applies. Time is the injected clock's wall time read after the lock
is held; every process on the host shares that clock, so expiry needs no agreement between machines. Sequence
numbers (up to 128 digits, no leading zeros) are compared by (length, text).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...clock import Clock, SystemClock
from ..position import Position
from .base import ChildShard, Lease, LeaseLost, LeaseUnavailable, Renewal, Snapshot, fenced, lease_key, new_worker_id

__all__ = ["SqliteLeaseStore"]

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
CREATE TABLE IF NOT EXISTS lease_worker (
  app TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  started_at_ms INTEGER NOT NULL,
  heartbeat_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  load TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (app, worker_id)
) WITHOUT ROWID;
"""
# Columns added after the first version of the table (a file from an earlier run gets them on open).
_ADDED = {
    "checkpoint_sub": "INTEGER NOT NULL DEFAULT 0",
    "renewed_at_ms": "INTEGER",
    "renew_count": "INTEGER NOT NULL DEFAULT 0",
    "handoff_to": "TEXT",
    "handoff_requested_at_ms": "INTEGER",
}
_COLS = (
    "stream, shard_id, owner, epoch, checkpoint, checkpoint_sub, parent_shard_ids, finished_at_ms IS NOT NULL, "
    "child_shard_ids, owner_switches_since_checkpoint, handoff_to"
)
# How long a statement waits for another process's lock before the store counts as unavailable.
_BUSY_TIMEOUT_MS = 5000
# checkpoint_now leaves every this-many-th write to checkpoint(), whose commit checkpoints the WAL when it is due.
_NOW_WAL_EVERY = 256
# A worker row that expired this long ago is deleted by cleanup.
_STALE_WORKER_MS = 86_400_000
# A lease can be taken when none of its parents is still unfinished.
_PARENTS_DONE = (
    "NOT EXISTS (SELECT 1 FROM shard_lease p, json_each(l.parent_shard_ids) j WHERE p.app = l.app "
    "AND p.stream = l.stream AND p.shard_id = j.value AND p.checkpoint <> 'SHARD_END')"
)
# The monotonic guard: a new sequence-number checkpoint is >= the stored one (compared as decimal numbers).
_NOT_BACKWARDS = (
    "CASE WHEN checkpoint GLOB '[0-9]*' THEN "
    "(length(:seq) > length(checkpoint) OR (length(:seq) = length(checkpoint) AND "
    "(:seq > checkpoint OR (:seq = checkpoint AND :sub >= checkpoint_sub)))) "
    "WHEN checkpoint = 'SHARD_END' THEN 0 ELSE 1 END"
)
_CHECKPOINT = (
    "UPDATE shard_lease SET checkpoint=:cp, checkpoint_sub=:sub, checkpoint_at_ms=:now, "
    "owner_switches_since_checkpoint=0 WHERE app=:app AND lease_key=:key AND owner=:me AND epoch=:epoch "
    f"AND (:seq = '' OR {_NOT_BACKWARDS}) RETURNING epoch"
)


class SqliteLeaseStore:
    """A SQLite lease table; ``path`` is created if missing."""

    backend = "sqlite"

    def __init__(self, path: Path, *, owner: str | None = None, clock: Clock | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.owner = owner or new_worker_id()
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._now_lock = threading.Lock()  # (checkpoint_now's connection, made on its first call)
        self._now_db: sqlite3.Connection | None = None
        self._now_calls = 0
        self._closed = False
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
        self._db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        self._wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(shard_lease)")}
            for name, decl in _ADDED.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE shard_lease ADD COLUMN {name} {decl}")

    def _wal(self) -> None:
        """Switch the file to WAL. SQLite fails that at once, without waiting out ``busy_timeout``, while another
        process holds the write lock of a file still in rollback mode, as two workers creating the file together
        do: retry until the busy timeout has passed, then report the store unavailable."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                error = _unavailable(self.path, exc)
                if not isinstance(error, LeaseUnavailable) or time.monotonic() >= deadline:
                    self._db.close()
                    raise error from exc
            time.sleep(0.02)

    def close(self) -> None:
        with self._now_lock:
            self._closed = True
            if self._now_db is not None:
                self._now_db.close()
                self._now_db = None
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[int]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error); yields the store's time after the lock."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _unavailable(self.path, exc) from exc
            try:
                yield self.clock.now_ms()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, params: Mapping[str, Any] | Sequence[Any]) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise _unavailable(self.path, exc) from exc

    # ----------------------------------------------------------------- reading
    def get(self, app: str, stream: str, shard_id: str) -> Lease | None:
        rows = self._one(
            f"SELECT {_COLS} FROM shard_lease WHERE app=? AND lease_key=?", (app, lease_key(stream, shard_id))
        )
        return Lease.from_row(app, rows[0], json.loads) if rows else None

    def leases(self, app: str) -> list[Lease]:
        rows = self._one(f"SELECT {_COLS} FROM shard_lease WHERE app=? ORDER BY lease_key", (app,))
        return [Lease.from_row(app, r, json.loads) for r in rows]

    def ensure(self, app: str, stream: str, shard_id: str, parents: tuple[str, ...], initial: Position) -> Lease:
        self._one(
            "INSERT OR IGNORE INTO shard_lease (app, lease_key, stream, shard_id, checkpoint, parent_shard_ids, "
            "created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (app, lease_key(stream, shard_id), stream, shard_id, str(initial), json.dumps(list(parents)), self._now()),
        )
        lease = self.get(app, stream, shard_id)
        assert lease is not None
        return lease

    def _now(self) -> int:
        return self.clock.now_ms()

    def take(self, app: str, stream: str, shard_id: str, *, ttl_s: float = 10.0) -> Lease:
        with self._tx() as now:
            self._db.execute(
                "UPDATE shard_lease SET owner_switches_since_checkpoint = owner_switches_since_checkpoint + "
                "(owner IS NOT :me), owner=:me, epoch=epoch+1, expires_at_ms=:exp, renewed_at_ms=:now, "
                "handoff_to=NULL, handoff_requested_at_ms=NULL WHERE app=:app AND lease_key=:key",
                {
                    "me": self.owner,
                    "exp": now + round(ttl_s * 1000),
                    "now": now,
                    "app": app,
                    "key": lease_key(stream, shard_id),
                },
            )
        lease = self.get(app, stream, shard_id)
        if lease is None:
            raise KeyError(f"no lease for {app} {stream} {shard_id}")
        return lease

    # ----------------------------------------------------------------- fenced writes
    def checkpoint(self, lease: Lease, position: Position) -> None:
        rows = self._one(_CHECKPOINT, self._checkpoint_params(lease, position))
        if not rows:
            raise LeaseLost.of(lease)

    def checkpoint_now(self, lease: Lease, position: Position) -> bool:
        """``checkpoint``, made only if that cannot wait, for a caller on an event loop. It runs on a connection of its
        own whose busy timeout is 0: when another connection (this store's own included) or process holds the file's
        write lock, it returns False at once, having written nothing (the caller then writes with ``checkpoint`` on
        a thread). Its commits never checkpoint the WAL (which fsyncs): every
        ``_NOW_WAL_EVERY``-th call returns False, so that a ``checkpoint`` commit does it when it is due. Raises
        ``LeaseLost`` as ``checkpoint`` does. A subclass that redefines ``checkpoint`` gets False: its writes all go
        through its own method."""
        if type(self).checkpoint is not SqliteLeaseStore.checkpoint or not self._now_lock.acquire(blocking=False):
            return False
        try:
            self._now_calls += 1
            if self._now_calls % _NOW_WAL_EVERY == 0 or self._closed:
                return False
            try:
                if self._now_db is None:
                    self._now_db = _connect_now(self.path)
                rows = self._now_db.execute(_CHECKPOINT, self._checkpoint_params(lease, position)).fetchall()
            except sqlite3.OperationalError:  # locked, busy, or an error (no file descriptor left, I/O) that
                return False  # checkpoint() will meet and report
        finally:
            self._now_lock.release()
        if not rows:
            raise LeaseLost.of(lease)
        return True

    def _checkpoint_params(self, lease: Lease, position: Position) -> dict[str, Any]:
        if position.is_shard_end:
            raise ValueError("SHARD_END is written by finish()")
        seq = position.sequence_number if position.is_sequence else ""
        return fenced(lease, self.owner, cp=str(position), sub=position.sub_sequence, seq=seq, now=self._now())

    def finish(self, lease: Lease, children: Sequence[ChildShard]) -> None:
        with self._tx() as now:
            done = self._db.execute(
                "UPDATE shard_lease SET checkpoint='SHARD_END', checkpoint_sub=0, checkpoint_at_ms=:now, "
                "finished_at_ms=:now, child_shard_ids=:children, owner_switches_since_checkpoint=0 "
                "WHERE app=:app AND lease_key=:key AND owner=:me AND epoch=:epoch RETURNING epoch",
                fenced(lease, self.owner, now=now, children=json.dumps([c.shard_id for c in children])),
            ).fetchall()
            if not done:
                raise LeaseLost.of(lease)
            for child in children:
                if len(child.parent_shard_ids) > 1:
                    have = self._db.execute(
                        "SELECT count(*) FROM shard_lease WHERE app=? AND stream=? AND shard_id IN "
                        f"({','.join('?' * len(child.parent_shard_ids))})",
                        (lease.app, lease.stream, *child.parent_shard_ids),
                    ).fetchone()[0]
                    if have < len(child.parent_shard_ids):
                        continue  # a merge child waits for both parents' leases (shard sync creates it)
                self._db.execute(
                    "INSERT OR IGNORE INTO shard_lease (app, lease_key, stream, shard_id, checkpoint, "
                    "parent_shard_ids, created_at_ms) VALUES (?, ?, ?, ?, 'TRIM_HORIZON', ?, ?)",
                    (
                        lease.app,
                        lease_key(lease.stream, child.shard_id),
                        lease.stream,
                        child.shard_id,
                        json.dumps(list(child.parent_shard_ids)),
                        now,
                    ),
                )

    def release(self, lease: Lease, *, ttl_s: float = 10.0) -> str | None:
        with self._tx() as now:
            rows = self._db.execute(
                "UPDATE shard_lease SET owner=handoff_to, epoch=epoch+1, "
                "expires_at_ms=CASE WHEN handoff_to IS NULL THEN NULL ELSE :now + :ttl END, "
                "renewed_at_ms=CASE WHEN handoff_to IS NULL THEN renewed_at_ms ELSE :now END, "
                "owner_switches_since_checkpoint=owner_switches_since_checkpoint + (handoff_to IS NOT NULL), "
                "handoff_to=NULL, handoff_requested_at_ms=NULL "
                "WHERE app=:app AND lease_key=:key AND owner=:me AND epoch=:epoch RETURNING owner",
                fenced(lease, self.owner, now=now, ttl=round(ttl_s * 1000)),
            ).fetchall()
        if not rows:
            raise LeaseLost.of(lease)
        return rows[0][0]  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- many workers
    def register(self, app: str, ttl_s: float, load: Mapping[str, float] | None = None) -> None:
        now = self._now()
        self._one(
            "INSERT INTO lease_worker (app, worker_id, started_at_ms, heartbeat_at_ms, expires_at_ms, load) "
            "VALUES (:app, :me, :now, :now, :exp, :load) ON CONFLICT (app, worker_id) DO UPDATE SET "
            "heartbeat_at_ms=:now, expires_at_ms=:exp, load=:load",
            {
                "app": app,
                "me": self.owner,
                "now": now,
                "exp": now + round(ttl_s * 1000),
                "load": json.dumps(dict(load or {})),
            },
        )

    def deregister(self, app: str) -> None:
        self._one("DELETE FROM lease_worker WHERE app=? AND worker_id=?", (app, self.owner))

    def take_available(self, app: str, n: int, ttl_s: float) -> list[Lease]:
        if n <= 0:
            return []
        with self._tx() as now:
            keys = self._db.execute(
                "UPDATE shard_lease AS t SET owner=:me, epoch=t.epoch+1, expires_at_ms=:exp, renewed_at_ms=:now, "
                "handoff_to=NULL, handoff_requested_at_ms=NULL, "
                "owner_switches_since_checkpoint=t.owner_switches_since_checkpoint + (t.owner IS NOT :me) "
                "WHERE t.app=:app AND t.lease_key IN (SELECT l.lease_key FROM shard_lease l WHERE l.app=:app "
                "AND l.finished_at_ms IS NULL AND (l.owner IS NULL OR l.expires_at_ms < :now) AND "
                f"{_PARENTS_DONE} ORDER BY l.expires_at_ms NULLS FIRST, random() LIMIT :n) RETURNING lease_key",
                {"me": self.owner, "exp": now + round(ttl_s * 1000), "now": now, "app": app, "n": n},
            ).fetchall()
            rows = [
                self._db.execute(f"SELECT {_COLS} FROM shard_lease WHERE app=? AND lease_key=?", (app, k)).fetchone()
                for (k,) in keys
            ]
        return [Lease.from_row(app, r, json.loads) for r in rows]

    def renew(self, app: str, held: Mapping[str, int], ttl_s: float) -> Renewal:
        if not held:
            return Renewal({}, [])
        now = self._now()
        rows = self._one(
            "UPDATE shard_lease AS t SET expires_at_ms=:exp, renewed_at_ms=:now, renew_count=t.renew_count+1 "
            "FROM (SELECT j.key AS k, j.value AS e FROM json_each(:held) j) AS h "
            "WHERE t.app=:app AND t.lease_key=h.k AND t.owner=:me AND t.epoch=h.e RETURNING lease_key, handoff_to",
            {
                "exp": now + round(ttl_s * 1000),
                "now": now,
                "held": json.dumps(dict(held)),
                "app": app,
                "me": self.owner,
            },
        )
        kept = {k: h for k, h in rows}
        return Renewal(kept, [k for k in held if k not in kept])

    def keepalive(self, app: str, held: Mapping[str, int], ttl_s: float) -> Renewal:
        # One file on one machine: the two statements cost no round trip.
        self.register(app, ttl_s)
        return self.renew(app, held, ttl_s)

    def snapshot(self, app: str) -> Snapshot:
        now = self._now()
        workers = self._one("SELECT count(*) FROM lease_worker WHERE app=? AND expires_at_ms > ?", (app, now))[0][0]
        takeable = self._one(
            f"SELECT count(*) FROM shard_lease l WHERE l.app=? AND l.finished_at_ms IS NULL AND {_PARENTS_DONE}",
            (app,),
        )[0][0]
        owners: dict[str, list[tuple[str, int]]] = {}
        for owner, key, epoch in self._one(
            "SELECT owner, lease_key, epoch FROM shard_lease WHERE app=? AND finished_at_ms IS NULL "
            "AND owner IS NOT NULL AND expires_at_ms > ? ORDER BY lease_key",
            (app, now),
        ):
            owners.setdefault(owner, []).append((key, int(epoch)))
        finished, stale, leader = self._one(
            "SELECT (SELECT count(*) FROM shard_lease WHERE app=:app AND finished_at_ms IS NOT NULL), "
            "(SELECT count(*) FROM lease_worker WHERE app=:app AND expires_at_ms < :stale), "
            "(SELECT min(worker_id) FROM lease_worker WHERE app=:app AND expires_at_ms > :now)",
            {"app": app, "now": now, "stale": now - _STALE_WORKER_MS},
        )[0]
        return Snapshot(int(workers), int(takeable), owners, int(finished), int(stale), leader)

    def request_handoff(self, app: str, key: str, victim: str, epoch: int) -> bool:
        rows = self._one(
            "UPDATE shard_lease SET handoff_to=:me, handoff_requested_at_ms=:now WHERE app=:app AND lease_key=:key "
            "AND owner=:victim AND epoch=:epoch AND handoff_to IS NULL AND finished_at_ms IS NULL RETURNING lease_key",
            {"me": self.owner, "now": self._now(), "app": app, "key": key, "victim": victim, "epoch": epoch},
        )
        return bool(rows)

    def steal(
        self, app: str, key: str, victim: str, epoch: int, ttl_s: float, *, force: bool, handoff_timeout_s: float
    ) -> Lease | None:
        with self._tx() as now:
            rows = self._db.execute(
                "UPDATE shard_lease SET owner=:me, epoch=epoch+1, expires_at_ms=:exp, renewed_at_ms=:now, "
                "handoff_to=NULL, handoff_requested_at_ms=NULL, "
                "owner_switches_since_checkpoint=owner_switches_since_checkpoint+1 "
                "WHERE app=:app AND lease_key=:key AND owner=:victim AND epoch=:epoch AND finished_at_ms IS NULL "
                "AND (:force OR handoff_requested_at_ms < :now - :timeout) RETURNING lease_key",
                {
                    "me": self.owner,
                    "exp": now + round(ttl_s * 1000),
                    "now": now,
                    "app": app,
                    "key": key,
                    "victim": victim,
                    "epoch": epoch,
                    "force": force,
                    "timeout": round(handoff_timeout_s * 1000),
                },
            ).fetchall()
            row = (
                self._db.execute(f"SELECT {_COLS} FROM shard_lease WHERE app=? AND lease_key=?", (app, key)).fetchone()
                if rows
                else None
            )
        return Lease.from_row(app, row, json.loads) if row is not None else None

    def cleanup(self, app: str, completed_delay_s: float) -> int:
        now = self._now()
        rows = self._one(
            "DELETE FROM shard_lease AS p WHERE p.app=:app AND p.checkpoint='SHARD_END' "
            "AND p.finished_at_ms <= :cutoff AND json_array_length(p.child_shard_ids) > 0 "
            "AND NOT EXISTS (SELECT 1 FROM json_each(p.child_shard_ids) c LEFT JOIN shard_lease ch "
            "ON ch.app=p.app AND ch.stream=p.stream AND ch.shard_id=c.value WHERE ch.lease_key IS NULL "
            "OR ch.checkpoint IN ('TRIM_HORIZON', 'LATEST') OR ch.checkpoint LIKE 'AT_TIMESTAMP:%') "
            "AND NOT EXISTS (SELECT 1 FROM shard_lease gp, json_each(p.parent_shard_ids) j WHERE gp.app=p.app "
            "AND gp.stream=p.stream AND gp.shard_id=j.value) RETURNING lease_key",
            {"app": app, "cutoff": now - round(completed_delay_s * 1000)},
        )
        self._one("DELETE FROM lease_worker WHERE app=? AND expires_at_ms < ?", (app, now - _STALE_WORKER_MS))
        return len(rows)


def _connect_now(path: Path) -> sqlite3.Connection:
    """checkpoint_now's connection: it never waits for a lock, and its commits never checkpoint the WAL."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    try:
        db.execute("PRAGMA busy_timeout=0")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def _unavailable(path: Path, exc: sqlite3.OperationalError) -> Exception:
    """A busy or locked file is a store that did not answer in time; any other error is a bug to report as is."""
    text = str(exc)
    if "locked" in text or "busy" in text or "I/O" in text:
        return LeaseUnavailable(f"lease file {path}: {text}")
    return exc
