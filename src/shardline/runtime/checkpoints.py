"""Durable checkpoints in a lease table: one row per (mapping, stream, shard).

The single-process runtime (``shardline up``) holds every lease of its SQLite file; the epoch still fences writes,
so a late result from a superseded shard task can never move a checkpoint. The lease table itself, its PostgreSQL
twin and the many-worker loop live in ``runtime/leases``; this module names the single-process store.
"""

from __future__ import annotations

from .leases import Lease, LeaseLost
from .leases.sqlite import SqliteLeaseStore as LeaseStore
from .position import SHARD_END

__all__ = ["SHARD_END", "Lease", "LeaseLost", "LeaseStore"]
