"""The dashboard in a real browser: `shardline up` runs a small pipeline (a stream split once, a function that
rejects one poison record, an on-failure stream), boto3 puts records, and headless Chromium loads /dashboard.

The rendered DOM must hold charts with data for the stream and the function, the shard map with its lineage, the
mapping's configuration, the failed batch with its KinesisBatchInfo, and the alarms. The screenshot is kept in
test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from _shardline import kinesis, shardline

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_S = 30.0  # bound on waiting for the server's 1 s samples to cover two chart periods

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium (apt-get install -y chromium)"
)

PROJECT = """\
streams:
  clicks: {shards: 2}
  clicks-failed: {shards: 1}
functions:
  count-clicks:
    handler: handlers/fn.handler
    timeout: 10
    events:
      - stream:
          arn: arn:aws:kinesis:us-east-1:000000000000:stream/clicks
          batchSize: 25
          batchWindow: 1
          startingPosition: TRIM_HORIZON
          maximumRetryAttempts: 0
          bisectBatchOnFunctionError: true
          destinations:
            onFailure: {type: stream, name: clicks-failed}
"""

HANDLER = """\
import base64


def handler(event, context):
    for record in event["Records"]:
        if base64.b64decode(record["kinesis"]["data"]) == b"poison":
            raise ValueError("cannot parse a poison click")
"""


@dataclass
class Up:
    url: str
    kinesis: Any

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            return orjson.loads(resp.read())


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "fn.py").write_text(HANDLER)
    (tmp_path / "shardline.yml").write_text(PROJECT)
    args = ("up", "shardline.yml", "--port", "0", "--data-dir", "data", "--log-level", "warning")
    with (tmp_path / "up.log").open("w") as err, shardline(*args, stderr=err, cwd=tmp_path) as running:
        yield Up(running.url, kinesis(running.url))


def nonzero_periods(up: Up, name: str, **labels: str) -> int:
    """How many 5 s periods of the dashboard's 15-minute view have a non-zero value."""
    params = {"name": name, "start": "-900", "period": "5", "stat": "Sum"}
    params.update({f"label.{k}": v for k, v in labels.items()})
    series = up.get("/api/query", **params)["series"]
    return len({t for s in series for t, v in s["points"] if v})


def feed(up: Up) -> None:
    """Clicks every half second until two chart periods have incoming records and invocations, with the stream
    split once (lineage for the shard map) and a poison record (a row for the failures table)."""
    k = up.kinesis
    k.split_shard(StreamName="clicks", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    k.put_record(StreamName="clicks", Data=b"poison", PartitionKey="p")
    deadline = time.monotonic() + WAIT_S
    n = 0
    while True:
        records = [{"Data": f"click-{n + i}".encode(), "PartitionKey": f"user-{(n + i) % 17}"} for i in range(20)]
        assert k.put_records(StreamName="clicks", Records=records)["FailedRecordCount"] == 0
        n += 20
        ready = (
            nonzero_periods(up, "shardline_stream_incoming_records_total", stream="clicks") >= 2
            and nonzero_periods(up, "shardline_function_invocations_total", function="count-clicks") >= 2
            and up.get("/api/failures")["failures"]
        )
        if ready:
            return
        assert time.monotonic() < deadline, "no data for two chart periods (sampler, mapping or failures missing)"
        time.sleep(0.5)


def _svg_key(attrs: dict[str, str]) -> str | None:
    if "data-shardmap" in attrs:
        return f"shardmap:{attrs['data-shardmap']}"
    return attrs.get("data-chart")


class Dom(HTMLParser):
    """Every element with its attributes, the chart (or shard map) SVG it is in, and the text of the document."""

    VOID = frozenset({"meta", "link", "input", "br", "img", "hr"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], str | None]] = []
        self.text: list[str] = []
        self._stack: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        chart = _svg_key(a) if tag == "svg" else (self._stack[-1][1] if self._stack else None)
        self.elements.append((tag, a, chart))
        if tag not in self.VOID:
            self._stack.append((tag, chart))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        chart = self._stack[-1][1] if self._stack else None
        self.elements.append((tag, {k: v or "" for k, v in attrs}, chart))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **want: str) -> list[dict[str, str]]:
        """Elements of ``tag`` whose attributes hold every wanted word (``class="shard open"`` holds "shard")."""
        return [a for t, a, _ in self.elements if t == tag and all(v in a.get(k, "").split() for k, v in want.items())]

    def charts(self, key: str) -> list[dict[str, str]]:
        return [a for t, a, _ in self.elements if t == "svg" and a.get("data-chart") == key]

    def inside(self, svg: str, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a, c in self.elements if t == tag and c == svg and cls in a.get("class", "").split()]


def chromium(url: str, profile: Path, screenshot: Path) -> str:
    """The DOM after the page ran for 5 s of virtual time (it fetches, then draws), and a screenshot."""
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={screenshot}",
            "--window-size=1400,1000",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_dashboard_renders_a_running_pipeline(up: Up, tmp_path: Path) -> None:
    feed(up)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    html = chromium(f"{up.url}/dashboard", profile, shot)
    (ARTIFACTS / "dashboard.html").write_text(html)
    dom = Dom(html)
    text = " ".join(" ".join(dom.text).split())

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Updated" in text and "Cannot reach" not in text

    # a card per stream and per function, named
    assert [a["id"] for a in dom.find("h3") if a.get("id", "").startswith("stream-")] == [
        "stream-clicks",
        "stream-clicks-failed",
    ]
    assert dom.find("h3", id="fn-count-clicks")

    # charts drawn from /api/query: one per stream/function, with a line over several periods and a non-zero peak
    for key, cards in (("incoming", 2), ("invocations", 1), ("streamAge", 2), ("esmAge", 1)):
        assert len(dom.charts(key)) == cards, key
    incoming = dom.charts("incoming")[0]
    assert re.search(r"peak [1-9]", incoming["aria-label"]), incoming["aria-label"]
    lines = dom.inside("incoming", "path", "series")
    assert lines and int(lines[0]["data-points"]) >= 2 and "L" in lines[0]["d"]
    outcomes = {a["data-series"]: a for a in dom.inside("invocations", "path", "series")}
    assert {"success", "error"} <= set(outcomes)
    assert re.search(r"peak [1-9]", dom.charts("invocations")[0]["aria-label"])

    # the shard map: the split parent closed, its two children and the untouched shard open, linked to the parent
    shards = {a["data-shard"]: a["class"] for a in dom.inside("shardmap:clicks", "g", "shard")}
    assert shards == {
        "shardId-000000000000": "shard closed",
        "shardId-000000000001": "shard open",
        "shardId-000000000002": "shard open",
        "shardId-000000000003": "shard open",
    }
    assert len(dom.inside("shardmap:clicks", "path", "link")) == 2
    assert len(dom.inside("shardmap:clicks-failed", "g", "shard")) == 1

    # the mapping's configuration, the failed batch with its destination record, the alarms
    for words in (
        "clicks → count-clicks",
        "Batch size 25",
        "Batching window 1 s",
        "Retry attempts 0",
        "Bisect on error yes",
        "On failure stream: clicks-failed",
        "RetryAttemptsExhausted",
    ):
        assert words in text, words
    failures = up.get("/api/failures")["failures"]
    info = failures[0]["record"]["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["shardId"] in text and info["approximateArrivalOfFirstRecord"] in text
    assert info["startSequenceNumber"] in text  # the whole on-failure record is on the page (its JSON, folded)
    # the poison's error alarm may fire while the page loads, so states are not pinned; every alarm is listed
    alarms = up.get("/api/alarms")["alarms"]
    assert alarms and f"{len(alarms)} alarms" in text
    assert all(a["name"] in text for a in alarms)
