"""The Prometheus text format, parsed back: names, types, HELP with the CloudWatch equivalent, histograms, escaping;
and the catalog's naming rules (base units, ``_total`` counters)."""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock
from shardline.metrics.catalog import METRICS
from shardline.metrics.collect import Collector, Family, HistogramValue, Snapshot
from shardline.metrics.emf import EmfMetrics
from shardline.metrics.prometheus import CONTENT_TYPE, escape_label_value, render
from shardline.models import PutRecordsRequestEntry

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class ParsedFamily:
    help: str | None = None
    type: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _unescape(s: str, help_text: bool = False) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            mapping = {"\\": "\\", "n": "\n"} if help_text else {"\\": "\\", "n": "\n", '"': '"'}
            assert nxt in mapping, f"bad escape \\{nxt}"
            out.append(mapping[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _labels(text: str) -> tuple[dict[str, str], str]:
    """Parse ``{a="x",b="y"}`` at the start of text; returns the labels and the rest."""
    assert text[0] == "{"
    labels: dict[str, str] = {}
    i = 1
    while text[i] != "}":
        eq = text.index("=", i)
        name = text[i:eq]
        assert LABEL.match(name), name
        assert text[eq + 1] == '"'
        j = eq + 2
        raw = []
        while text[j] != '"':
            if text[j] == "\\":
                raw.append(text[j : j + 2])
                j += 2
            else:
                raw.append(text[j])
                j += 1
        assert name not in labels, f"duplicate label {name}"
        labels[name] = _unescape("".join(raw))
        i = j + 1
        if text[i] == ",":
            i += 1
    return labels, text[i + 1 :]


def parse(body: str) -> dict[str, ParsedFamily]:
    fams: dict[str, ParsedFamily] = {}
    current: str | None = None
    assert body.endswith("\n")
    for line in body.splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            assert name not in fams, f"{name} described twice"
            fams[name] = ParsedFamily(help=_unescape(text, help_text=True))
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and fams[name].type is None
            fams[name].type = kind
        else:
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$", line)
            assert m, line
            name, rest = m.group(1), m.group(2)
            labels: dict[str, str] = {}
            if rest.startswith("{"):
                labels, rest = _labels(rest)
            assert rest.startswith(" ")
            value = float(rest[1:])
            assert current is not None
            fam = fams[current]
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}.get(
                fam.type or "", ("",)
            )
            assert any(name == current + s for s in suffixes), f"{name} under {current} ({fam.type})"
            fam.samples.append((name, labels, value))
    return fams


async def _snapshot(tmp_path: Path) -> Snapshot:
    clock = ManualClock(1_699_999_200_000)
    async with Engine(data_dir=tmp_path, fsync="never", clock=clock) as engine:
        await engine.create_stream("orders.v1", 2)
        await engine.put_records(
            [PutRecordsRequestEntry(b"x" * 100, str(i)) for i in range(50)], stream_name="orders.v1"
        )
        it = await engine.get_shard_iterator(
            stream_name="orders.v1", shard_id="shardId-000000000001", shard_iterator_type="TRIM_HORIZON"
        )
        clock.advance(0.25)
        await engine.get_records(it, limit=1)
        emf = EmfMetrics()
        line = {
            "_aws": {
                "CloudWatchMetrics": [
                    {
                        "Namespace": 'ns"1',
                        "Dimensions": [["tenant"]],
                        "Metrics": [{"Name": "Lag", "Unit": "Milliseconds"}],
                    }
                ]
            },
            "tenant": 'a "quoted"\\back\nslash',
            "Lag": [1500, 500],
        }
        emf.feed("fn", json.dumps(line))
        return Collector(engine, emf=emf).collect(clock.now_ms())


def test_render_parses_back(tmp_path: Path) -> None:
    snap = asyncio.run(_snapshot(tmp_path))
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    fams = parse(render(snap).decode())
    for name, fam in fams.items():
        assert NAME.match(name)
        assert fam.type in ("counter", "gauge", "histogram", "summary"), name
        assert fam.help and "CloudWatch:" in fam.help, name
        assert fam.samples, f"{name} has no samples"
        if fam.type == "counter":
            assert name.endswith("_total")
        else:
            assert not name.endswith("_total")

    # values and labels survive the round trip
    [(_, labels, value)] = fams["shardline_stream_incoming_records_total"].samples
    assert labels == {"stream": "orders.v1"} and value == 50
    ages = fams["shardline_shard_iterator_age_seconds"].samples
    assert ages == [
        ("shardline_shard_iterator_age_seconds", {"shard": "shardId-000000000001", "stream": "orders.v1"}, 0.25)
    ]
    assert "Maximum" in fams["shardline_stream_iterator_age_seconds"].help  # type: ignore[operator]
    assert "IteratorAgeMilliseconds" in fams["shardline_stream_iterator_age_seconds"].help  # type: ignore[operator]

    # histograms: cumulative buckets with increasing bounds, +Inf last and equal to _count, then _sum and _count
    for name, fam in fams.items():
        if fam.type != "histogram":
            continue
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for sample, labels, value in fam.samples:
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            groups.setdefault(key, []).append((sample, labels.get("le"), value))
        for rows in groups.values():
            buckets = [(le, v) for s, le, v in rows if s.endswith("_bucket")]
            bounds = [float(le) for le, _ in buckets]
            assert bounds == sorted(bounds) and buckets[-1][0] == "+Inf" and math.isinf(bounds[-1])
            counts = [v for _, v in buckets]
            assert counts == sorted(counts)
            total = {s: v for s, _, v in rows if not s.endswith("_bucket")}
            assert total[f"{name}_count"] == counts[-1]
            assert f"{name}_sum" in total
    put = fams["shardline_stream_put_latency_seconds"].samples
    assert ("shardline_stream_put_latency_seconds_count", {"stream": "orders.v1"}, 1.0) in put
    assert {lb.get("le") for _, lb, _ in put} >= {"0.0005", "0.001", "5", "+Inf"}  # seconds, not milliseconds

    # a custom EMF summary: escaped label values come back exactly, values in base units
    custom = fams["shardline_custom_lag_seconds"]
    assert custom.type == "summary"
    labels = {"namespace": 'ns"1', "function": "fn", "tenant": 'a "quoted"\\back\nslash'}
    assert ("shardline_custom_lag_seconds_sum", labels, 2.0) in custom.samples
    assert ("shardline_custom_lag_seconds_count", labels, 2.0) in custom.samples


def test_escaping_and_number_formats() -> None:
    metric = METRICS["shardline_stream_iterator_age_seconds"]
    fam = Family(metric, samples=[((("stream", 'x\\"\n'),), 1.5), ((("stream", "y"),), float("nan"))])
    hist = Family(
        METRICS["shardline_stream_put_latency_seconds"],
        histograms=[((("stream", "z"),), HistogramValue((0.001, 0.5), [1.0, 3.0, 4.0], 0.25))],
    )
    body = render(Snapshot(0, [fam, hist])).decode()
    assert 'shardline_stream_iterator_age_seconds{stream="x\\\\\\"\\n"} 1.5\n' in body
    assert 'shardline_stream_iterator_age_seconds{stream="y"} NaN\n' in body
    assert 'shardline_stream_put_latency_seconds_bucket{stream="z",le="0.001"} 1\n' in body
    assert 'shardline_stream_put_latency_seconds_bucket{stream="z",le="+Inf"} 4\n' in body
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    fams = parse(body)
    assert fams["shardline_stream_iterator_age_seconds"].samples[0][1] == {"stream": 'x\\"\n'}


@pytest.mark.parametrize("metric", list(METRICS.values()), ids=lambda m: m.name)
def test_catalog_names_follow_the_conventions(metric) -> None:  # type: ignore[no-untyped-def]
    assert metric.name.startswith("shardline_") and NAME.match(metric.name)
    assert metric.help.endswith(".") and metric.cloudwatch
    assert (metric.kind == "counter") == metric.name.endswith("_total")
    assert "millisecond" not in metric.name and not re.search(r"_ms(_|$)", metric.name)
    if metric.unit == "seconds":
        assert "_seconds" in metric.name
    if metric.unit == "bytes":
        assert "_bytes" in metric.name
    for label in metric.labels:
        assert LABEL.match(label) and label != "le"
