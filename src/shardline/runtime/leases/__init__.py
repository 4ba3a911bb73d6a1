"""Shard leases: the interface (base.py), its SQLite and PostgreSQL tables, and the worker loop (coordinator.py)."""

from __future__ import annotations

from pathlib import Path

from ...clock import Clock
from . import base
from .base import *  # noqa: F403  # the interface's names (base.__all__) are the package's
from .base import LeaseStore
from .sqlite import SqliteLeaseStore

__all__ = ["SqliteLeaseStore", "open_lease_store"]
__all__ += base.__all__


def open_lease_store(
    url: str, *, owner: str | None = None, clock: Clock | None = None, timeout_s: float = 3.3
) -> LeaseStore:
    """``postgresql://...`` (or ``postgres://``) or ``sqlite:PATH``. ``timeout_s`` bounds a PostgreSQL statement
    (the renew interval: a lease store that does not answer within it counts as unreachable)."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresLeaseStore  # noqa: PLC0415  # psycopg only when PostgreSQL is asked for

        return PostgresLeaseStore(url, owner=owner, timeout_s=timeout_s)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError("sqlite: needs a file path (sqlite:PATH)")
        return SqliteLeaseStore(Path(path), owner=owner, clock=clock)
    raise ValueError(f"a lease store is postgresql://... or sqlite:PATH, not {url.split(':', 1)[0]!r}")
