"""An alarm rule and its evaluation over the metric store, by CloudWatch's documented rules ("How alarm state is
evaluated when data is missing").

Every completed period of ``period_s`` gives one datapoint: breaching, not breaching or missing. The evaluation range
is the last ``evaluation_periods + 2`` periods (CloudWatch's example retrieves 5 for 3).

- At least N real datapoints in the range: the newest N of them are evaluated, the treatment is not consulted.
- Fewer: the real ones are kept wherever they are in the range and the rest of the N are filled by the treatment:
  ``breaching`` / ``notBreaching`` fill bad / good points. ``missing`` and ``ignore`` fill nothing: ALARM if M
  real points breach, OK if a real point is within the threshold, and otherwise undecided, where ``ignore`` keeps
  the current state and ``missing`` gives INSUFFICIENT_DATA (as it does for an empty range).
- ALARM when at least M (``datapoints_to_alarm``) of the N evaluated datapoints breach, OK otherwise.

An ``age`` rule's datapoints are the age of a timestamp gauge. ``group_by`` evaluates each group of matching series
on its own and lets the worst one speak for the period; without it, all matching series are combined (a Sum is
summed, a Maximum is the maximum). A forecast rule's datapoints come from ``forecast.py``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..series import SeriesStore
from ..statistic import STATS, percentile

__all__ = [
    "ALARM",
    "COMPARISONS",
    "EXTRA_PERIODS",
    "INSUFFICIENT_DATA",
    "OK",
    "SEVERITIES",
    "TREATMENTS",
    "AlarmRule",
    "AlarmState",
    "Forecast",
    "InvalidRule",
    "Point",
    "decide",
    "group_text",
    "grouped",
    "metric_points",
    "reason",
]

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
# how several series matching one rule make one datapoint (CloudWatch rolls shard metrics up to a stream this way)
_COMBINE: dict[str, Callable[[list[float]], float]] = {
    "Average": lambda v: sum(v) / len(v),
    "Maximum": max,
    "Minimum": min,
    "Sum": sum,
    "SampleCount": sum,
    "Rate": sum,
}
TREATMENTS = ("missing", "notBreaching", "breaching", "ignore")
SEVERITIES = ("info", "warning", "critical")
EXTRA_PERIODS = 2


# --------------------------------------------------------------------------------------------------- rules
class InvalidRule(ValueError):
    def __init__(self, name: str, field_name: str, message: str) -> None:
        super().__init__(f"alarm {name!r}: {field_name}: {message}")
        self.field_name = field_name
        self.message = message


@dataclass(frozen=True, slots=True)
class Forecast:
    """Datapoints become the forecast seconds until the series reaches ``limit_s``, fitted over ``window_s``."""

    limit_s: float
    window_s: int = 600
    sample_s: int = 5
    min_samples: int = 6


@dataclass(frozen=True, slots=True)
class AlarmRule:
    name: str
    metric: str
    threshold: float
    comparison: str = "GreaterThanOrEqualToThreshold"
    statistic: str = "Sum"
    period_s: int = 60
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None  # None: all N
    treat_missing_data: str = "missing"
    labels: Mapping[str, str] = field(default_factory=dict)
    severity: str = "warning"
    description: str = ""
    enabled: bool = True
    group_by: tuple[str, ...] = ()
    forecast: Forecast | None = None
    age: bool = False  # the metric is a Unix timestamp in seconds; datapoints are its age at each period's end

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidRule(self.name, *problems[0])

    @property
    def m(self) -> int:
        return self.evaluation_periods if self.datapoints_to_alarm is None else self.datapoints_to_alarm

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is allowed) for every invalid field; the config parser words them with the file and key."""
        out: list[tuple[str, str]] = []

        def choice(name: str, value: str, allowed: Iterable[str]) -> None:
            if value not in allowed:
                out.append((name, f"{value!r} is not allowed (allowed: {', '.join(allowed)})"))

        if not self.name:
            out.append(("name", "must not be empty"))
        choice("comparison", self.comparison, COMPARISONS)
        if percentile(self.statistic) is None:
            choice("statistic", self.statistic, [*STATS, "pNN"])
        choice("treat_missing_data", self.treat_missing_data, TREATMENTS)
        choice("severity", self.severity, SEVERITIES)
        p = self.period_s
        if not (0 < p < 60 and 60 % p == 0) and not (p >= 60 and p % 60 == 0):
            out.append(("period", f"{p!r} is not allowed (allowed: a divisor of 60 such as 10, or a multiple of 60)"))
        if self.evaluation_periods < 1 or self.evaluation_periods * p > 86_400:
            out.append(("evaluation_periods", "at least 1, and evaluation periods × period at most 86400 seconds"))
        if not 1 <= self.m <= self.evaluation_periods:
            out.append(("datapoints_to_alarm", f"{self.m!r} is not allowed (allowed: 1..{self.evaluation_periods})"))
        if not math.isfinite(self.threshold):
            out.append(("threshold", "must be a finite number"))
        fc = self.forecast
        if fc is not None:
            if not self.comparison.startswith("LessThan"):
                out.append(("comparison", "a forecast alarms on the time left: LessThan... is required"))
            if fc.min_samples < 2 or fc.sample_s < 1 or fc.window_s < fc.sample_s * fc.min_samples:
                out.append(("forecast", "needs min_samples >= 2 and a window of at least min_samples samples"))
        return out

    def summary(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        subject = f"{self.statistic}({self.metric}{{{labels}}})"
        if self.forecast is not None:
            subject = f"forecast seconds until {subject} reaches {self.forecast.limit_s:g}"
        elif self.age:
            subject = f"seconds since {subject}"
        words = COMPARISONS[self.comparison][1]
        n = self.evaluation_periods
        return f"{subject} {words} {self.threshold:g} for {self.m} of {n} periods of {self.period_s} s"

    def describe(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "labels": dict(self.labels),
            "statistic": self.statistic,
            "period_s": self.period_s,
            "evaluation_periods": self.evaluation_periods,
            "datapoints_to_alarm": self.m,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "treat_missing_data": self.treat_missing_data,
            "severity": self.severity,
            "description": self.description,
            "enabled": self.enabled,
            "summary": self.summary(),
        }


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass(slots=True)
class AlarmState:
    """What the manager keeps of one alarm, and what an age rule remembers between evaluations."""

    state: str
    reason: str
    since_ms: int
    first_seen_ms: int  # when this process first evaluated the alarm (not kept across restarts)
    last_end_ms: int = -1
    value: float | None = None
    last_stamp_s: float = 0.0  # the newest value an age rule has seen


@dataclass(slots=True)
class Point:
    breaching: bool | None
    value: float | None = None
    detail: str = ""


def decide(
    points: Sequence[bool | None],
    *,
    evaluation_periods: int,
    datapoints_to_alarm: int,
    treat_missing_data: str,
    current: str,
) -> str:
    """The new state from the evaluation range (oldest first; True breaching, False not, None missing)."""
    n, m = evaluation_periods, datapoints_to_alarm
    real = [p for p in points if p is not None]
    if len(real) >= n:
        return ALARM if sum(real[-n:]) >= m else OK
    breaching = sum(real)
    if treat_missing_data == "breaching":
        return ALARM if breaching + n - len(real) >= m else OK
    if treat_missing_data == "notBreaching":
        return ALARM if breaching >= m else OK
    if breaching >= m:
        return ALARM
    if breaching < len(real):
        return OK
    if treat_missing_data == "ignore":
        return current
    # AWS quirk: with `missing`, breaching data followed by silence ("X - - - -") is ALARM while the same data at
    # the newest end ("- - - - X") is INSUFFICIENT_DATA: an alarm re-evaluates the last data after a metric stops.
    if real and points[-1] is None:
        return ALARM
    return INSUFFICIENT_DATA


def grouped(
    store: SeriesStore, rule: AlarmRule, *, start_ms: int, period_s: int, slots: int
) -> dict[tuple[str, ...], list[float | None]]:
    """Per ``group_by`` key, one value per period slot (None: no data), the group's series combined."""
    step = period_s * 1000
    acc: dict[tuple[str, ...], list[list[float]]] = {}
    labels = dict(rule.labels) or None
    end_ms = start_ms + slots * step
    for series_labels, points in store.query(
        rule.metric, labels, start_ms=start_ms, end_ms=end_ms, period_s=period_s, stat=rule.statistic
    ):
        bins = acc.setdefault(tuple(series_labels.get(g, "") for g in rule.group_by), [[] for _ in range(slots)])
        for ts, value in points:
            i = (int(ts) - start_ms) // step
            if value is not None and 0 <= i < slots and math.isfinite(value):
                bins[i].append(float(value))
    combine = _COMBINE.get(rule.statistic, max)  # a percentile: the worst series speaks
    return {k: [combine(b) if b else None for b in bins] for k, bins in acc.items()}


def group_text(rule: AlarmRule, key: tuple[str, ...]) -> str:
    return ", ".join(f"{g}={v}" for g, v in zip(rule.group_by, key, strict=True))


def metric_points(rule: AlarmRule, store: SeriesStore, start_ms: int, slots: int, st: AlarmState) -> list[Point]:
    """The datapoints of a rule without a forecast, one per period from ``start_ms``."""
    step = rule.period_s * 1000
    groups = grouped(store, rule, start_ms=start_ms, period_s=rule.period_s, slots=slots)
    if rule.age:
        # A gap between samples stays missing. A timestamp absent from the whole range counts from the newest one
        # this process saw, or from its first look: so after downtime a busy stream is not aged from long ago.
        groups = groups or {tuple("" for _ in rule.group_by): [None] * slots}
        for values in groups.values():
            stamps = [v for v in values if v is not None and v > 0]
            st.last_stamp_s = max([st.last_stamp_s, *stamps])
            since_s = max(st.last_stamp_s, st.first_seen_ms / 1000)
            for i, v in enumerate(values):
                end_s = (start_ms + (i + 1) * step) / 1000
                if v is not None and v > 0:
                    values[i] = max(0.0, end_s - v)
                elif not stamps:
                    values[i] = max(0.0, end_s - since_s)
    compare = COMPARISONS[rule.comparison][0]
    worst = max if rule.comparison.startswith("Greater") else min
    out: list[Point] = []
    for i in range(slots):
        seen = [(compare(v, rule.threshold), v, k) for k, vs in groups.items() if (v := vs[i]) is not None]
        if not seen:
            out.append(Point(None))
            continue
        hit, value, key = worst([s for s in seen if s[0]] or seen, key=lambda s: s[1])
        out.append(Point(hit, value, group_text(rule, key) if rule.group_by else ""))
    return out


def reason(rule: AlarmRule, points: list[Point], state: str) -> str:
    n = rule.evaluation_periods
    real = [p for p in points if p.breaching is not None]
    words = COMPARISONS[rule.comparison][1]
    if len(real) >= n:
        window = real[-n:]
        hits = sum(1 for p in window if p.breaching)
        values = ", ".join("none" if p.value is None else f"{p.value:g}" for p in window)
        text = (
            f"Threshold Crossed: {hits} out of the last {n} datapoints [{values}] {'was' if hits == 1 else 'were'} "
            f"{words} the threshold ({rule.threshold:g}) (minimum {rule.m} for ALARM)"
        )
    elif not real:
        text = f"no datapoints in the last {len(points)} periods (treatMissingData: {rule.treat_missing_data})"
    else:
        hits = sum(1 for p in real if p.breaching)
        text = (
            f"{len(real)} datapoints in the last {len(points)} periods, {hits} {words} the threshold "
            f"({rule.threshold:g}); missing data treated as {rule.treat_missing_data}"
        )
    latest = next((p for p in reversed(real) if p.breaching == (state == ALARM) and p.detail), None)
    return f"{text}: {latest.detail}" if latest else text
