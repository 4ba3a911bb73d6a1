"""End to end, through what `shardline up` runs (shardline.compose): a handler slower than the producer builds a
backlog, the mapping's iterator age rises in /metrics, the data-loss forecast alarm fires before any record is lost,
and the webhook receives the transition exactly once.

Time is one ManualClock that every part reads (engine, mapping, monitor, alarm manager). The test advances it a
second at a time, lets the monitor take that second's sample, then lets the handler finish one record: the handler
runs in a real worker process and takes one permit from a pipe per record, so it is exactly as slow as the test says
and the figures are exact. A thin check against a real `shardline up` process shows that the command wires the
project file's alarms and notifiers the same way."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from _shardline import START_MS, shardline
from api._asgi import Lifespan, asgi_call
from shardline import ManualClock, Settings
from shardline.compose import Composition, compose
from shardline.metrics.alarms import parse_alarms
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.config import load_config

WAIT_S = 30.0  # bounds every wait, only so that a regression fails instead of hanging
RECORDS = 300
MAX_AGE_S = 60  # MaximumRecordAgeInSeconds: the smallest AWS allows; records older than this are lost

HANDLER = """
import os

_permits = None


def handler(event, context):
    # One permit from the pipe per record: the test decides when each record is done.
    global _permits
    if _permits is None:
        _permits = open(os.environ["PERMITS"], "rb", buffering=0)
    _permits.read(1)
"""

PROJECT = """
streams:
  events: {{shards: 1}}
functions:
  slow:
    handler: handlers/slow.handler
    timeout: 900
    environment: {{PERMITS: "{permits}"}}
    events:
      - stream:
          stream: events
          batchSize: 1
          maximumRecordAgeInSeconds: {max_age}
alarms:
  defaults: {{period: 5, forecast: {{windowMinutes: 1}}}}
  notify:
    log: false
    webhook: {{url: "{hook}", retries: 3}}
"""


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    """A webhook receiver on a free loopback port; what it gets is in ``Hook.received``."""
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def transitions(alarm: str, state: str) -> list[dict[str, Any]]:
    """What the webhook received about ``alarm`` entering ``state``."""
    return [m for m in Hook.received if m.get("AlarmName") == alarm and m.get("NewStateValue") == state]


async def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def metric(parts: Composition, name: str) -> float | None:
    """The largest value of ``name`` in the app's /metrics exposition."""
    reply = await asgi_call(parts.app, method="GET", path="/metrics")
    assert reply.status == 200, reply.body
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}{{[^}}]*}} (\S+)$", reply.body.decode(), re.M)]
    return max(values) if values else None


class Driver:
    """Moves the composition's clock and its slow handler in lock step."""

    def __init__(self, parts: Composition, clock: ManualClock, permits: int) -> None:
        assert parts.monitor is not None and parts.project is not None
        self.parts = parts
        self.monitor = parts.monitor
        [self.mapping] = parts.project.mappings
        self.clock = clock
        self.permits = permits

    def invoked(self) -> int:
        return self.mapping.stats().totals["invoked_records"]

    async def second(self, *, record: bool = True) -> None:
        """One second passes: the monitor samples it (and evaluates the alarms), then, with ``record``, the handler
        finishes one more record."""
        samples = self.monitor.samples
        self.clock.advance(1)
        await until(lambda: self.monitor.samples > samples, "the monitor to sample the second")
        if record:
            await self.release(1)

    def lag(self) -> int | None:
        """The records after the shard's checkpoint (known once a checkpoint has been written)."""
        [shard] = self.mapping.shard_stats().values()
        return shard.lag_records

    async def release(self, n: int) -> None:
        """Let the handler finish ``n`` more records, and wait until the mapping has invoked them and checkpointed
        after them: only then does the shard count what still waits (before its first checkpoint, that count is
        unknown and the iterator age reads 0)."""
        want = self.invoked() + n
        os.write(self.permits, b"x" * n)
        await until(lambda: self.invoked() >= want, f"{want} records to be invoked")
        await until(lambda: self.lag() == RECORDS - want, f"the checkpoint after {want} records")

    def alarm_state(self, name: str) -> str:
        assert self.monitor.alarms is not None
        [state] = [a["state"] for a in self.monitor.alarms.states() if a["name"] == name]
        return str(state)


async def test_forecast_fires_before_loss_and_the_webhook_gets_it_once(tmp_path: Path, hook_url: str) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "slow.py").write_text(HANDLER)
    permits = tmp_path / "permits"
    os.mkfifo(permits)
    cfg = tmp_path / "shardline.yml"
    cfg.write_text(PROJECT.format(permits=permits, max_age=MAX_AGE_S, hook=hook_url))
    alarms = parse_alarms(yaml.safe_load(cfg.read_text())["alarms"], cfg)
    clock = ManualClock(START_MS)
    parts = compose(
        Settings(data_dir=tmp_path / "data", fsync="never"), clock=clock, project=load_config(cfg), alarms=alarms
    )
    writer = os.open(permits, os.O_RDWR)  # read-write: never blocks, and the pipe always has a writer
    life = Lifespan(parts.app)
    assert (await life.start())["type"] == "lifespan.startup.complete"
    try:
        run = Driver(parts, clock, writer)
        await parts.engine.put_records(
            [PutRecordsRequestEntry(b"x", str(i)) for i in range(RECORDS)], stream_name="events"
        )
        ages: list[float] = []
        forecast = "mapping:slow@events:data-loss-forecast"  # the mapping's; its stream has one of its own
        while run.alarm_state(forecast) != "ALARM":
            assert clock.now_ms() - START_MS < MAX_AGE_S * 1000, f"no forecast alarm; iterator ages {ages}"
            await run.second()
            ages.append(await metric(parts, "shardline_esm_iterator_age_seconds") or 0.0)
        fired_after_s = (clock.now_ms() - START_MS) / 1000
        # Fired before the oldest unprocessed record reached its maximum age: nothing has been lost yet.
        assert fired_after_s < MAX_AGE_S
        assert run.invoked() < RECORDS
        assert await metric(parts, "shardline_esm_dropped_records_total") == 0
        assert ages == [float(s) for s in range(1, len(ages) + 1)]  # one second older with every second
        await until(lambda: len(transitions(forecast, "ALARM")) == 1, "the webhook to get the forecast alarm")

        # The backlog is worked off: the forecast recovers after more evaluations, and the webhook gets that too.
        await run.release(RECORDS - run.invoked())
        await asyncio.wait_for(run.mapping.idle(), WAIT_S)
        while run.alarm_state(forecast) != "OK":
            assert clock.now_ms() - START_MS < 10 * MAX_AGE_S * 1000, "the forecast alarm never recovered"
            await run.second(record=False)
        # The recovery was sent after the alarm (each notifier delivers in order): evaluations in between, each
        # still in ALARM, sent nothing again.
        await until(lambda: len(transitions(forecast, "OK")) == 1, "the webhook to get the recovery")
        assert len(transitions(forecast, "ALARM")) == 1
        assert await metric(parts, "shardline_esm_dropped_records_total") == 0
    finally:
        os.write(writer, b"x" * RECORDS)  # whatever is still to be invoked, or in flight, finishes at once
        await life.stop()
        os.close(writer)


SMOKE = """
streams:
  events: {{shards: 1}}
functions:
  fn:
    handler: handlers/fn.handler
    events:
      - stream: {{stream: events, batchSize: 1}}
alarms:
  defaults: {{period: 5}}
  notify:
    log: false
    webhook: {{url: "{hook}"}}
  rules:
    - name: events-has-a-shard
      metric: shardline_stream_shards
      labels: {{stream: events, state: open}}
      statistic: Maximum
      period: 1
      threshold: 1
      comparison: GreaterThanOrEqualToThreshold
"""


def test_up_wires_the_project_files_alarms_and_notifiers(tmp_path: Path, hook_url: str) -> None:
    """A real `shardline up`: the project file's rule fires and reaches its webhook, beside the built-in rules with
    the file's defaults."""
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "fn.py").write_text("def handler(event, context):\n    return None\n")
    cfg = tmp_path / "shardline.yml"
    cfg.write_text(SMOKE.format(hook=hook_url))
    with shardline("up", str(cfg), "--port", "0", "--data-dir", str(tmp_path / "d"), "--fsync", "never") as running:
        deadline = time.monotonic() + WAIT_S
        while not transitions("events-has-a-shard", "ALARM"):
            assert time.monotonic() < deadline, f"the webhook got {Hook.received}"
            time.sleep(0.05)
        with urllib.request.urlopen(f"{running.url}/api/alarms", timeout=10) as resp:
            alarms = {a["name"]: a for a in json.loads(resp.read())["alarms"]}
    forecasts = [a for name, a in alarms.items() if name.endswith(":data-loss-forecast")]
    assert forecasts and all(a["period_s"] == 5 for a in forecasts)
    assert alarms["events-has-a-shard"]["state"] == "ALARM"
