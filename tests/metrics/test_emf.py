"""Embedded Metric Format lines from handler output become shardline_custom_* summaries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from shardline.metrics.emf import EmfMetrics, metric_name, parse_line


def emf(
    metrics: list[dict[str, Any]], dims: list[list[Any]] | None = None, namespace: str = "shop", **root: Any
) -> str:
    directive: dict[str, Any] = {"Namespace": namespace, "Metrics": metrics}
    if dims is not None:
        directive["Dimensions"] = dims
    return json.dumps({"_aws": {"Timestamp": 1_700_000_000_000, "CloudWatchMetrics": [directive]}, **root})


def test_a_powertools_metrics_line_is_understood() -> None:
    m = Metrics(namespace="shop", service="checkout")
    m.add_metric(name="OrdersPlaced", unit=MetricUnit.Count, value=3)
    m.add_metric(name="OrdersPlaced", unit=MetricUnit.Count, value=2)
    m.add_metric(name="CheckoutLatency", unit=MetricUnit.Milliseconds, value=250)
    m.add_dimension(name="region", value="eu")
    line = json.dumps(m.serialize_metric_set())
    agg = EmfMetrics()
    assert agg.feed("process", f"START\n{line}\nEND\n") == 1
    fams = dict(agg.families())
    labels = (("function", "process"), ("namespace", "shop"), ("region", "eu"), ("service", "checkout"))
    assert fams["shardline_custom_orders_placed"] == {labels: [5.0, 2.0]}
    assert fams["shardline_custom_checkout_latency_seconds"] == {labels: [pytest.approx(0.25), 1.0]}
    assert agg.units["shardline_custom_checkout_latency_seconds"] == "Milliseconds"


@pytest.mark.parametrize(
    ("name", "unit", "family", "scale"),
    [
        ("ColdStart", "Count", "shardline_custom_cold_start", 1.0),
        ("HTTPRequests", None, "shardline_custom_http_requests", 1.0),
        ("payload size", "Kilobytes", "shardline_custom_payload_size_bytes", 1024.0),
        ("Latency", "Microseconds", "shardline_custom_latency_seconds", 1e-6),
        ("duration_seconds", "Seconds", "shardline_custom_duration_seconds", 1.0),
        ("Hit", "Percent", "shardline_custom_hit_ratio", 0.01),
        ("Throughput", "Bytes/Second", "shardline_custom_throughput_bytes_per_second", 1.0),
        ("Events", "Count/Second", "shardline_custom_events_per_second", 1.0),
        ("Net", "Megabits", "shardline_custom_net_bits", 1e6),
        ("Odd", "Furlongs", "shardline_custom_odd", 1.0),
        ("!!!", "Count", "shardline_custom_metric", 1.0),
    ],
)
def test_names_and_units_become_base_units(name: str, unit: str | None, family: str, scale: float) -> None:
    assert metric_name(name, unit) == (family, scale)


def test_each_dimension_set_is_its_own_series_and_labels_are_sanitized() -> None:
    line = emf(
        [{"Name": "Sold", "Unit": "Count"}],
        [[], ["service"], ["service", "Item Type"], ["function"], ["__x"]],
        service='shop "north"\\1',
        **{"Item Type": 7, "function": "spoofed", "__x": "y"},  # type: ignore[arg-type]
        Sold=4,
    )
    series = parse_line(line, "fn")
    assert series is not None
    assert [dict(s.labels) for s in series] == [
        {"namespace": "shop", "function": "fn"},
        {"namespace": "shop", "function": "fn", "service": 'shop "north"\\1'},
        {"namespace": "shop", "function": "fn", "service": 'shop "north"\\1', "Item_Type": "7"},
        {"namespace": "shop", "function": "fn", "dimension_function": "spoofed"},
        {"namespace": "shop", "function": "fn", "x": "y"},
    ]
    assert all(s.values == (4.0,) for s in series)
    # no Dimensions key at all: one series without dimensions
    assert [dict(s.labels) for s in parse_line(emf([{"Name": "Sold"}], None, Sold=1), "fn") or []] == [
        {"namespace": "shop", "function": "fn"}
    ]


@pytest.mark.parametrize(
    "line",
    [
        "plain text",
        '{"message": "no _aws here"}',
        '{"_aws": ',  # not JSON
        '["_aws"]',
        '{"_aws": {"CloudWatchMetrics": []}}',
        emf([{"Name": "Sold"}], [["service"]], Sold=1),  # the dimension has no value
        emf([{"Name": "Sold"}], [["service"]], service={"a": 1}, Sold=1),  # not a scalar
        emf([{"Name": "Sold"}], None),  # the metric has no value
        emf([{"Name": "Sold"}], None, Sold="3"),  # not a number
        emf([{"Name": "Sold"}], None, Sold=[1, True]),
        emf([{"Unit": "Count"}], None, Sold=1),  # no name
        emf([{"Name": "Sold"}], [["a", 1]], a="x", Sold=1),
        json.dumps({"_aws": {"CloudWatchMetrics": [{"Metrics": [{"Name": "Sold"}]}]}, "Sold": 1}),  # no namespace
    ],
)
def test_invalid_lines_are_rejected(line: str) -> None:
    assert parse_line(line, "fn") is None


def test_feed_counts_good_and_bad_lines_and_sums_values() -> None:
    agg = EmfMetrics()
    good = emf([{"Name": "Sold", "Unit": "Count"}], [["service"]], service="s", Sold=[1, 2, 3])
    assert agg.feed("fn", "\n".join([good, good, '{"_aws": broken', "hello"])) == 2
    assert agg.feed("fn", "no metrics in this output") == 0
    assert (agg.ok_lines, agg.invalid_lines) == (2, 1)
    [(family, series)] = list(agg.families())
    assert family == "shardline_custom_sold"
    assert list(series.values()) == [[12.0, 6.0]]


def test_series_are_bounded() -> None:
    agg = EmfMetrics(max_series=3)
    for i in range(6):
        agg.feed("fn", emf([{"Name": "Sold"}], [["k"]], k=str(i), Sold=1))
    assert sum(len(s) for _, s in agg.families()) == 3
    assert agg.dropped_series == 3
    agg.feed("fn", emf([{"Name": "Other"}], None, Other=1))  # a new family is refused too
    assert "shardline_custom_other" not in dict(agg.families())
    agg.feed("fn", emf([{"Name": "Sold"}], [["k"]], k="0", Sold=5))  # existing series keep counting
    assert dict(agg.families())["shardline_custom_sold"][(("function", "fn"), ("k", "0"), ("namespace", "shop"))] == [
        6.0,
        2.0,
    ]
