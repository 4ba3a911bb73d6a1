"""Engine behaviour tests: one event loop and one ManualClock per test, engines over tmp_path.

``async def`` tests run on the test's ``loop`` (the one the ``kit`` and ``engine`` fixtures open engines on; the
``loop`` and ``clock`` fixtures are the root conftest's). Nobody sleeps: tests move time with ``clock.advance``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardline import Engine, ManualClock

from ._kit import Kit


@pytest.fixture
def kit(tmp_path: Path, clock: ManualClock, loop: asyncio.AbstractEventLoop) -> Iterator[Kit]:
    factory = Kit(tmp_path / "data", clock)
    yield factory
    loop.run_until_complete(factory.close_all())


@pytest.fixture
def engine(kit: Kit, loop: asyncio.AbstractEventLoop) -> Engine:
    """An open engine with default settings (fsync=never, so no test waits on the disk)."""
    return loop.run_until_complete(kit.open())
