"""Lease-store calls from async code, run off the event loop on one thread of their own.

Both stores are blocking (sqlite3, psycopg) and serialize their calls on one connection under a lock, so a slow
statement (PostgreSQL across a network, a SQLite file another process holds locked) would stall every shard, the
batching windows and the HTTP client if it ran on the event loop. A ``StoreThread`` runs the calls one at a time, in
the order they were made: a shard's checkpoints reach the store in the order the shard wrote them, even when a
caller stops waiting for one (a cancelled task), so a stale checkpoint never lands after a newer one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["StoreThread"]

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    """One thread for one owner's store calls (a mapping's shards, or its lease loop), started on the first call;
    ``close`` lets it end once the calls already made have run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
