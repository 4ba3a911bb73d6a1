"""`shardline top`: the plain-text snapshot against canned /api/overview answers (exact figures), the live view's
rendering, the failure messages, and `shardline top --once` against a real `shardline up`."""

from __future__ import annotations

import argparse
import io
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from _shardline import CLI, kinesis, shardline
from shardline.metrics import top

NOW = 1_700_000_000_000
RETENTION_MS = 24 * 3600_000


def overview(**changes: Any) -> dict[str, Any]:
    """An answer shaped like the server's /api/overview (only the fields `top` reads, plus a few it ignores)."""
    ov: dict[str, Any] = {
        "now_ms": NOW,
        "streams": [
            {
                "name": "orders",
                "status": "ACTIVE",
                "mode": "PROVISIONED",
                "retention_hours": 24,
                "shards_open": 3,
                "shards_closed": 1,
                "iterator_age_ms": 1500,
                "last_incoming_ms": NOW - 4000,
                "totals": {"incoming_records": 1000, "incoming_bytes": 50_000, "outgoing_records": 900},
                "rates": {
                    "incoming_records_per_s": 12.5,
                    "incoming_bytes_per_s": 2048.0,
                    "outgoing_records_per_s": 11.0,
                },
            }
        ],
        "functions": [
            {
                "name": "process",
                "concurrency": 32,
                "in_flight": 2,
                "invocations": 120,
                "errors": 3,
                "timeouts": 1,
                "throttles": 0,
                "cold_starts": 2,
                "duration_p50_ms": 14.0,
                "duration_p99_ms": 250.0,
                "successes_per_s": 4.0,
            }
        ],
        "mappings": [
            {
                "uuid": "5c1e0b6a-0000-4000-8000-000000000001",
                "function": "process",
                "stream": "orders",
                "state": "Enabled",
                "status": "stall",
                "last_result": "PROBLEM: Function call failed",
                # 45% of the 24 h retention: the worst reader of the stream
                "iterator_age_ms": 0.45 * RETENTION_MS,
                "lag_records": 340,
                "totals": {"polled": 5000, "invoked_records": 4600, "failed_invoke_records": 7, "dropped": 2},
            }
        ],
        "alarms": [
            {"name": "stream:orders:iterator-age-50pct", "state": "OK", "severity": "warning", "since_ms": NOW},
            {
                "name": "mapping:process@orders:poison-pill",
                "state": "ALARM",
                "severity": "critical",
                "reason": "checkpoint stalled 960 s",
                "since_ms": NOW - 90_000,
            },
            {"name": "function:process:errors", "state": "INSUFFICIENT_DATA", "severity": "warning", "since_ms": NOW},
        ],
    }
    ov.update(changes)
    return ov


@contextmanager
def fake_server(body: bytes, status: int = 200) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, payload = (status, body) if self.path == "/api/overview" else (404, b'{"error": "no"}')
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_once(endpoint: str) -> int:
    return top.main(argparse.Namespace(endpoint=endpoint, interval=2.0, once=True))


def section(text: str, title: str) -> list[str]:
    """The lines of one section of the plain output, header row first."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def row(lines: list[str], first: str) -> list[str]:
    for line in lines[1:]:
        if line.startswith(first):
            return re.split(r"\s{2,}", line.strip())
    raise AssertionError(f"no row for {first} in {lines}")


def test_once_prints_every_section_with_the_servers_figures(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_server(orjson.dumps(overview())) as url:
        assert run_once(url) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"shardline top  {url}  ")

    streams = section(out, "STREAMS")
    assert re.split(r"\s{2,}", streams[0]) == [
        "Stream",
        "Status",
        "Open",
        "Closed",
        "In rec/s",
        "In B/s",
        "Out rec/s",
        "Iter age",
        "% ret",
        "Last in",
    ]
    # first screen: the server's last-minute rates; age and % of retention from the stream's worst reader
    assert row(streams, "orders") == [
        "orders",
        "ACTIVE",
        "3",
        "1",
        "12.5",
        "2 KiB",
        "11",
        "10h48m",
        "45.0%",
        "4 s ago",
    ]

    mappings = section(out, "MAPPINGS")
    assert row(mappings, "process") == [
        "process",
        "orders",
        "Enabled",
        "stall",
        "10h48m",
        "340",
        "5000",
        "4600",
        "7",
        "2",
        "PROBLEM: Function call failed",
    ]

    functions = section(out, "FUNCTIONS")
    assert row(functions, "process") == ["process", "4", "120", "3", "1", "0", "2/32", "14 ms", "250 ms", "2"]

    alarms = section(out, "ALARMS")
    # the ones not OK, worst first; the OK ones only counted
    assert [line.split()[0] for line in alarms[1:-1]] == ["ALARM", "INSUFFICIENT_DATA"]
    assert "mapping:process@orders:poison-pill" in alarms[1] and "1m30s ago" in alarms[1]
    assert "stream:orders:iterator-age-50pct" not in out
    assert alarms[-1] == "3 alarms: 1 ALARM, 1 INSUFFICIENT_DATA, 1 OK"


def test_an_empty_server_says_so() -> None:
    text = top.render_plain(top.build({"now_ms": NOW, "streams": [], "alarms": []}), "header")
    assert section(text, "STREAMS") == ["no streams"]
    assert section(text, "MAPPINGS") == ["no event source mappings"]
    assert section(text, "FUNCTIONS") == ["no functions"]
    assert section(text, "ALARMS") == ["no alarms defined"]


def test_later_screens_show_the_rate_between_two_refreshes() -> None:
    rates = top.Rates()
    first = top.build(overview(), rates)
    assert first[0].rows[0][4].text == "12.5"  # no earlier answer: the server's last-minute rate
    later = overview(now_ms=NOW + 2000)
    later["streams"][0]["totals"] = {"incoming_records": 1300, "incoming_bytes": 50_000, "outgoing_records": 900}
    later["functions"][0]["invocations"] = 130
    second = top.build(later, rates)
    streams, functions = second[0].rows[0], second[2].rows[0]
    assert (streams[4].text, streams[5].text, streams[6].text) == ("150", "0 B", "0")
    assert functions[1].text == "5"


def test_retention_percentage_is_flagged_past_half_and_past_four_fifths() -> None:
    def pct_cell(age_ms: float) -> top.Cell:
        ov = overview()
        ov["mappings"][0]["iterator_age_ms"] = age_ms
        return top.build(ov)[0].rows[0][8]

    assert pct_cell(0.2 * RETENTION_MS) == top.Cell("20.0%", "")
    assert pct_cell(0.5 * RETENTION_MS) == top.Cell("50.0%", "yellow")
    assert pct_cell(0.85 * RETENTION_MS) == top.Cell("85.0%", "bold red")


def test_the_live_view_keeps_names_whole_on_a_narrow_terminal() -> None:
    console = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    console.print(top.render_rich(top.build(overview()), "shardline top  x", "cannot reach x; retrying"))
    text = console.export_text()
    assert "cannot reach x; retrying" in text
    for name in ("orders", "process", "mapping:process@orders:poison-pill", "ALARM", "45.0%"):
        assert name in text
    assert "3 alarms: 1 ALARM, 1 INSUFFICIENT_DATA, 1 OK" in text


def test_unreachable_endpoint_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    assert run_once(f"http://127.0.0.1:{port}") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"shardline top: cannot reach http://127.0.0.1:{port}/api/overview")


def test_server_without_monitoring_is_named_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_server(b'{"error": "not here"}', status=404) as url:
        assert run_once(url) == 1
    assert "HTTP 404 (is monitoring turned off with --no-metrics?)" in capsys.readouterr().err


def test_not_a_terminal_prints_a_snapshot_per_interval(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second wait

    monkeypatch.setattr("shardline.metrics.top.time.sleep", sleep)
    with fake_server(orjson.dumps(overview())) as url:
        assert top.main(argparse.Namespace(endpoint=url, interval=3.0, once=False)) == 0
    out = capsys.readouterr().out
    assert waits == [3.0, 3.0]
    assert out.count("STREAMS") == 2 and out.count("every 3 s, Ctrl-C to quit") == 2


# ------------------------------------------------------------------------------------------------ real server
PROJECT = """\
streams:
  clicks: {shards: 2}
functions:
  count-clicks:
    handler: handlers/fn.handler
    timeout: 10
    events:
      - stream:
          arn: arn:aws:kinesis:us-east-1:000000000000:stream/clicks
          batchSize: 10
          startingPosition: TRIM_HORIZON
"""


def test_top_once_against_a_running_project(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "fn.py").write_text("def handler(event, context):\n    return None\n")
    (tmp_path / "shardline.yml").write_text(PROJECT)
    with (
        (tmp_path / "up.log").open("w") as log,
        shardline(
            "up",
            "shardline.yml",
            "--port",
            "0",
            "--data-dir",
            "data",
            "--log-level",
            "warning",
            cwd=tmp_path,
            stderr=log,
        ) as running,
    ):
        url = running.url
        out = kinesis(url).put_records(
            StreamName="clicks", Records=[{"Data": b"x" * 10, "PartitionKey": f"k{i}"} for i in range(25)]
        )
        assert out["FailedRecordCount"] == 0
        done = subprocess.run(
            [*CLI, "top", "--once", "--endpoint", url], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        text = done.stdout
        stream = row(section(text, "STREAMS"), "clicks")
        assert stream[:4] == ["clicks", "ACTIVE", "2", "0"]
        mapping = row(section(text, "MAPPINGS"), "count-clicks")
        assert mapping[:3] == ["count-clicks", "clicks", "Enabled"]
        assert row(section(text, "FUNCTIONS"), "count-clicks")[0] == "count-clicks"
        assert re.fullmatch(r"\d+ alarms: 0 ALARM, \d+ INSUFFICIENT_DATA, \d+ OK", section(text, "ALARMS")[-1])
