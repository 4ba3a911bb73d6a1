"""The data-loss forecast: a rule with a ``Forecast`` has seconds left as its datapoints, not metric values.

At the end of every period a least-squares line through the last ``window_s`` of an iterator-age series gives
``(limit - age) / slope`` while the slope is positive: the time until the oldest unprocessed record reaches
``limit_s`` and is lost. With ``group_by`` every group gets its own line and the soonest loss speaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..series import SeriesStore
from .rules import COMPARISONS, AlarmRule, Forecast, Point, group_text, grouped

__all__ = ["fit_time_to_loss", "forecast_points"]


def fit_time_to_loss(samples: Sequence[tuple[float, float]], limit_s: float, at_s: float) -> tuple[float, float, float]:
    """Least-squares line through (time s, age s) samples: (age at ``at_s``, slope, seconds until the age reaches
    ``limit_s``: ``inf`` while it is not rising, 0 once it is there)."""
    n = len(samples)
    if n < 2:
        raise ValueError("a slope needs at least two samples")
    mt = sum(t for t, _ in samples) / n
    ma = sum(a for _, a in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    slope = sum((t - mt) * (a - ma) for t, a in samples) / var if var else 0.0
    age = ma + slope * (at_s - mt)
    if age >= limit_s:
        return age, slope, 0.0
    if slope <= 0:
        return age, slope, math.inf
    return age, slope, (limit_s - age) / slope


def forecast_points(rule: AlarmRule, fc: Forecast, store: SeriesStore, start_ms: int, slots: int) -> list[Point]:
    """The datapoints of a forecast rule, one per period from ``start_ms``: the seconds left, fitted over the
    samples of ``fc.window_s`` before each period's end."""
    step, sample_ms, window_ms = rule.period_s * 1000, fc.sample_s * 1000, fc.window_s * 1000
    q_start = (start_ms - window_ms) // sample_ms * sample_ms
    n = (start_ms + slots * step - q_start) // sample_ms
    groups = grouped(store, rule, start_ms=q_start, period_s=fc.sample_s, slots=n)
    compare = COMPARISONS[rule.comparison][0]
    out: list[Point] = []
    for i in range(slots):
        end = start_ms + (i + 1) * step
        best = Point(None)
        for key, values in groups.items():
            samples = [
                ((t + sample_ms / 2) / 1000, v)  # a bucket speaks for its middle
                for j, v in enumerate(values)
                if v is not None and end - window_ms <= (t := q_start + j * sample_ms) < end
            ]
            if len(samples) < fc.min_samples:
                continue
            age, slope, left = fit_time_to_loss(samples, fc.limit_s, end / 1000)
            where = f" ({group_text(rule, key)})" if rule.group_by else ""
            eta = f"about {left:.0f} s until it reaches {fc.limit_s:g} s" if math.isfinite(left) else "not rising"
            point = Point(compare(left, rule.threshold), left if math.isfinite(left) else None, "")
            point.detail = f"age {age:.0f} s{where}, changing {slope:+.3f} s/s: {eta}"
            if best.breaching is None or (point.value is not None and (best.value is None or point.value < best.value)):
                best = point
        out.append(best)
    return out
