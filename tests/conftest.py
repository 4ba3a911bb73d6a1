"""The one test harness every directory shares. Being here puts tests/ on sys.path, so test modules can import the
helpers in tests/_shardline.py.

``async def`` tests run through the hook below: on the test's ``loop`` fixture when it asks for one (so fixtures that
open engines or apps on that loop share it with the test body), else on a fresh loop of their own that is torn down
the same way. There is no other way to run a coroutine test.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from _shardline import START_MS
from shardline import ManualClock


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A new event loop, closed at the end after cancelling what is left on it (as ``asyncio.run`` does)."""
    lp = asyncio.new_event_loop()
    try:
        yield lp
    finally:
        pending = [t for t in asyncio.all_tasks(lp) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            lp.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.run_until_complete(lp.shutdown_default_executor())
        lp.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in inspect.signature(fn).parameters}
    loop = pyfuncitem.funcargs.get("loop")
    if isinstance(loop, asyncio.AbstractEventLoop):
        loop.run_until_complete(fn(**kwargs))
    else:
        with event_loop() as lp:
            lp.run_until_complete(fn(**kwargs))
    return True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The test's event loop: fixtures that open things asynchronously run them on it, and so does the test."""
    with event_loop() as lp:
        yield lp


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test calls ``advance``."""
    return ManualClock(START_MS)
