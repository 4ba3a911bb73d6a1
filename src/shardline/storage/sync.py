"""Group commit: concurrent writers share fsyncs.

Under ``fsync=always`` a writer appends its frame, then awaits ``commit``. While one round of fsyncs is running,
later commits queue up; the next round covers all of them with one fsync per file (with the engine's journal, one
fsync in all). Readers only see offsets a round has made durable (``ShardLog.mark_synced``), so no consumer ever
sees a record that a crash could take back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

__all__ = ["Durable", "GroupCommitter"]

log = logging.getLogger("shardline.storage")

T = TypeVar("T")


class Durable(Protocol):
    """A file the committer can make durable: a shard log or the journal."""

    @property
    def next_offset(self) -> int: ...

    def sync(self) -> None: ...

    def mark_synced(self, offset: int, /) -> None: ...


def _sync_all(logs: Sequence[Durable]) -> None:
    for lg in logs:
        lg.sync()


class GroupCommitter:
    def __init__(self, *, threads: int = 4) -> None:
        self._pending: dict[Durable, int] = {}
        self._next: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shardline-fsync")
        self.rounds = 0
        self.fsyncs = 0

    async def commit(self, logs: Iterable[Durable]) -> None:
        """Return once every byte appended to ``logs`` before this call is durable."""
        logs = list(logs)
        if not logs:
            return
        loop = asyncio.get_running_loop()
        for lg in logs:
            self._pending[lg] = lg.next_offset
        if self._next is None:
            self._next = loop.create_future()
        fut = self._next
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run(), name="shardline-group-commit")
        # shield: a cancelled writer must not cancel the round other writers wait on.
        await asyncio.shield(fut)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            fut, self._next = self._next, None
            assert fut is not None
            try:
                await self.fsync(list(batch))
            except BaseException as exc:  # an fsync error fails every writer of the round
                log.error("fsync failed for %d logs: %s", len(batch), exc)
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                    fut.exception()  # the round's writers read it; do not warn about it twice
                if not isinstance(exc, Exception):
                    raise
                continue
            self.rounds += 1
            for lg, offset in batch.items():
                lg.mark_synced(offset)
            if not fut.done():
                fut.set_result(None)

    async def fsync(self, logs: Sequence[Durable]) -> None:
        """fsync ``logs`` on the committer's threads. A few jobs, not one per file: fsyncs of different files run
        in parallel, and a round touching many shards does not pay a future per file."""
        if not logs:
            return
        loop = asyncio.get_running_loop()
        chunks = [logs[i :: self._threads] for i in range(min(self._threads, len(logs)))]
        await asyncio.gather(*(loop.run_in_executor(self._pool, _sync_all, chunk) for chunk in chunks))
        self.fsyncs += len(logs)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking file work (fsyncs) on the committer's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner
        self._pool.shutdown(wait=True)
