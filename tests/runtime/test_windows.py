"""Tumbling windows (TumblingWindowInSeconds): state passing, final invocations, checkpoints after the final one."""

from __future__ import annotations

import asyncio
import calendar
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock
from shardline.runtime.checkpoints import LeaseStore
from shardline.runtime.functions import InProcessFunction
from shardline.runtime.mapping import MappingConfig, RuntimeTuning
from shardline.runtime.source import EngineSource
from shardline.runtime.supervisor import Mapping

TUNING = RuntimeTuning(poll_interval_s=0.01, retry_backoff_s=0.001, throttle_backoff_s=0.01)


def counting(events: list[dict[str, Any]]) -> Callable[[dict[str, Any], Any], Any]:
    def handler(event: dict[str, Any], context: Any) -> Any:
        events.append(event)
        state = dict(event.get("state") or {})
        state["n"] = state.get("n", 0) + len(event["Records"])
        return {"state": state}

    return handler


async def run_until(mapping: Mapping, done: Callable[[], bool], timeout: float = 10.0) -> None:
    mapping.start()
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await mapping.stop()
    assert done(), "condition not reached in time"


def windowed_engine(tmp_path: Path) -> tuple[Engine, ManualClock]:
    # Arrivals two windows in the past, aligned to the minute, so every window is over by wall-clock time.
    clock = ManualClock(start_ms=(int(time.time()) // 60 * 60 - 600) * 1000)
    return Engine(data_dir=tmp_path / "data", fsync="never", clock=clock), clock


def mapping(engine: Engine, tmp_path: Path, fn: Any, **kw: Any) -> Mapping:
    cfg = MappingConfig("f", engine.stream_arn("s"), "TRIM_HORIZON", tumbling_window_s=60, **kw)
    return Mapping(
        cfg,
        function=fn,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        role_arn="r",
        source=EngineSource(engine, "s"),
        store=LeaseStore(tmp_path / "leases.db"),
        tuning=TUNING,
    )


async def test_state_flows_through_a_window_and_the_final_invoke_carries_it(tmp_path: Path) -> None:
    engine, clock = windowed_engine(tmp_path)
    events: list[dict[str, Any]] = []
    async with engine:
        await engine.create_stream("s", 1)
        for _w in range(2):
            for _i in range(5):
                await engine.put_record(stream_name="s", data=b"x", partition_key="k")
            clock.advance(60)
        m = mapping(engine, tmp_path, InProcessFunction(counting(events)), batch_size=2)
        await run_until(m, lambda: sum(e["isFinalInvokeForWindow"] for e in events) >= 2)
    first = [e for e in events if e["window"] == events[0]["window"]]
    assert [len(e["Records"]) for e in first] == [2, 2, 1, 0]
    assert [e["state"] for e in first] == [{}, {"n": 2}, {"n": 4}, {"n": 5}]
    assert [e["isFinalInvokeForWindow"] for e in first] == [False, False, False, True]
    assert all(e["shardId"] == "shardId-000000000000" and not e["isWindowTerminatedEarly"] for e in first)
    assert all(e["eventSourceARN"] == engine.stream_arn("s") for e in events)
    # AWS sends whole seconds: "2020-12-09T07:04:00Z"
    start, end = first[0]["window"]["start"], first[0]["window"]["end"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", start), start
    assert _epoch_s(end) - _epoch_s(start) == 60
    # a batch never mixes windows: every record of an event lies inside its window
    for e in events:
        for r in e["Records"]:
            arrival = r["kinesis"]["approximateArrivalTimestamp"]
            assert _epoch_s(e["window"]["start"]) <= arrival < _epoch_s(e["window"]["end"])


def _epoch_s(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


async def test_records_just_either_side_of_a_bound_land_in_whole_second_windows(tmp_path: Path) -> None:
    engine, clock = windowed_engine(tmp_path)
    t0_s = clock.now_ms() // 1000
    events: list[dict[str, Any]] = []
    async with engine:
        await engine.create_stream("s", 1)
        clock.advance(ms=59_999)
        await engine.put_record(stream_name="s", data=b"last", partition_key="k")
        clock.advance(ms=2)
        await engine.put_record(stream_name="s", data=b"next", partition_key="k")
        m = mapping(engine, tmp_path, InProcessFunction(counting(events)), batch_size=10)
        await run_until(m, lambda: sum(e["isFinalInvokeForWindow"] for e in events) >= 2)
    windows = [(_epoch_s(e["window"]["start"]), _epoch_s(e["window"]["end"]), len(e["Records"])) for e in events]
    first, second = (t0_s, t0_s + 60), (t0_s + 60, t0_s + 120)
    assert windows[:4] == [(*first, 1), (*first, 0), (*second, 1), (*second, 0)]


async def test_checkpoint_moves_only_after_the_final_invoke(tmp_path: Path) -> None:
    engine, _clock = windowed_engine(tmp_path)
    events: list[dict[str, Any]] = []
    finals_fail = {"left": 3}

    def handler(event: dict[str, Any], context: Any) -> Any:
        if event["isFinalInvokeForWindow"] and finals_fail["left"]:
            finals_fail["left"] -= 1
            raise RuntimeError("final invoke fails")
        return counting(events)(event, context)

    async with engine:
        await engine.create_stream("s", 1)
        for _i in range(3):
            await engine.put_record(stream_name="s", data=b"x", partition_key="k")
        m = mapping(engine, tmp_path, InProcessFunction(handler), batch_size=10)
        await run_until(m, lambda: any(e["isFinalInvokeForWindow"] for e in events))
        lease = m.store.leases(m.uuid)[0]
    assert finals_fail["left"] == 0  # the shard waited for the final invoke to succeed
    assert lease.checkpoint.isdigit()


async def test_a_response_without_state_fails_the_batch(tmp_path: Path) -> None:
    engine, _clock = windowed_engine(tmp_path)
    calls: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        calls.append(event)
        return {"batchItemFailures": []}

    async with engine:
        await engine.create_stream("s", 1)
        await engine.put_record(stream_name="s", data=b"x", partition_key="k")
        m = mapping(engine, tmp_path, InProcessFunction(handler), maximum_retry_attempts=1)
        await run_until(m, lambda: m.stats().totals["discarded"] >= 1)
    assert len([c for c in calls if c["Records"]]) == 2  # first attempt + one retry, then discarded


async def test_state_over_one_mib_ends_the_window_early(tmp_path: Path) -> None:
    engine, _clock = windowed_engine(tmp_path)
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        events.append(event)
        return {"state": {"blob": "x" * (1024 * 1024 + 1)}}

    async with engine:
        await engine.create_stream("s", 1)
        for _i in range(4):
            await engine.put_record(stream_name="s", data=b"x", partition_key="k")
        m = mapping(engine, tmp_path, InProcessFunction(handler), batch_size=2)
        await run_until(m, lambda: sum(e["isFinalInvokeForWindow"] for e in events) >= 2)
    finals = [e for e in events if e["isFinalInvokeForWindow"]]
    assert finals[0]["isWindowTerminatedEarly"] is True
    assert finals[0]["Records"] == []


def test_parallelization_with_windows_is_accepted() -> None:
    # AWS documents no rule between the two (see MappingConfig.problems)
    cfg = MappingConfig(
        "f",
        "arn:aws:kinesis:us-east-1:000000000000:stream/s",
        "TRIM_HORIZON",
        tumbling_window_s=60,
        parallelization_factor=2,
    )
    assert cfg.problems() == []


@pytest.mark.parametrize("seconds", [-1, 901])
def test_window_length_range(seconds: int) -> None:
    cfg = MappingConfig(
        "f", "arn:aws:kinesis:us-east-1:000000000000:stream/s", "TRIM_HORIZON", tumbling_window_s=seconds
    )
    assert [p.param for p in cfg.problems()] == ["TumblingWindowInSeconds"]
