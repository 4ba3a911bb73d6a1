"""What a shard processor needs from its mapping and its function (see supervisor.Mapping, functions.FunctionPool)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from ..clock import Clock
from .destinations import Destination
from .functions import InvocationResult
from .leases import ChildShard, Lease, LeaseStore
from .leases.thread import StoreThread
from .mapping import MappingConfig, RuntimeTuning
from .position import Position
from .source import ShardSource

__all__ = ["EpochInvoker", "Invoker", "MappingContext", "RecordMatcher"]


class Invoker(Protocol):
    async def invoke(self, event: bytes) -> InvocationResult: ...


class EpochInvoker(Protocol):
    """An invoker that hands the lease epoch to the handler (``context.lease_epoch``): FunctionPool does."""

    async def invoke(self, event: bytes, *, lease_epoch: int | None = None) -> InvocationResult: ...


class RecordMatcher(Protocol):
    @property
    def active(self) -> bool: ...

    def matches(self, partition_key: str, sequence_number: str, arrival_ms: int, data: bytes) -> bool: ...


class MappingContext(Protocol):
    """What a shard processor needs from its mapping (see supervisor.Mapping)."""

    @property
    def config(self) -> MappingConfig: ...

    tuning: RuntimeTuning
    clock: Clock
    source: ShardSource
    store: LeaseStore
    store_thread: StoreThread  # where every call to ``store`` runs, but checkpoints written at once: never on the loop
    function: Invoker
    function_arn: str
    role_arn: str
    region: str
    destination: Destination | None
    matcher: RecordMatcher | None
    recent_failures: deque[dict[str, Any]]  # the latest on-failure records, for monitoring

    def running(self) -> bool: ...

    def store_checkpoint(self, lease: Lease, position: Position) -> None:
        """(On ``store_thread``.) ``store.checkpoint``, kept in the mapping's lease view too (for monitoring)."""
        ...

    def store_checkpoint_now(self, lease: Lease, position: Position) -> bool:
        """(On the event loop.) The checkpoint written at once if the store can do that without waiting, kept in the
        lease view; False when it cannot (nothing was written)."""
        ...

    def store_finish(self, lease: Lease, children: Sequence[ChildShard]) -> None:
        """(On ``store_thread``.) ``store.finish``, kept in the mapping's lease view too (for monitoring)."""
        ...

    async def child_shards(self, shard_ids: tuple[str, ...]) -> list[ChildShard]:
        """The shards a finished shard ended into, each with all of its parents."""
        ...
