"""Ending the background tasks an object owns: cancel them all, then wait for each to finish (DESIGN: every
background task has an owner that cancels and awaits it on close); waiting for the first of several things."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

__all__ = ["cancel_and_wait", "first_of"]


async def cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel every task of ``tasks``, wait until each has ended, and empty the list."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    tasks.clear()


async def first_of(*awaitables: Awaitable[Any]) -> None:
    """Wait until the first of ``awaitables`` completes, then cancel the others and wait for them to end."""
    waits = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
