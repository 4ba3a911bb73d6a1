"""Waiting for background tasks to end (shardline._tasks): a task's own cancellation is not an error, its failure
is raised, and a cancellation of the waiter is never absorbed, even when the task it was forwarded to absorbs it."""

from __future__ import annotations

import asyncio

import pytest

from shardline._tasks import cancel_and_wait, wait_ended


async def _sleeper(cleanup_s: float = 0.0, *, absorb: bool = False) -> None:
    """Sleeps until cancelled; then cleans up for ``cleanup_s`` and, with ``absorb``, returns normally."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(cleanup_s)
        if not absorb:
            raise


async def test_cancel_and_wait_ends_every_task_and_empties_the_list() -> None:
    tasks = [asyncio.create_task(_sleeper()), asyncio.create_task(_sleeper(0.01, absorb=True))]
    await asyncio.sleep(0)
    ended = list(tasks)
    await cancel_and_wait(tasks)
    assert tasks == []
    assert [t.done() for t in ended] == [True, True]
    assert ended[0].cancelled() and not ended[1].cancelled()


async def test_a_task_that_failed_is_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    with pytest.raises(RuntimeError, match="boom"):
        await wait_ended(task)


@pytest.mark.parametrize("absorb", [False, True], ids=["task-ends-cancelled", "task-absorbs-the-cancellation"])
async def test_a_time_limit_on_the_wait_runs_out(absorb: bool) -> None:
    """A stop given a time limit: the limit passes while the task is still cleaning up, so the wait is cancelled.
    It must end in TimeoutError, not look like a stop that completed, even if the task swallowed the cancellation
    forwarded to it."""
    task = asyncio.create_task(_sleeper(0.2, absorb=absorb))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(wait_ended(task), 0.05)
    assert task.done()  # (the cancellation was forwarded: it ended before wait_for returned)


async def test_a_cleanup_that_runs_after_its_own_cancellation_still_waits_for_every_task() -> None:
    """A caller already being cancelled (its cleanup runs in a ``finally``) waits for each task without raising:
    only a cancellation made during the wait counts."""
    waited: list[asyncio.Task[None]] = []

    async def owner() -> None:
        tasks = [asyncio.create_task(_sleeper(0.01)), asyncio.create_task(_sleeper(0.01))]
        try:
            await asyncio.sleep(3600)
        finally:
            waited.extend(tasks)
            await cancel_and_wait(tasks)

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(waited) == 2
    assert all(t.done() for t in waited)
