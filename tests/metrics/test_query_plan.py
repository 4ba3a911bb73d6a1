"""SeriesStore.prepare: a query's own copy of the slots it reads, so it can be computed on another thread while the
store goes on recording, and the bounds on what one query may ask for."""

from __future__ import annotations

from typing import Any

import pytest

from shardline.metrics.series import SeriesStore, series_key

T0 = 1_699_999_200  # seconds; a multiple of 3600
SHARDS = [series_key("in_total", {"shard": f"s{i}", "stream": "a"}) for i in range(3)]
AGE = series_key("age_seconds", {"stream": "a"})


def feed(store: SeriesStore, first: int, stop: int, scale: float = 1.0) -> None:
    for t in range(first, stop):
        sample = {k: scale * (t - T0 + 1) * (i + 1) for i, k in enumerate(SHARDS)}
        store.record(t * 1000, {**sample, AGE: scale * (t - T0)})


@pytest.mark.parametrize("period", [1, 7, 60, 600])
def test_a_prepared_query_answers_for_the_moment_it_was_prepared(period: int) -> None:
    store = SeriesStore(None, fine_points=120, coarse_points=30)
    feed(store, T0, T0 + 900)  # past the fine window: the answer mixes both rings
    now = (T0 + 900) * 1000
    args = {"start_ms": now - 900_000, "end_ms": now, "period_s": period}
    expected = {
        stat: store.query(n, None, stat=stat, **args) for n, stat in (("in_total", "Sum"), ("age_seconds", "Maximum"))
    }
    plans = {
        stat: store.prepare(n, None, stat=stat, **args) for n, stat in (("in_total", "Sum"), ("age_seconds", "Maximum"))
    }
    # The store moves on: new values in every slot the plans read, a gap (slots cleared and rings replaced), a
    # resized coarse ring, a new series.
    feed(store, T0 + 900, T0 + 1000, scale=-5.0)
    feed(store, T0 + 1200, T0 + 1210, scale=3.0)
    store.set_coarse_points(45)
    store.record((T0 + 1211) * 1000, {series_key("in_total", {"shard": "new", "stream": "a"}): 1.0})
    for stat, plan in plans.items():
        assert plan.run() == expected[stat]
    assert any(v is not None for _, pts in expected["Sum"] for _, v in pts)


def test_histogram_percentiles_are_prepared_too() -> None:
    store = SeriesStore(None)
    lb = {"stream": "a"}
    for i in range(10):
        store.record(
            (T0 + i) * 1000,
            {
                series_key("lat_bucket", {**lb, "le": "0.1"}): float(i),
                series_key("lat_bucket", {**lb, "le": "+Inf"}): float(2 * i),
                series_key("lat_count", lb): float(2 * i),
                series_key("lat_sum", lb): float(i),
            },
        )
    args = {"start_ms": T0 * 1000, "end_ms": (T0 + 10) * 1000, "period_s": 10}
    expected = store.query("lat", None, stat="p50", **args)
    plan = store.prepare("lat", None, stat="p50", **args)
    for i in range(10, 20):
        store.record((T0 + i) * 1000, {series_key("lat_count", lb): 0.0})
    assert plan.run() == expected and expected[0][1][0][1] is not None
    with pytest.raises(ValueError, match="Maximum is not available for lat"):
        store.prepare("lat", None, stat="Maximum", **args)


def test_bounds_on_series_and_values() -> None:
    store = SeriesStore(None)
    feed(store, T0, T0 + 10)
    args: dict[str, Any] = {"start_ms": T0 * 1000, "end_ms": (T0 + 10) * 1000, "stat": "Sum"}
    assert len(store.prepare("in_total", None, period_s=1, max_series=3, max_values=30, **args).run()) == 3
    with pytest.raises(ValueError, match=r"^3 series match; at most 2 per query \(narrow it with label"):
        store.prepare("in_total", None, period_s=1, max_series=2, **args)
    with pytest.raises(ValueError, match=r"^3 series × 10 points = 30 values; at most 29 per query"):
        store.prepare("in_total", None, period_s=1, max_values=29, **args)
    # a narrower query within the same bounds is fine
    assert len(store.prepare("in_total", {"shard": "s0"}, period_s=1, max_series=2, max_values=10, **args).run()) == 1
    assert store.prepare("in_total", None, period_s=2, max_values=15, **args).run()
