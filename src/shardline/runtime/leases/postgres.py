"""The lease table in PostgreSQL (psycopg 3): many worker processes on many machines.

Every statement runs in autocommit under READ COMMITTED; only SHARD_END (a fenced update plus the children's
inserts) is a transaction. Expiry compares the server's ``now()`` with stored server timestamps, so clock skew
between machines does not matter. A take locks its candidates ``FOR UPDATE SKIP LOCKED`` and re-checks them on the
locked row, so two takers never both move one lease from epoch e to e + 1. psycopg is imported on first use, so the
SQLite default never needs it.

The connection is bounded: ``connect_timeout``, TCP keepalives, ``tcp_user_timeout`` and ``statement_timeout`` all
derive from the renew interval, so a cut network turns into ``LeaseUnavailable`` before a lease can expire. A broken
connection is reopened by the next call.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..position import Position
from .base import ChildShard, Lease, LeaseLost, LeaseUnavailable, Renewal, Snapshot, fenced, lease_key, new_worker_id

__all__ = ["PostgresLeaseStore"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS lease_worker (
  app text NOT NULL, worker_id text NOT NULL, host text, pid int,
  started_at timestamptz NOT NULL DEFAULT now(), heartbeat_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL, load jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (app, worker_id));
CREATE TABLE IF NOT EXISTS shard_lease (
  app text NOT NULL, lease_key text NOT NULL, stream text NOT NULL, shard_id text NOT NULL,
  owner text, epoch bigint NOT NULL DEFAULT 0, expires_at timestamptz, renewed_at timestamptz,
  renew_count bigint NOT NULL DEFAULT 0, handoff_to text, handoff_requested_at timestamptz,
  checkpoint text NOT NULL DEFAULT 'TRIM_HORIZON', checkpoint_sub bigint NOT NULL DEFAULT 0,
  checkpoint_at timestamptz, owner_switches_since_checkpoint bigint NOT NULL DEFAULT 0,
  parent_shard_ids text[] NOT NULL DEFAULT '{}', child_shard_ids text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz,
  PRIMARY KEY (app, lease_key), CHECK (owner IS NOT NULL OR handoff_to IS NULL));
CREATE INDEX IF NOT EXISTS shard_lease_owner ON shard_lease (app, owner) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS shard_lease_avail ON shard_lease (app, expires_at) WHERE finished_at IS NULL;
"""
_COLS = (
    "stream, shard_id, owner, epoch, checkpoint, checkpoint_sub, parent_shard_ids, finished_at IS NOT NULL, "
    "child_shard_ids, owner_switches_since_checkpoint, handoff_to"
)
_PARENTS_DONE = (
    "NOT EXISTS (SELECT 1 FROM shard_lease p WHERE p.app = l.app AND p.stream = l.stream "
    "AND p.shard_id = ANY (l.parent_shard_ids) AND p.checkpoint <> 'SHARD_END')"
)
_TTL = "make_interval(secs => %(ttl)s)"
_STALE_WORKER = "interval '1 day'"  # a worker row that expired this long ago is deleted by cleanup


class PostgresLeaseStore:
    """A PostgreSQL lease table reached through ``dsn`` (a ``postgresql://`` URL or a libpq string)."""

    backend = "postgresql"

    def __init__(self, dsn: str, *, owner: str | None = None, timeout_s: float = 3.3) -> None:
        self.dsn = dsn
        self.owner = owner or new_worker_id()
        self.timeout_ms = max(200, round(timeout_s * 1000))
        self._lock = threading.Lock()
        self._conn: Any = None
        self.statements = 0
        self._run(self._create_schema, transaction=True)

    @staticmethod
    def _create_schema(cur: Any) -> None:
        # Workers starting together would race on CREATE TABLE IF NOT EXISTS: one transaction-scoped lock orders them.
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('shardline-lease-schema', 0))")
        cur.execute(SCHEMA)

    # ----------------------------------------------------------------- connection
    def _connect(self) -> Any:
        import psycopg  # noqa: PLC0415  # the PostgreSQL backend only: the default never needs psycopg

        return psycopg.connect(
            self.dsn,
            autocommit=True,
            application_name=f"shardline-lease:{self.owner}"[:63],
            connect_timeout=max(1, round(self.timeout_ms / 1000)),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
            tcp_user_timeout=self.timeout_ms,
            options=f"-c statement_timeout={self.timeout_ms} -c lock_timeout=1000",
        )

    def _run(self, body: Callable[[Any], T], *, transaction: bool = False) -> T:
        """Run ``body`` on the connection. A connection the server dropped (a restart, a terminated session) is
        reopened and the statement tried once more: every statement here is a compare-and-set, so running one twice
        changes nothing the first run did not (a repeated take or steal finds the lease already taken)."""
        try:
            return self._attempt(body, transaction)
        except LeaseUnavailable:
            return self._attempt(body, transaction)

    def _attempt(self, body: Callable[[Any], T], transaction: bool) -> T:
        import psycopg  # noqa: PLC0415

        with self._lock:
            self.statements += 1
            watchdog: threading.Timer | None = None
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                # A peer that accepts bytes and never answers (a half-open path, a stuck proxy) defeats TCP's own
                # timeouts: past twice the statement timeout the socket is shut down, which ends the wait at once.
                watchdog = threading.Timer(2 * self.timeout_ms / 1000, _shut_down, (self._conn.fileno(),))
                watchdog.daemon = True
                watchdog.start()
                if transaction:
                    with self._conn.transaction(), self._conn.cursor() as cur:
                        return body(cur)
                with self._conn.cursor() as cur:
                    return body(cur)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                raise LeaseUnavailable(f"lease store unreachable: {type(exc).__name__}: {str(exc).strip()}") from exc
            finally:
                if watchdog is not None:
                    watchdog.cancel()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _rows(self, sql: str, params: Mapping[str, Any], *, transaction: bool = False) -> list[Any]:
        def body(cur: Any) -> list[Any]:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []

        return self._run(body, transaction=transaction)

    # ----------------------------------------------------------------- reading
    def get(self, app: str, stream: str, shard_id: str) -> Lease | None:
        rows = self._rows(
            f"SELECT {_COLS} FROM shard_lease WHERE app=%(app)s AND lease_key=%(key)s",
            {"app": app, "key": lease_key(stream, shard_id)},
        )
        return Lease.from_row(app, rows[0]) if rows else None

    def leases(self, app: str) -> list[Lease]:
        rows = self._rows(f"SELECT {_COLS} FROM shard_lease WHERE app=%(app)s ORDER BY lease_key", {"app": app})
        return [Lease.from_row(app, r) for r in rows]

    def ensure(self, app: str, stream: str, shard_id: str, parents: tuple[str, ...], initial: Position) -> Lease:
        rows = self._rows(
            "WITH ins AS (INSERT INTO shard_lease (app, lease_key, stream, shard_id, parent_shard_ids, checkpoint) "
            "VALUES (%(app)s, %(key)s, %(stream)s, %(shard)s, %(parents)s, %(cp)s) "
            f"ON CONFLICT (app, lease_key) DO NOTHING RETURNING {_COLS}) "
            f"SELECT * FROM ins UNION ALL SELECT {_COLS} FROM shard_lease WHERE app=%(app)s AND lease_key=%(key)s",
            {
                "app": app,
                "key": lease_key(stream, shard_id),
                "stream": stream,
                "shard": shard_id,
                "parents": list(parents),
                "cp": str(initial),
            },
        )
        if rows:
            return Lease.from_row(app, rows[0])
        # Inserted by another worker after this statement's snapshot: read it now.
        lease = self.get(app, stream, shard_id)
        assert lease is not None
        return lease

    def take(self, app: str, stream: str, shard_id: str, *, ttl_s: float = 10.0) -> Lease:
        rows = self._rows(
            "UPDATE shard_lease SET owner_switches_since_checkpoint = owner_switches_since_checkpoint + "
            "CASE WHEN owner IS DISTINCT FROM %(me)s THEN 1 ELSE 0 END, owner=%(me)s, epoch=epoch+1, "
            f"expires_at=now() + {_TTL}, renewed_at=now(), handoff_to=NULL, handoff_requested_at=NULL "
            f"WHERE app=%(app)s AND lease_key=%(key)s RETURNING {_COLS}",
            {"me": self.owner, "ttl": ttl_s, "app": app, "key": lease_key(stream, shard_id)},
        )
        if not rows:
            raise KeyError(f"no lease for {app} {stream} {shard_id}")
        return Lease.from_row(app, rows[0])

    # ----------------------------------------------------------------- fenced writes
    def checkpoint(self, lease: Lease, position: Position) -> None:
        if position.is_shard_end:
            raise ValueError("SHARD_END is written by finish()")
        rows = self._rows(
            "UPDATE shard_lease SET checkpoint=%(cp)s, checkpoint_sub=%(sub)s, checkpoint_at=now(), "
            "owner_switches_since_checkpoint=0 "
            "WHERE app=%(app)s AND lease_key=%(key)s AND owner=%(me)s AND epoch=%(epoch)s AND "
            "CASE WHEN %(seq)s::text IS NULL THEN true WHEN checkpoint = 'SHARD_END' THEN false "
            "WHEN checkpoint ~ '^[0-9]+$' THEN (%(seq)s::numeric, %(sub)s::bigint) >= (checkpoint::numeric, "
            "checkpoint_sub) ELSE true END RETURNING epoch",
            fenced(lease, self.owner, cp=str(position), sub=position.sub_sequence, seq=position.sequence_number),
        )
        if not rows:
            raise LeaseLost.of(lease)

    def finish(self, lease: Lease, children: Sequence[ChildShard]) -> None:
        def body(cur: Any) -> bool:
            cur.execute(
                "UPDATE shard_lease SET checkpoint='SHARD_END', checkpoint_sub=0, checkpoint_at=now(), "
                "finished_at=now(), child_shard_ids=%(children)s, owner_switches_since_checkpoint=0 "
                "WHERE app=%(app)s AND lease_key=%(key)s AND owner=%(me)s AND epoch=%(epoch)s RETURNING lease_key",
                fenced(lease, self.owner, children=[c.shard_id for c in children]),
            )
            if not cur.fetchall():
                return False
            for child in children:
                cur.execute(
                    "INSERT INTO shard_lease (app, lease_key, stream, shard_id, parent_shard_ids, checkpoint) "
                    "SELECT %(app)s, %(key)s, %(stream)s, %(shard)s, %(parents)s, 'TRIM_HORIZON' "
                    "WHERE (SELECT count(*) FROM shard_lease WHERE app=%(app)s AND stream=%(stream)s "
                    "AND shard_id = ANY (%(parents)s)) = cardinality(%(parents)s::text[]) "
                    "ON CONFLICT (app, lease_key) DO NOTHING",
                    {
                        "app": lease.app,
                        "key": lease_key(lease.stream, child.shard_id),
                        "stream": lease.stream,
                        "shard": child.shard_id,
                        "parents": list(child.parent_shard_ids),
                    },
                )
            return True

        if not self._run(body, transaction=True):
            raise LeaseLost.of(lease)

    def release(self, lease: Lease, *, ttl_s: float = 10.0) -> str | None:
        rows = self._rows(
            "UPDATE shard_lease t SET owner=t.handoff_to, epoch=t.epoch+1, "
            f"expires_at=CASE WHEN t.handoff_to IS NULL THEN NULL ELSE now() + {_TTL} END, "
            "renewed_at=CASE WHEN t.handoff_to IS NULL THEN t.renewed_at ELSE now() END, "
            "owner_switches_since_checkpoint=t.owner_switches_since_checkpoint + "
            "CASE WHEN t.handoff_to IS NULL THEN 0 ELSE 1 END, handoff_to=NULL, handoff_requested_at=NULL "
            "WHERE t.app=%(app)s AND t.lease_key=%(key)s AND t.owner=%(me)s AND t.epoch=%(epoch)s RETURNING t.owner",
            fenced(lease, self.owner, ttl=ttl_s),
        )
        if not rows:
            raise LeaseLost.of(lease)
        return rows[0][0]  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- many workers
    def register(self, app: str, ttl_s: float, load: Mapping[str, float] | None = None) -> None:
        self._rows(
            "INSERT INTO lease_worker (app, worker_id, host, pid, expires_at, load) "
            f"VALUES (%(app)s, %(me)s, %(host)s, %(pid)s, now() + {_TTL}, %(load)s) "
            "ON CONFLICT (app, worker_id) DO UPDATE SET heartbeat_at=now(), expires_at=EXCLUDED.expires_at, "
            "load=EXCLUDED.load",
            {
                "app": app,
                "me": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "ttl": ttl_s,
                "load": json.dumps(dict(load or {})),
            },
        )

    def deregister(self, app: str) -> None:
        self._rows("DELETE FROM lease_worker WHERE app=%(app)s AND worker_id=%(me)s", {"app": app, "me": self.owner})

    def take_available(self, app: str, n: int, ttl_s: float) -> list[Lease]:
        if n <= 0:
            return []
        rows = self._rows(
            "WITH cand AS (SELECT l.app, l.lease_key FROM shard_lease l WHERE l.app=%(app)s AND l.finished_at IS NULL "
            f"AND (l.owner IS NULL OR l.expires_at < now()) AND {_PARENTS_DONE} "
            "ORDER BY l.expires_at NULLS FIRST, random() LIMIT %(n)s FOR UPDATE OF l SKIP LOCKED) "
            f"UPDATE shard_lease t SET owner=%(me)s, epoch=t.epoch+1, expires_at=now() + {_TTL}, renewed_at=now(), "
            "handoff_to=NULL, handoff_requested_at=NULL, owner_switches_since_checkpoint="
            "t.owner_switches_since_checkpoint + CASE WHEN t.owner IS DISTINCT FROM %(me)s THEN 1 ELSE 0 END "
            "FROM cand WHERE t.app=cand.app AND t.lease_key=cand.lease_key "
            f"AND (t.owner IS NULL OR t.expires_at < now()) RETURNING {', '.join('t.' + c for c in _COLS.split(', '))}",
            {"app": app, "n": n, "me": self.owner, "ttl": ttl_s},
        )
        return [Lease.from_row(app, r) for r in rows]

    def renew(self, app: str, held: Mapping[str, int], ttl_s: float) -> Renewal:
        if not held:
            return Renewal({}, [])
        rows = self._rows(
            f"UPDATE shard_lease t SET expires_at=now() + {_TTL}, renewed_at=now(), renew_count=t.renew_count+1 "
            "FROM unnest(%(keys)s::text[], %(epochs)s::bigint[]) AS h(lease_key, epoch) WHERE t.app=%(app)s "
            "AND t.lease_key=h.lease_key AND t.owner=%(me)s AND t.epoch=h.epoch RETURNING t.lease_key, t.handoff_to",
            {"ttl": ttl_s, "keys": list(held), "epochs": list(held.values()), "app": app, "me": self.owner},
        )
        kept = {k: h for k, h in rows}
        return Renewal(kept, [k for k in held if k not in kept])

    def keepalive(self, app: str, held: Mapping[str, int], ttl_s: float) -> Renewal:
        # A data-modifying CTE runs whether or not the UPDATE reads it: heartbeat and renewal are one statement.
        rows = self._rows(
            "WITH hb AS (INSERT INTO lease_worker (app, worker_id, host, pid, expires_at, load) "
            f"VALUES (%(app)s, %(me)s, %(host)s, %(pid)s, now() + {_TTL}, '{{}}') "
            "ON CONFLICT (app, worker_id) DO UPDATE SET heartbeat_at=now(), expires_at=EXCLUDED.expires_at "
            "RETURNING 1) "
            f"UPDATE shard_lease t SET expires_at=now() + {_TTL}, renewed_at=now(), renew_count=t.renew_count+1 "
            "FROM unnest(%(keys)s::text[], %(epochs)s::bigint[]) AS h(lease_key, epoch) WHERE t.app=%(app)s "
            "AND t.lease_key=h.lease_key AND t.owner=%(me)s AND t.epoch=h.epoch RETURNING t.lease_key, t.handoff_to",
            {
                "ttl": ttl_s,
                "keys": list(held),
                "epochs": list(held.values()),
                "app": app,
                "me": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
        )
        kept = {k: h for k, h in rows}
        return Renewal(kept, [k for k in held if k not in kept])

    def snapshot(self, app: str) -> Snapshot:
        rows = self._rows(
            "SELECT (SELECT count(*) FROM lease_worker WHERE app=%(app)s AND expires_at > now()), "
            f"(SELECT count(*) FROM shard_lease l WHERE l.app=%(app)s AND l.finished_at IS NULL AND {_PARENTS_DONE}), "
            "(SELECT coalesce(json_agg(json_build_array(owner, lease_key, epoch) ORDER BY lease_key), '[]'::json) "
            "FROM shard_lease WHERE app=%(app)s AND finished_at IS NULL AND owner IS NOT NULL AND expires_at > now()), "
            "(SELECT count(*) FROM shard_lease WHERE app=%(app)s AND finished_at IS NOT NULL), "
            f"(SELECT count(*) FROM lease_worker WHERE app=%(app)s AND expires_at < now() - {_STALE_WORKER}), "
            "(SELECT min(worker_id) FROM lease_worker WHERE app=%(app)s AND expires_at > now())",
            {"app": app},
        )
        workers, takeable, held, finished, stale, leader = rows[0]
        owners: dict[str, list[tuple[str, int]]] = {}
        for owner, key, epoch in held:
            owners.setdefault(owner, []).append((key, int(epoch)))
        return Snapshot(int(workers), int(takeable), owners, int(finished), int(stale), leader)

    def request_handoff(self, app: str, key: str, victim: str, epoch: int) -> bool:
        rows = self._rows(
            "UPDATE shard_lease SET handoff_to=%(me)s, handoff_requested_at=now() WHERE app=%(app)s "
            "AND lease_key=%(key)s AND owner=%(victim)s AND epoch=%(epoch)s AND handoff_to IS NULL "
            "AND finished_at IS NULL RETURNING lease_key",
            {"me": self.owner, "app": app, "key": key, "victim": victim, "epoch": epoch},
        )
        return bool(rows)

    def steal(
        self, app: str, key: str, victim: str, epoch: int, ttl_s: float, *, force: bool, handoff_timeout_s: float
    ) -> Lease | None:
        rows = self._rows(
            f"UPDATE shard_lease t SET owner=%(me)s, epoch=t.epoch+1, expires_at=now() + {_TTL}, renewed_at=now(), "
            "handoff_to=NULL, handoff_requested_at=NULL, "
            "owner_switches_since_checkpoint=t.owner_switches_since_checkpoint+1 WHERE t.app=%(app)s "
            "AND t.lease_key=%(key)s AND t.owner=%(victim)s AND t.epoch=%(epoch)s AND t.finished_at IS NULL "
            "AND (%(force)s OR t.handoff_requested_at < now() - make_interval(secs => %(timeout)s)) "
            f"RETURNING {', '.join('t.' + c for c in _COLS.split(', '))}",
            {
                "me": self.owner,
                "ttl": ttl_s,
                "app": app,
                "key": key,
                "victim": victim,
                "epoch": epoch,
                "force": force,
                "timeout": handoff_timeout_s,
            },
        )
        return Lease.from_row(app, rows[0]) if rows else None

    def cleanup(self, app: str, completed_delay_s: float) -> int:
        rows = self._rows(
            "DELETE FROM shard_lease p WHERE p.app=%(app)s AND p.checkpoint='SHARD_END' "
            "AND p.finished_at <= now() - make_interval(secs => %(delay)s) AND cardinality(p.child_shard_ids) > 0 "
            "AND NOT EXISTS (SELECT 1 FROM unnest(p.child_shard_ids) c(id) LEFT JOIN shard_lease ch "
            "ON ch.app=p.app AND ch.stream=p.stream AND ch.shard_id=c.id WHERE ch.lease_key IS NULL "
            "OR ch.checkpoint IN ('TRIM_HORIZON', 'LATEST') OR ch.checkpoint LIKE 'AT\\_TIMESTAMP:%%') "
            "AND NOT EXISTS (SELECT 1 FROM shard_lease gp WHERE gp.app=p.app AND gp.stream=p.stream "
            "AND gp.shard_id = ANY (p.parent_shard_ids)) RETURNING p.lease_key",
            {"app": app, "delay": completed_delay_s},
        )
        self._rows(f"DELETE FROM lease_worker WHERE app=%(app)s AND expires_at < now() - {_STALE_WORKER}", {"app": app})
        return len(rows)


def _shut_down(fd: int) -> None:
    """Shut the connection's socket down (both directions) without closing the descriptor psycopg owns."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
