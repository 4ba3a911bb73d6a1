"""The lease store interface: one row per shard (owner, fencing epoch, checkpoint), one row per live worker.

Every change is a conditional write on (owner, epoch): a worker that lost a lease can never write to it again
(``LeaseLost``). The epoch goes up by one on every change of owner (take, steal, handoff, release) and only then;
renewals move the expiry, never the epoch. Expiry is decided by the store's clock alone (PostgreSQL's ``now()``, or
the one host clock of a SQLite file); workers keep only monotonic deadlines to fence themselves early.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..position import Position

__all__ = [
    "ChildShard",
    "Lease",
    "LeaseLost",
    "LeaseStore",
    "LeaseUnavailable",
    "Renewal",
    "Snapshot",
    "fenced",
    "lease_key",
    "new_worker_id",
]


class LeaseLost(RuntimeError):
    """The lease changed owner or epoch: the shard must stop at once, without writing."""

    @classmethod
    def of(cls, lease: Lease) -> LeaseLost:
        return cls(f"lease {lease.key} of {lease.app} is no longer ours at epoch {lease.epoch}")


class LeaseUnavailable(RuntimeError):
    """The lease store could not be reached (or did not answer in time); nothing is known to have changed."""


def lease_key(stream: str, shard_id: str) -> str:
    return f"{stream}:{shard_id}"


def fenced(lease: Lease, owner: str, **params: Any) -> dict[str, Any]:
    """The parameters of a write fenced on ``owner`` and the lease's epoch: ``app``, ``key``, ``me`` and ``epoch``
    (what every table's fenced statements name them), and ``params``."""
    return {**params, "app": lease.app, "key": lease.key, "me": owner, "epoch": lease.epoch}


def new_worker_id() -> str:
    """host:pid:random, new for every process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Lease:
    """One shard's lease as the store holds it: its owner (None when free) and epoch (raised at every change of
    owner, so a former owner's writes are fenced off), the checkpoint, the shard's lineage, whether it was read to
    its end, and a graceful handoff in progress."""

    app: str
    stream: str
    shard_id: str
    owner: str | None
    epoch: int
    position: Position
    parent_shard_ids: tuple[str, ...]
    finished: bool
    child_shard_ids: tuple[str, ...] = ()
    owner_switches_since_checkpoint: int = 0
    handoff_to: str | None = None

    @classmethod
    def from_row(cls, app: str, row: Sequence[Any], shard_ids: Callable[[Any], Iterable[str]] = tuple) -> Lease:
        """A Lease from a row of the columns every table selects, in this order: stream, shard_id, owner, epoch,
        checkpoint, checkpoint_sub, parent_shard_ids, finished (true or false), child_shard_ids,
        owner_switches_since_checkpoint, handoff_to. ``shard_ids`` reads a stored list of shard ids (an array by
        default; ``json.loads`` where the list is JSON text)."""
        stream, shard, owner, epoch, cp, sub, parents, finished, children, switches, handoff = row
        return cls(
            app,
            stream,
            shard,
            owner,
            int(epoch),
            Position.parse(cp, int(sub or 0)),
            tuple(shard_ids(parents)),
            bool(finished),
            tuple(shard_ids(children)),
            int(switches),
            handoff,
        )

    @property
    def key(self) -> str:
        return lease_key(self.stream, self.shard_id)

    @property
    def checkpoint(self) -> str:
        """The stored text of the position."""
        return str(self.position)


@dataclass(frozen=True, slots=True)
class ChildShard:
    """A shard a finished shard ended into, and all of that shard's parents (two for a merge)."""

    shard_id: str
    parent_shard_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Renewal:
    """What one renew pass found: the leases still mine (with a handoff request, if any) and the lost ones."""

    kept: dict[str, str | None]  # lease key -> handoff_to
    lost: list[str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A lock-free read for balancing: live workers, leases that could be taken now, and who holds what."""

    workers: int
    takeable: int
    owners: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # owner -> [(lease key, epoch)]
    # What a cleanup pass could delete: leases at SHARD_END still in the table, and worker rows that expired over a
    # day ago. With neither, the pass is skipped (it would send a statement that deletes nothing).
    finished: int = 0
    stale_workers: int = 0
    leader: str | None = None  # the live worker with the lowest id: the one that runs cleanup


class LeaseStore(Protocol):
    """What the runtime needs from a lease table. ``owner`` is this process's worker id."""

    owner: str
    backend: str  # "sqlite" or "postgresql"

    def close(self) -> None: ...

    # ----------------------------------------------------------------- reading
    def get(self, app: str, stream: str, shard_id: str) -> Lease | None: ...

    def leases(self, app: str) -> list[Lease]: ...

    # ----------------------------------------------------------------- shard sync
    def ensure(self, app: str, stream: str, shard_id: str, parents: tuple[str, ...], initial: Position) -> Lease:
        """The lease of a shard, created at ``initial`` the first time the shard is seen (idempotent)."""
        ...

    # ----------------------------------------------------------------- one worker holding everything
    def take(self, app: str, stream: str, shard_id: str, *, ttl_s: float = 10.0) -> Lease:
        """Become the owner unconditionally (one process holding every lease): the epoch goes up."""
        ...

    # ----------------------------------------------------------------- fenced writes
    def checkpoint(self, lease: Lease, position: Position) -> None:
        """Record that everything up to ``position`` is settled; never moves backwards. Raises LeaseLost."""
        ...

    def finish(self, lease: Lease, children: Sequence[ChildShard]) -> None:
        """SHARD_END, the children the shard ended into, and their leases (a merge child only when both parents
        have leases). Raises LeaseLost."""
        ...

    def release(self, lease: Lease, *, ttl_s: float = 10.0) -> str | None:
        """Give the lease up: to the worker that asked for a handoff, else to nobody (takeable at once). Returns
        the new owner. Raises LeaseLost."""
        ...

    # ----------------------------------------------------------------- many workers
    def register(self, app: str, ttl_s: float, load: Mapping[str, float] | None = None) -> None:
        """Insert or heartbeat this worker's row; it counts as live for ``ttl_s``."""
        ...

    def deregister(self, app: str) -> None: ...

    def take_available(self, app: str, n: int, ttl_s: float) -> list[Lease]:
        """Take up to ``n`` leases that are unowned or expired and whose parents are all at SHARD_END."""
        ...

    def renew(self, app: str, held: Mapping[str, int], ttl_s: float) -> Renewal:
        """Extend every held lease (key -> epoch) in one statement; the ones not renewed are lost."""
        ...

    def keepalive(self, app: str, held: Mapping[str, int], ttl_s: float) -> Renewal:
        """``register`` and ``renew`` in one statement: the heartbeat of every renew interval."""
        ...

    def snapshot(self, app: str) -> Snapshot:
        """One read: the live workers, the takeable leases and who holds what."""
        ...

    def request_handoff(self, app: str, key: str, victim: str, epoch: int) -> bool:
        """Ask ``victim`` to hand ``key`` over to this worker after its in-flight batch."""
        ...

    def steal(
        self, app: str, key: str, victim: str, epoch: int, ttl_s: float, *, force: bool, handoff_timeout_s: float
    ) -> Lease | None:
        """Take ``key`` from a live ``victim``: when ``force``, or when a handoff asked for has timed out."""
        ...

    def cleanup(self, app: str, completed_delay_s: float) -> int:
        """Delete finished leases whose children have all started and whose own parents are gone."""
        ...
