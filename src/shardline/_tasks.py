"""Ending the background tasks an object owns: cancel them all, then wait for each to finish (DESIGN: every
background task has an owner that cancels and awaits it on close); waiting for the first of several things.

Waiting for a task to end must not absorb a cancellation of the waiter itself. Awaiting a task forwards the waiter's
cancellation into it, and the task then ends cancelled, or finishes normally if its cleanup absorbed the
cancellation: either way, only the waiter's own count of cancellation requests (``Task.cancelling``) tells that the
waiter was cancelled. ``wait_ended`` reads that count, so a shutdown given a time limit (``asyncio.wait_for``) sees
its time run out instead of a stop that seems to have completed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

__all__ = ["cancel_and_wait", "first_of", "wait_ended"]


async def cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel every task of ``tasks``, wait until each has ended, and empty the list."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        await wait_ended(t)
    tasks.clear()


async def wait_ended(task: asyncio.Future[Any]) -> None:
    """Wait until ``task`` has ended. Its cancellation is not an error here, and its exception is raised; a
    cancellation of the caller made during the wait is raised once ``task`` has ended (it was forwarded to it)."""
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if current is not None and current.cancelling() > before:
        raise asyncio.CancelledError


async def first_of(*awaitables: Awaitable[Any]) -> None:
    """Wait until the first of ``awaitables`` completes, then cancel the others and wait for them to end."""
    waits = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
