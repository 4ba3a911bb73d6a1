"""End-to-end tests: real worker processes, real `shardline` processes, boto3 over loopback.

``async def`` tests run on a fresh event loop each (the root conftest's hook). Handlers live in ``handlers/`` beside
this file and are loaded by the workers exactly as a project's handlers are (``module.function`` relative to the code
directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._e2e import HANDLERS, wait_for_no_workers


@pytest.fixture
def handlers_dir() -> Path:
    return HANDLERS


@pytest.fixture
def no_leaked_workers() -> Iterator[None]:
    """Every worker this test process started is gone once the test has closed its pools."""
    yield
    assert wait_for_no_workers(parent=os.getpid()) == set()
