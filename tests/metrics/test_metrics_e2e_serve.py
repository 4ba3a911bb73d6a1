"""A real `shardline serve` process: records put with boto3 show up in /metrics and /api/query on the same port,
the series survive a restart, and --no-metrics turns it all off."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from _shardline import kinesis, shardline

WAIT_S = 20.0  # bounds for polls that normally succeed within a second or two
T = TypeVar("T")


@contextmanager
def serve(data_dir: Path, *extra: str) -> Iterator[str]:
    args = ("serve", "--port", "0", "--data-dir", str(data_dir), "--fsync", "never", *extra)
    with shardline(*args, wait_s=WAIT_S) as running:
        yield running.url
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(timeout=WAIT_S) == 0


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def eventually(probe: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + WAIT_S
    while True:
        got = probe()
        if got is not None:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def query_total(url: str) -> tuple[float, list[list[Any]]] | None:
    status, body = get(
        f"{url}/api/query?name=shardline_stream_incoming_records_total&label.stream=orders&start=-300&period=1&stat=Sum"
    )
    assert status == 200, body
    series = json.loads(body)["series"]
    if not series:
        return None
    points = series[0]["points"]
    return sum(v for _, v in points if v is not None), points


def test_serve_exposes_metrics_and_keeps_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve(data) as url:
        k = kinesis(url)
        k.create_stream(StreamName="orders", ShardCount=2)
        k.put_records(StreamName="orders", Records=[{"Data": b"x" * 20, "PartitionKey": str(i)} for i in range(100)])
        line = 'shardline_stream_incoming_records_total{stream="orders"} 100\n'

        def metrics() -> str | None:
            status, body = get(f"{url}/metrics")
            assert status == 200
            text = body.decode()
            return text if line in text else None

        text = eventually(metrics, "the records in /metrics")
        assert "# TYPE shardline_stream_incoming_records_total counter" in text
        assert 'shardline_stream_put_requests_total{api="PutRecords",outcome="success",stream="orders"} 1' in text
        _, points = eventually(lambda: ((q := query_total(url)) and q[0] == 100 and q) or None, "points")
        assert all(p[1] is None or p[1] >= 0 for p in points) and any(p[1] == 100 for p in points)
        status, body = get(f"{url}/api/overview")
        assert status == 200 and [s["name"] for s in json.loads(body)["streams"]] == ["orders"]

    assert (data / "metrics" / "series.bin").stat().st_size > 0  # written on the clean stop
    with serve(data) as url:
        again = query_total(url)
        assert again is not None and again[0] == 100  # the stored points came back


def test_no_metrics_flag(tmp_path: Path) -> None:
    with serve(tmp_path / "data", "--no-metrics") as url:
        assert get(f"{url}/metrics")[0] != 200
        assert get(f"{url}/health")[0] == 200
    assert not (tmp_path / "data" / "metrics").exists()
