"""FunctionPool.add_result_listener: every result that reached the function, once, in the invoking task."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from shardline.runtime.functions import FunctionConfig, FunctionPool, InvocationResult, Throttled

pytestmark = pytest.mark.usefixtures("no_leaked_workers")


async def test_listeners_see_each_result_until_removed(handlers_dir: Path) -> None:
    pool = FunctionPool(FunctionConfig(name="listened", handler="behaviours.handler", code_dir=handlers_dir))
    seen: list[InvocationResult] = []
    remove = pool.add_result_listener(seen.append)

    def broken(result: InvocationResult) -> None:
        raise RuntimeError("a listener that fails")

    pool.add_result_listener(broken)
    try:
        talked = await pool.invoke(orjson.dumps({"action": "talk", "tag": "t1"}))
        failed = await pool.invoke(orjson.dumps({"action": "raise", "value": 1}))
        assert talked.ok and not failed.ok  # the failing listener changes neither result
        assert seen == [talked, failed]
        assert "stdout t1" in seen[0].logs
        remove()
        remove()  # removing twice is harmless
        await pool.invoke(orjson.dumps({"action": "echo"}))
        assert seen == [talked, failed]
    finally:
        await pool.close()


async def test_a_throttled_invocation_has_no_result_to_listen_to(handlers_dir: Path) -> None:
    cfg = FunctionConfig(name="zero", handler="behaviours.handler", code_dir=handlers_dir, reserved_concurrency=0)
    pool = FunctionPool(cfg)
    seen: list[InvocationResult] = []
    pool.add_result_listener(seen.append)
    try:
        with pytest.raises(Throttled):
            await pool.invoke(orjson.dumps({"action": "echo"}))
        assert seen == []
    finally:
        await pool.close()
