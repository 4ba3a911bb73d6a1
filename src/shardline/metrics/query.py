"""Running a series query: the slots a query reads, copied out of the store's rings (metrics.series), and the
arithmetic over them (per-period aggregates, statistics, bucket quantiles). A PreparedQuery holds only its copies,
so it runs on a worker thread while the event loop goes on recording."""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from math import isnan
from typing import Protocol, TypedDict

__all__ = [
    "EMPTY",
    "Agg",
    "Geometry",
    "HistogramSlots",
    "PreparedQuery",
    "QueryWindow",
    "Rings",
    "Slots",
    "Span",
    "aggregate",
    "bucket_quantile",
    "copy_slots",
    "statistic",
]

_INF = math.inf


class QueryWindow(TypedDict):
    """What a series query asks for, besides the series: its time range (epoch ms, start inclusive, end exclusive),
    its period in seconds, and its statistic (one of ``statistic.STATS`` or a percentile ``pNN``)."""

    start_ms: int
    end_ms: int
    period_s: int
    stat: str


class Rings(Protocol):
    """One series' rings (metrics.series): per-second values, and per coarse period their sum, min, max, count."""

    fine: array  # type: ignore[type-arg]
    csum: array  # type: ignore[type-arg]
    cmin: array  # type: ignore[type-arg]
    cmax: array  # type: ignore[type-arg]
    ccount: array  # type: ignore[type-arg]


@dataclass(frozen=True, slots=True)
class Agg:
    total: float
    count: int
    low: float
    high: float


EMPTY = Agg(0.0, 0, _INF, -_INF)


@dataclass(frozen=True, slots=True)
class Geometry:
    """The store's ring sizes and latest second when a query was prepared. ``fine_lo`` is the oldest second the fine
    ring holds; ``boundary`` the start of the fine window's first whole coarse period: coarse periods before it are
    read from the coarse ring, every later second from the fine ring."""

    last_t: int
    fine_points: int
    coarse_period_s: int
    coarse_points: int
    fine_lo: int
    boundary: int

    @classmethod
    def of(cls, last_t: int, fine_points: int, coarse_period_s: int, coarse_points: int) -> Geometry:
        fine_lo = last_t - fine_points + 1
        cp = coarse_period_s
        return cls(last_t, fine_points, cp, coarse_points, fine_lo, -(-fine_lo // cp) * cp)


@dataclass(frozen=True, slots=True)
class Span:
    """Positions [base, base + len(values)) of a ring, copied out in order."""

    base: int
    values: array  # type: ignore[type-arg]

    def get(self, lo: int, hi: int) -> array:  # type: ignore[type-arg]
        return self.values[lo - self.base : hi - self.base]


@dataclass(frozen=True, slots=True)
class Slots:
    """The slots of one series that a query over the seconds [first, stop) reads."""

    fine: Span
    csum: Span
    cmin: Span
    cmax: Span
    ccount: Span


@dataclass(frozen=True, slots=True)
class HistogramSlots:
    labels: tuple[tuple[str, str], ...]
    count: Slots
    total: Slots | None
    buckets: tuple[tuple[float, Slots], ...]  # (upper bound, cumulative series), ascending


@dataclass(frozen=True, slots=True)
class PreparedQuery:
    """A checked query with its own copy of every slot it reads (SeriesStore.prepare): ``run`` touches nothing
    else, so it can run on a worker thread while the event loop goes on recording into the store."""

    geometry: Geometry
    first: int  # the first period's start, in seconds
    points: int
    period_s: int
    stat: str
    quantile: float | None
    direct: tuple[tuple[tuple[tuple[str, str], ...], Slots], ...] = ()
    derived: tuple[HistogramSlots, ...] = ()

    def run(self) -> list[tuple[dict[str, str], list[tuple[int, float | None]]]]:
        g, ps, stat = self.geometry, self.period_s, self.stat
        periods = [self.first + i * ps for i in range(self.points)]
        out = []
        for lb, slots in self.direct:
            out.append((dict(lb), [(p * 1000, statistic(stat, aggregate(g, slots, p, ps))) for p in periods]))
            _yield_gil()
        for h in self.derived:
            _yield_gil()
            pts: list[tuple[int, float | None]] = []
            for p in periods:
                c = aggregate(g, h.count, p, ps)
                value: float | None
                if c.count == 0:
                    value = None
                elif self.quantile is not None:
                    cum = [(le, aggregate(g, b, p, ps).total) for le, b in h.buckets]
                    value = bucket_quantile(
                        self.quantile / 100,
                        [(le, n - (cum[i - 1][1] if i else 0.0)) for i, (le, n) in enumerate(cum)],
                    )
                elif stat == "SampleCount":
                    value = c.total
                elif stat == "Rate":
                    value = c.total / c.count
                else:  # Sum or Average, with a _sum series (prepare refuses the rest)
                    assert h.total is not None
                    total = aggregate(g, h.total, p, ps).total
                    value = total if stat == "Sum" else (total / c.total if c.total else None)
                pts.append((p * 1000, value))
            out.append((dict(h.labels), pts))
        return out


NO_SLOTS = Span(0, array("d"))


def copy_slots(s: Rings, g: Geometry, first: int, stop: int) -> Slots:
    """Copy the slots _aggregate reads for periods within the seconds [first, stop): array slices, so the copy is
    as cheap as the reading it allows."""
    if g.last_t < 0:
        return Slots(NO_SLOTS, NO_SLOTS, NO_SLOTS, NO_SLOTS, NO_SLOTS)
    lo, hi = max(first, g.fine_lo), min(stop, g.last_t + 1)
    fine = Span(lo, _ring(s.fine, lo, hi, g.fine_points)) if lo < hi else NO_SLOTS
    cp, n = g.coarse_period_s, g.coarse_points
    m0, m1 = max(-(-first // cp), g.last_t // cp - n + 1), min(stop, g.boundary) // cp
    if m0 >= m1:
        return Slots(fine, NO_SLOTS, NO_SLOTS, NO_SLOTS, NO_SLOTS)
    return Slots(
        fine,
        Span(m0, _ring(s.csum, m0, m1, n)),
        Span(m0, _ring(s.cmin, m0, m1, n)),
        Span(m0, _ring(s.cmax, m0, m1, n)),
        Span(m0, _ring(s.ccount, m0, m1, n)),
    )


def aggregate(g: Geometry, s: Slots, a: int, period_s: int) -> Agg:
    """Sum, count, min and max of the per-second values in [a, a + period_s): whole coarse periods that end before
    the fine window's first whole coarse period come from the coarse ring, every other second from the fine ring
    while it still holds it. Every slot inside each ring's window is current (skipped seconds and periods are
    cleared when time moves on), so a window is a slice."""
    b = a + period_s
    if g.last_t < 0:
        return EMPTY
    newest = g.last_t + 1
    if a >= g.boundary:  # the common case, recent periods: fine slots only (a query runs this per point)
        lo, hi = max(a, g.fine_lo), min(b, newest)
        vals = [v for v in s.fine.get(lo, hi) if not isnan(v)] if lo < hi else None
        return Agg(math.fsum(vals), len(vals), min(vals), max(vals)) if vals else EMPTY
    cp = g.coarse_period_s
    fine_lo = g.fine_lo
    total, count, low, high = 0.0, 0, _INF, -_INF
    m0 = max(-(-a // cp), g.last_t // cp - g.coarse_points + 1)
    m1 = min(b, g.boundary) // cp
    segments = [(max(a, fine_lo), b)]
    if m0 < m1:
        count = int(sum(s.ccount.get(m0, m1)))
        if count:
            total = math.fsum(s.csum.get(m0, m1))
            low = min(s.cmin.get(m0, m1))
            high = max(s.cmax.get(m0, m1))
        segments = [(max(a, fine_lo), min(b, m0 * cp)), (max(a, fine_lo, m1 * cp), b)]
    for lo, hi in segments:
        if lo >= min(hi, newest):
            continue
        vals = [v for v in s.fine.get(lo, min(hi, newest)) if not isnan(v)]
        if vals:
            total += math.fsum(vals)
            count += len(vals)
            low = min(low, *vals)
            high = max(high, *vals)
    return Agg(total, count, low, high)


def _ring(a: array, lo: int, hi: int, n: int) -> array:  # type: ignore[type-arg]
    """Elements for positions [lo, hi) of a ring of size n (hi - lo <= n)."""
    i, j = lo % n, hi % n
    if hi - lo >= n:
        return a[i:] + a[:i]
    if i < j or j == 0:
        return a[i : j or n]
    return a[i:] + a[:j]


def statistic(stat: str, agg: Agg) -> float | None:
    if agg.count == 0:
        return None
    if stat == "Sum":
        return agg.total
    if stat == "SampleCount":
        return float(agg.count)
    if stat in ("Average", "Rate"):
        return agg.total / agg.count
    if stat == "Maximum":
        return agg.high
    return agg.low


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Linear interpolation inside the bucket that holds the q-th observation (as histogram_quantile does).
    ``buckets`` are (upper bound, observations in that bucket alone), ascending, the last one +Inf. Stored
    ``_bucket`` series are cumulative (Prometheus' ``le``), so callers difference them first."""
    bs = list(buckets)
    total = sum(c for _, c in bs)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for upper, c in bs:
        if c > 0 and seen + c >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * ((rank - seen) / c)
        seen += c
        if not math.isinf(upper):
            lower = upper
    return lower


def _yield_gil() -> None:
    """Between two series, let the event loop's thread run: a query computed on a worker thread would otherwise hold
    the GIL for the interpreter's whole switch interval at a time, and every put waiting on the loop with it."""
    time.sleep(0)
