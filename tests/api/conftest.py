"""API tests: the ASGI app called in-process (no sockets) over an engine on tmp_path with a ManualClock.

``async def`` tests run on the test's ``loop`` (the root conftest's, as are ``clock`` and the hook), so the app
(whose lifespan opened the engine on that loop) and the test body share it. Requests are plain ASGI calls: a scope,
a ``receive`` that hands out the body (optionally in chunks), a ``send`` that collects the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock, Settings
from shardline.api.app import KinesisApp
from shardline.api.auth import SigV4Verifier

from ._asgi import Kinesis, Lifespan


@pytest.fixture
def make_kinesis(
    tmp_path: Path, clock: ManualClock, loop: asyncio.AbstractEventLoop
) -> Iterator[Callable[..., Awaitable[Kinesis]]]:
    """Builds apps over fresh data directories, opened through the ASGI lifespan and shut down at teardown:
    ``await make_kinesis(verifier=..., max_body_bytes=..., log_requests=..., start=True, **settings)``."""
    spans: list[Lifespan] = []
    counter = iter(range(1_000_000))

    async def make(
        *,
        verifier: SigV4Verifier | None = None,
        max_body_bytes: int | None = None,
        log_requests: bool = False,
        start: bool = True,
        **settings: Any,
    ) -> Kinesis:
        base: dict[str, Any] = {"data_dir": tmp_path / f"data{next(counter)}", "fsync": "never"}
        base.update(settings)
        engine = Engine(Settings(**base), clock=clock)
        kw: dict[str, Any] = {"verifier": verifier, "log_requests": log_requests}
        if max_body_bytes is not None:
            kw["max_body_bytes"] = max_body_bytes
        app = KinesisApp(engine, **kw)
        span = Lifespan(app)
        spans.append(span)
        if start:
            msg = await span.start()
            assert msg["type"] == "lifespan.startup.complete", msg
        return Kinesis(app, clock)

    yield make
    for span in spans:
        loop.run_until_complete(span.stop())


@pytest.fixture
def kinesis(make_kinesis: Callable[..., Awaitable[Kinesis]], loop: asyncio.AbstractEventLoop) -> Kinesis:
    """The default app: no authentication, default body limit, fsync=never."""
    return loop.run_until_complete(make_kinesis())


@pytest.fixture
def lifespan_of() -> Callable[[KinesisApp], Lifespan]:
    """Runs another lifespan for an app the test built with ``start=False``."""
    return Lifespan
