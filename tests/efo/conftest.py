"""Enhanced fan-out tests: engines on a ManualClock (``kit``, ``engine``) and the ASGI app over one (``app``); the
boto3 and HTTP/2 tests run real ``shardline serve`` processes (``endpoint``, one per module)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from api._asgi import Kinesis, Lifespan
from engine._kit import Kit
from shardline import Engine, ManualClock, Settings
from shardline.api.app import KinesisApp

from ._rig import serving


@pytest.fixture
def kit(tmp_path: Path, clock: ManualClock, loop: asyncio.AbstractEventLoop) -> Iterator[Kit]:
    factory = Kit(tmp_path / "data", clock)
    yield factory
    loop.run_until_complete(factory.close_all())


@pytest.fixture
def engine(kit: Kit, loop: asyncio.AbstractEventLoop) -> Engine:
    """An open engine with default settings (fsync=never, so no test waits on the disk)."""
    return loop.run_until_complete(kit.open())


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock, loop: asyncio.AbstractEventLoop) -> Iterator[Kinesis]:
    """The ASGI app over an engine on a ManualClock (fsync=never), opened through its lifespan."""
    engine = Engine(Settings(data_dir=tmp_path / "app", fsync="never"), clock=clock)
    span = Lifespan(KinesisApp(engine))
    msg = loop.run_until_complete(span.start())
    assert msg["type"] == "lifespan.startup.complete", msg
    yield Kinesis(span.app, clock)
    loop.run_until_complete(span.stop())


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("efo") / "data") as url:
        yield url
