"""End to end: a slow handler builds a backlog under `shardline up`; iterator age rises in /metrics, the data-loss
forecast alarm fires before any record is lost, and the webhook receives the transition exactly once."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from _shardline import kinesis, shardline

HANDLER = """
import time

def handler(event, context):
    time.sleep(0.5)  # slower than the producer: the backlog, and the iterator age, grow
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


def metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)]
    return max(values) if values else None


@pytest.mark.slow
def test_forecast_fires_before_loss_and_the_webhook_gets_it_once(tmp_path: Path) -> None:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "slow.py").write_text(HANDLER)
    cfg = tmp_path / "shardline.yml"
    # Records are lost to the mapping at MaximumRecordAgeInSeconds (60 s, the smallest AWS allows).
    cfg.write_text(
        f"""
streams:
  events: {{shards: 1}}
functions:
  slow:
    handler: handlers/slow.handler
    timeout: 10
    events:
      - stream:
          stream: events
          batchSize: 1
          maximumRecordAgeInSeconds: 60
alarms:
  defaults: {{period: 5, forecast: {{windowMinutes: 1}}}}
  notify:
    log: false
    webhook: {{url: "{hook_url}", retries: 3}}
"""
    )
    try:
        with shardline("up", str(cfg), "--port", "0", "--data-dir", str(tmp_path / "d"), "--fsync", "never") as running:
            url, proc = running.url, running.proc
            client = kinesis(url)
            started = time.monotonic()
            client.put_records(
                StreamName="events", Records=[{"Data": b"x", "PartitionKey": str(i)} for i in range(300)]
            )
            fired_at: float | None = None
            ages: list[float] = []
            while time.monotonic() - started < 58 and fired_at is None:
                age = metric(url, "shardline_esm_iterator_age_seconds")
                if age is not None:
                    ages.append(age)
                if any(
                    m.get("NewStateValue") == "ALARM" and "forecast" in m.get("AlarmName", "") for m in Hook.received
                ):
                    fired_at = time.monotonic() - started
                time.sleep(1)
            assert fired_at is not None, f"no forecast alarm; webhook got {Hook.received}, ages {ages}"
            # Fired before the oldest unprocessed record reached 60 s: nothing had been lost yet.
            assert fired_at < 60
            dropped = metric(url, "shardline_esm_dropped_records_total") or 0.0
            assert dropped == 0
            assert ages and max(ages) > ages[0]  # iterator age rose in /metrics
            time.sleep(3)  # further evaluations must not send the same transition again
            forecast = [m for m in Hook.received if "forecast" in m.get("AlarmName", "")]
            assert len([m for m in forecast if m.get("NewStateValue") == "ALARM"]) == 1
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
    finally:
        server.shutdown()
        server.server_close()
