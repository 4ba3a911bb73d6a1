"""Mapping tests: a real Engine over tmp_path, real Mappings, and scripted in-process handlers.

``async def`` tests run on the test's ``loop`` (the root conftest's); the ``rig`` fixture opens engines, stores and
mappings on that loop and closes them on it when the test ends (even when it fails). Nothing here
asserts on timings: tests wait for a condition with a bounded polling loop and then check what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._rig import Rig


@pytest.fixture
def rig(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Rig]:
    kit = Rig(tmp_path)
    yield kit
    loop.run_until_complete(kit.aclose())
