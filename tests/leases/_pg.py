"""A throwaway PostgreSQL database per test module on the local server (127.0.0.1:5432, user postgres, trust auth).

``PG_HOST``/``PG_PORT``/``PG_USER`` override where it is. The database gets a random name and is dropped (with
every session still on it) when the module's tests are done.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

HOST = os.environ.get("PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("PG_PORT", "5432"))
USER = os.environ.get("PG_USER", "postgres")


def admin_dsn(dbname: str = "postgres") -> str:
    return f"postgresql://{USER}@{HOST}:{PORT}/{dbname}"


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new empty database; yields its URL."""
    name = f"lease_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_dsn(name)
    finally:
        with psycopg.connect(admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


AUDIT = """
CREATE TABLE IF NOT EXISTS lease_audit (
  id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), op text NOT NULL,
  app text, lease_key text, old_owner text, new_owner text, old_epoch bigint, new_epoch bigint,
  old_checkpoint text, new_checkpoint text, old_handoff_to text);
CREATE OR REPLACE FUNCTION lease_audit_fn() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.owner IS DISTINCT FROM OLD.owner OR NEW.epoch <> OLD.epoch OR NEW.checkpoint <> OLD.checkpoint
       OR NEW.checkpoint_sub <> OLD.checkpoint_sub THEN
      INSERT INTO lease_audit (op, app, lease_key, old_owner, new_owner, old_epoch, new_epoch, old_checkpoint,
                               new_checkpoint, old_handoff_to)
      VALUES ('U', NEW.app, NEW.lease_key, OLD.owner, NEW.owner, OLD.epoch, NEW.epoch, OLD.checkpoint, NEW.checkpoint,
              OLD.handoff_to);
    END IF;
    RETURN NEW;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO lease_audit (op, app, lease_key, old_owner, old_epoch, old_checkpoint)
    VALUES ('D', OLD.app, OLD.lease_key, OLD.owner, OLD.epoch, OLD.checkpoint);
    RETURN OLD;
  END IF;
  INSERT INTO lease_audit (op, app, lease_key, new_owner, new_epoch, new_checkpoint)
  VALUES ('I', NEW.app, NEW.lease_key, NEW.owner, NEW.epoch, NEW.checkpoint);
  RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS lease_audit_trg ON shard_lease;
CREATE TRIGGER lease_audit_trg AFTER INSERT OR UPDATE OR DELETE ON shard_lease
  FOR EACH ROW EXECUTE FUNCTION lease_audit_fn();
"""


def install_audit(dsn: str) -> None:
    """A test-only trigger writing every change of owner, epoch or checkpoint into ``lease_audit``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(AUDIT)


def audit_violations(dsn: str) -> list[str]:
    """The fence rules the audit must show: epoch +1 on every owner change (and only then), never two transitions
    out of one (lease, epoch), no checkpoint regression, a checkpoint write keeps the epoch."""
    out: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT lease_key, old_owner, new_owner, old_epoch, new_epoch, old_checkpoint, new_checkpoint "
            "FROM lease_audit WHERE op = 'U' ORDER BY id"
        ).fetchall()
    seen: set[tuple[str, int]] = set()
    for key, oo, no, oe, ne, oc, nc in rows:
        if oo != no and ne != oe + 1:
            out.append(f"{key}: owner {oo}->{no} with epoch {oe}->{ne}")
        if ne != oe:
            if ne != oe + 1:
                out.append(f"{key}: epoch {oe}->{ne}")
            if (key, oe) in seen:
                out.append(f"{key}: two transitions out of epoch {oe}")
            seen.add((key, oe))
        if oc != nc and oc.isdigit() and (not nc.isdigit() or int(nc) < int(oc)) and nc != "SHARD_END":
            out.append(f"{key}: checkpoint {oc} -> {nc}")
    return out
