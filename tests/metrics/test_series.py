"""The series store: statistics per period, counters as increases, missing data, the two resolutions, the file
round trip and the bounds on memory and disk."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardline.metrics.series import SeriesStore, bucket_quantile, peek_coarse_points, series_key

T0 = 1_699_999_200  # seconds; a multiple of 3600 (so of every period used here)
C = series_key("x_total", {"stream": "a"})
G = series_key("age_seconds", {"stream": "a"})


def feed(
    store: SeriesStore, samples: Iterable[tuple[int, dict[tuple[str, tuple[tuple[str, str], ...]], float]]]
) -> None:
    for t, sample in samples:
        store.record(t * 1000, sample)


def points(store: SeriesStore, name: str, stat: str, start: int, end: int, *, period: int, **labels: str) -> list[Any]:
    out = store.query(name, labels or None, start_ms=start * 1000, end_ms=end * 1000, period_s=period, stat=stat)
    assert len(out) == 1
    return [v for _, v in out[0][1]]


def test_counter_sum_and_rate_are_increases() -> None:
    s = SeriesStore(None)
    # +2 every second for 10 s, starting from a counter already at 2 (born just before the first sample)
    feed(s, [(T0 + i, {C: 2.0 * (i + 1)}) for i in range(10)])
    assert points(s, "x_total", "Sum", T0, T0 + 10, period=5) == [10.0, 10.0]
    assert points(s, "x_total", "Rate", T0, T0 + 10, period=5) == [2.0, 2.0]
    assert points(s, "x_total", "SampleCount", T0, T0 + 10, period=10) == [10.0]
    assert points(s, "x_total", "Maximum", T0, T0 + 10, period=10) == [2.0]
    assert s.latest(C) == 20.0


def test_gauge_statistics_and_rate_is_refused() -> None:
    s = SeriesStore(None)
    feed(s, [(T0 + i, {G: float(v)}) for i, v in enumerate([4, 1, 7, 2])])
    assert points(s, "age_seconds", "Average", T0, T0 + 4, period=4) == [3.5]
    assert points(s, "age_seconds", "Maximum", T0, T0 + 4, period=4) == [7.0]
    assert points(s, "age_seconds", "Minimum", T0, T0 + 4, period=4) == [1.0]
    assert points(s, "age_seconds", "Sum", T0, T0 + 4, period=2) == [5.0, 9.0]
    assert s.latest(G) == 2.0
    with pytest.raises(ValueError, match="Rate applies to counters"):
        s.query("age_seconds", start_ms=T0 * 1000, end_ms=(T0 + 4) * 1000, period_s=1, stat="Rate")
    with pytest.raises(ValueError, match="stat must be"):
        s.query("age_seconds", start_ms=T0 * 1000, end_ms=(T0 + 4) * 1000, period_s=1, stat="Median")


def test_periods_are_aligned_to_multiples_of_the_period() -> None:
    s = SeriesStore(None)
    feed(s, [(T0 + i, {G: float(i)}) for i in range(20)])
    out = s.query("age_seconds", start_ms=(T0 + 7) * 1000 + 250, end_ms=(T0 + 20) * 1000, period_s=5, stat="Sum")
    [(labels, pts)] = out
    assert labels == {"stream": "a"}
    assert [t for t, _ in pts] == [(T0 + 5) * 1000, (T0 + 10) * 1000, (T0 + 15) * 1000]
    assert [v for _, v in pts] == [5 + 6 + 7 + 8 + 9, 10 + 11 + 12 + 13 + 14, 15 + 16 + 17 + 18 + 19]


def test_missing_data_is_none_and_a_counter_gap_lands_after_it() -> None:
    s = SeriesStore(None)
    feed(s, [(T0, {C: 1.0, G: 5.0}), (T0 + 1, {C: 2.0})])  # G absent at T0+1
    feed(s, [(T0 + 5, {C: 10.0, G: 6.0})])  # nothing recorded for 3 s
    assert points(s, "age_seconds", "Maximum", T0, T0 + 6, period=1) == [5.0, None, None, None, None, 6.0]
    assert points(s, "x_total", "Sum", T0, T0 + 6, period=1) == [1.0, 1.0, None, None, None, 8.0]
    assert s.latest(G) == 6.0
    s.record((T0 + 6) * 1000, {C: 11.0})
    assert s.latest(G) is None  # absent from the latest sample


def test_counter_reset_counts_from_zero_and_repeated_seconds_are_ignored() -> None:
    s = SeriesStore(None)
    feed(s, [(T0, {C: 100.0}), (T0 + 1, {C: 105.0}), (T0 + 2, {C: 3.0})])
    s.record((T0 + 2) * 1000 + 500, {C: 50.0})  # the same second again: ignored
    s.record((T0 + 1) * 1000, {C: 60.0})  # an earlier second: ignored
    assert points(s, "x_total", "Sum", T0, T0 + 3, period=1) == [100.0, 5.0, 3.0]


def test_label_filter_and_many_series() -> None:
    s = SeriesStore(None)
    a, b = series_key("x_total", {"stream": "a", "shard": "0"}), series_key("x_total", {"stream": "b", "shard": "0"})
    feed(s, [(T0 + i, {a: float(i), b: 10.0 * i}) for i in range(3)])
    out = s.query("x_total", {"stream": "b"}, start_ms=T0 * 1000, end_ms=(T0 + 3) * 1000, period_s=3, stat="Sum")
    assert out == [({"shard": "0", "stream": "b"}, [(T0 * 1000, 20.0)])]
    both = s.query("x_total", {"shard": "0"}, start_ms=T0 * 1000, end_ms=(T0 + 3) * 1000, period_s=3, stat="Sum")
    assert sorted(lb["stream"] for lb, _ in both) == ["a", "b"]
    assert s.query("x_total", {"stream": "c"}, start_ms=T0 * 1000, end_ms=(T0 + 3) * 1000, period_s=3, stat="Sum") == []


def test_histogram_average_and_percentiles_from_buckets() -> None:
    s = SeriesStore(None)
    lb = (("stream", "a"),)

    def sample(le_counts: list[float], total: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {
            ("lat_seconds_bucket", tuple(sorted((*lb, ("le", le))))): c
            for le, c in zip(["0.1", "1", "+Inf"], le_counts, strict=True)
        }
        out[("lat_seconds_sum", lb)] = total
        out[("lat_seconds_count", lb)] = le_counts[-1]
        return out

    # second 0: 10 observations <= 0.1 s; second 1: 10 more in (0.1, 1]; cumulative buckets as Prometheus keeps them
    feed(s, [(T0, sample([10, 10, 10], 0.5)), (T0 + 1, sample([10, 20, 20], 5.5))])
    assert points(s, "lat_seconds", "Average", T0, T0 + 2, period=2) == [pytest.approx(5.5 / 20)]
    assert points(s, "lat_seconds", "SampleCount", T0, T0 + 2, period=1) == [10.0, 10.0]
    assert points(s, "lat_seconds", "p50", T0, T0 + 2, period=2) == [pytest.approx(0.1)]
    assert points(s, "lat_seconds", "p75", T0, T0 + 2, period=2) == [pytest.approx(0.1 + 0.9 * 0.5)]
    assert points(s, "lat_seconds", "p99", T0 + 1, T0 + 2, period=1) == [pytest.approx(0.1 + 0.9 * 0.99)]
    with pytest.raises(ValueError, match="not available"):
        s.query("lat_seconds", start_ms=T0 * 1000, end_ms=(T0 + 2) * 1000, period_s=2, stat="Maximum")


def test_bucket_quantile_edges() -> None:
    assert bucket_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    assert bucket_quantile(0.99, [(1.0, 1.0), (math.inf, 9.0)]) == 1.0  # beyond the last bound: the bound


def reference(history: dict[int, float], counter: bool, stat: str, a: int, period: int) -> float | None:
    """The statistic straight from the full per-second history (increases for counters)."""
    vals = []
    prev = None
    for t in sorted(history):
        v = history[t]
        if counter:
            v, prev = (v if prev is None or v < prev else v - prev), v
        if a <= t < a + period:
            vals.append(v)
    if not vals:
        return None
    return {
        "Sum": sum(vals),
        "SampleCount": float(len(vals)),
        "Average": sum(vals) / len(vals),
        "Rate": sum(vals) / len(vals),
        "Maximum": max(vals),
        "Minimum": min(vals),
    }[stat]


def random_history(rng: random.Random, seconds: int, gap_rate: float) -> tuple[dict[int, float], dict[int, float]]:
    counter: dict[int, float] = {}
    gauge: dict[int, float] = {}
    total = 0.0
    for i in range(seconds):
        if rng.random() < gap_rate:
            continue
        total += rng.choice([0, 0, 1, 3, 250])
        counter[T0 + i] = total
        if rng.random() > gap_rate:
            gauge[T0 + i] = float(rng.randint(0, 1000))
    return counter, gauge


@pytest.mark.parametrize("seed", [1, 2])
def test_downsampled_minutes_match_the_full_history(seed: int) -> None:
    """Older than the fine window, data comes from the minute ring; every statistic is still exact."""
    rng = random.Random(seed)
    s = SeriesStore(None, fine_points=300, coarse_period_s=60, coarse_points=60)
    counter, gauge = random_history(rng, 3000, 0.1)
    for t in range(T0, T0 + 3000):
        sample = {}
        if t in counter:
            sample[C] = counter[t]
        if t in gauge:
            sample[G] = gauge[t]
        s.record(t * 1000, sample)
    start = T0 + 3000 - 3600  # the minute ring holds the last hour
    for stat in ("Sum", "SampleCount", "Average", "Maximum", "Minimum"):
        for name, hist, is_counter in (("x_total", counter, True), ("age_seconds", gauge, False)):
            for period in (60, 300, 600):
                got = points(s, name, stat, start, T0 + 3000, period=period)
                first = start // period * period
                want = [reference(hist, is_counter, stat, first + i * period, period) for i in range(len(got))]
                assert got == pytest.approx(want), (name, stat, period)
    # inside the fine window, 1 s periods are exact too; before it they are gone
    fine = points(s, "age_seconds", "Maximum", T0 + 2900, T0 + 3000, period=1)
    assert fine == [gauge.get(t) for t in range(T0 + 2900, T0 + 3000)]
    assert points(s, "age_seconds", "Maximum", T0 + 100, T0 + 101, period=1) == [None]


def test_persistence_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "series.bin"
    s = SeriesStore(path, fine_points=120, coarse_points=30)
    feed(s, [(T0 + i, {C: float(i * 3), G: float(i % 7)}) for i in range(500)])
    before = {
        (name, stat, period): s.query(name, start_ms=T0 * 1000, end_ms=(T0 + 500) * 1000, period_s=period, stat=stat)
        for name in ("x_total", "age_seconds")
        for stat in ("Sum", "Maximum", "SampleCount")
        for period in (1, 60)
    }
    s.close()
    assert peek_coarse_points(path) == 30
    again = SeriesStore(path, fine_points=120, coarse_points=30)
    for (name, stat, period), want in before.items():
        got = again.query(name, start_ms=T0 * 1000, end_ms=(T0 + 500) * 1000, period_s=period, stat=stat)
        assert got == want
    # counters restart with the process: the first sample after a reload is an increase from zero
    again.record((T0 + 500) * 1000, {C: 4.0})
    assert points(again, "x_total", "Sum", T0 + 500, T0 + 501, period=1) == [4.0]


def test_reload_into_other_ring_sizes_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "series.bin"
    s = SeriesStore(path, fine_points=100, coarse_points=20)
    feed(s, [(T0 + i, {G: float(i)}) for i in range(1200)])
    s.close()
    small = SeriesStore(path, fine_points=50, coarse_points=5)
    assert points(small, "age_seconds", "Maximum", T0 + 1150, T0 + 1200, period=50) == [1199.0]
    assert points(small, "age_seconds", "Maximum", T0 + 1100, T0 + 1150, period=50) == [None]  # beyond 50 fine points
    assert points(small, "age_seconds", "Maximum", T0 + 900, T0 + 960, period=60) == [959.0]  # minute 15 of 20: kept
    assert points(small, "age_seconds", "Maximum", T0 + 840, T0 + 900, period=60) == [None]  # only 5 minutes kept


def test_unreadable_file_starts_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "series.bin"
    s = SeriesStore(path)
    feed(s, [(T0 + i, {G: 1.0}) for i in range(5)])
    s.close()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = SeriesStore(path)
    assert len(again) == 0 and again.last_t == -1
    assert "unreadable" in caplog.text
    path.write_bytes(b"nonsense")
    assert len(SeriesStore(path)) == 0


def test_series_count_is_capped_and_stale_series_are_forgotten() -> None:
    s = SeriesStore(None, fine_points=60, coarse_period_s=60, coarse_points=3, max_series=5)
    keys = [series_key("g_seconds", {"i": str(i)}) for i in range(8)]
    s.record(T0 * 1000, {k: 1.0 for k in keys})
    assert len(s) == 5 and s.dropped_series == 3
    # only one series keeps reporting; the others go once the whole coarse span (3 minutes) has passed
    for t in range(T0 + 1, T0 + 60 * 5):
        s.record(t * 1000, {keys[0]: 1.0})
    assert s.keys("g_seconds") == [keys[0]]
    s.record((T0 + 300) * 1000, {k: 1.0 for k in keys})
    assert len(s) == 5  # room again, up to the cap


def test_disk_use_is_bounded_by_the_rings(tmp_path: Path) -> None:
    path = tmp_path / "series.bin"
    s = SeriesStore(path, fine_points=600, coarse_points=60, max_series=20)
    keys = [series_key("x_total", {"i": str(i)}) for i in range(20)]
    rng = random.Random(7)
    sizes = []
    for hour in range(3):
        for t in range(T0 + hour * 3600, T0 + (hour + 1) * 3600, 3):
            s.record(t * 1000, {k: rng.random() * 1e6 for k in keys})
        s.close()
        sizes.append(path.stat().st_size)
    per_series = 8 * 600 + (8 * 3 + 2) * 60
    assert max(sizes) <= 20 * per_series + 8 * (600 + 60) + 4096
    assert sizes[2] <= sizes[1] * 1.1  # once the rings are full the file stops growing


def test_coarse_ring_resize_keeps_the_newest_minutes() -> None:
    s = SeriesStore(None, fine_points=60, coarse_points=10)
    feed(s, [(T0 + i, {G: float(i // 60)}) for i in range(600)])
    s.set_coarse_points(4)
    got = points(s, "age_seconds", "Maximum", T0, T0 + 600, period=60)
    assert got == [None] * 6 + [6.0, 7.0, 8.0, 9.0]
    s.set_coarse_points(20)
    feed(s, [(T0 + 600 + i, {G: 10.0}) for i in range(60)])
    assert points(s, "age_seconds", "Maximum", T0 + 360, T0 + 660, period=60) == [6.0, 7.0, 8.0, 9.0, 10.0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(
            st.integers(1, 90),  # seconds since the previous sample
            st.dictionaries(
                st.sampled_from(["a_total", "b_seconds", "c_count"]),
                st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False),
                max_size=3,
            ),
        ),
        max_size=40,
    )
)
def test_file_round_trip_property(tmp_path: Path, data: list[tuple[int, dict[str, float]]]) -> None:
    path = tmp_path / "prop.bin"
    path.unlink(missing_ok=True)
    s = SeriesStore(path, fine_points=50, coarse_period_s=10, coarse_points=20)
    t = T0
    for step, values in data:
        t += step
        s.record(t * 1000, {series_key(k, {"l": 'q"\\\n'}): v for k, v in values.items()})
    s.close()
    again = SeriesStore(path, fine_points=50, coarse_period_s=10, coarse_points=20)
    assert sorted(again.keys()) == sorted(s.keys())
    assert again.last_t == s.last_t
    for key in sorted(s.keys()):
        for stat in ("Sum", "SampleCount", "Maximum"):
            q: dict[str, Any] = {"start_ms": T0 * 1000, "end_ms": (t + 1) * 1000, "period_s": 10, "stat": stat}
            assert again.query(key[0], dict(key[1]), **q) == s.query(key[0], dict(key[1]), **q)


def test_memory_budget_limits_series_by_ring_size() -> None:
    per_series = 8 * 3600 + 26 * 1440
    s = SeriesStore(None, max_series=1000, max_bytes=10 * per_series)
    assert s.series_limit == 10
    s.set_coarse_points(7 * 1440)  # longer retention: bigger rings, fewer series fit
    assert s.series_limit == 10 * per_series // (8 * 3600 + 26 * 7 * 1440) == 2
    s.record(T0 * 1000, {series_key("g_seconds", {"i": str(i)}): 1.0 for i in range(5)})
    assert len(s) == 2
