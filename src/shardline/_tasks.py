"""Ending the background tasks an object owns: cancel them all, then wait for each to finish (DESIGN: every
background task has an owner that cancels and awaits it on close)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel every task of ``tasks``, wait until each has ended, and empty the list."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    tasks.clear()
