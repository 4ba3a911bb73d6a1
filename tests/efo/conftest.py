"""Enhanced fan-out tests: engines on a ManualClock (``kit``, ``engine``) and the ASGI app over one (``app``); the
boto3 tests start real ``shardline serve`` processes of their own."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from _shardline import shardline
from api._asgi import Kinesis, Lifespan
from engine._kit import Kit
from shardline import Engine, ManualClock, Settings
from shardline.api.app import KinesisApp


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


@contextmanager
def serving(data_dir: Path, *extra: str) -> Iterator[str]:
    """A real ``shardline serve`` on a free port; stopped with SIGTERM at the end, which must be clean (exit 0, no
    traceback logged)."""
    data_dir.mkdir(parents=True)
    err_path = data_dir.parent / f"{data_dir.name}.stderr"
    with (
        err_path.open("w") as err,
        shardline("serve", "--port", "0", "--data-dir", str(data_dir), *extra, stderr=err) as running,
    ):
        try:
            yield running.url
        finally:
            if running.proc.poll() is None:
                running.proc.send_signal(signal.SIGTERM)
            code = running.proc.wait(timeout=30)
    log = err_path.read_text(errors="replace")
    assert code == 0, f"shardline serve exited with {code}:\n{log[-4000:]}"
    assert "Traceback" not in log, f"the server logged an exception:\n{log[-4000:]}"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("efo") / "data") as url:
        yield url
