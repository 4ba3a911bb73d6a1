"""CloudWatch-style alarms over the metric store, the built-in rules that warn before records are lost, and the
``alarms:`` section of ``shardline.yml``.

Evaluation follows CloudWatch's documented rules ("How alarm state is evaluated when data is missing"). Every
completed period of ``period_s`` gives one datapoint: breaching, not breaching or missing. The evaluation range is
the last ``evaluation_periods + 2`` periods (CloudWatch's example retrieves 5 for 3).

- At least N real datapoints in the range: the newest N of them are evaluated, the treatment is not consulted.
- Fewer: the real ones are kept wherever they are in the range and the rest of the N are filled by the treatment:
  ``breaching`` / ``notBreaching`` fill bad / good points. ``missing`` and ``ignore`` fill nothing: ALARM if M
  real points breach, OK if a real point is within the threshold, and otherwise undecided, where ``ignore`` keeps
  the current state and ``missing`` gives INSUFFICIENT_DATA (as it does for an empty range).
- ALARM when at least M (``datapoints_to_alarm``) of the N evaluated datapoints breach, OK otherwise.

A forecast rule's datapoints are seconds left, not metric values: at the end of every period a least-squares line
through the last ``window_s`` of an iterator-age series gives ``(limit - age) / slope`` while the slope is positive,
the time until the oldest unprocessed record reaches ``limit_s`` and is lost. An ``age`` rule's datapoints are the
age of a timestamp gauge. ``group_by`` evaluates each group of matching series on its own and lets the worst one
speak for the period; without it, all matching series are combined (a Sum is summed, a Maximum is the maximum).

States, their history and each notifier's delivery cursor live in ``state_path`` (JSON, replaced atomically), so
after a restart an alarm that is still in ALARM is not announced again and no transition is delivered twice.

```yaml
alarms:
  defaults: {iteratorAgeRetention: true, forecast: {horizonMinutes: 60}, abandonedAfterHours: 168,
             poisonPillMinutes: 15, throttling: true, droppedRecords: true, deadLetteredRecords: true,
             onFailureDestinationStuck: true, functionErrors: true, functionTimeouts: true, period: 60,
             disable: ["stream:*:read-throttled"]}
  notify: {log: true, file: alarms.jsonl, webhook: {url: "http://127.0.0.1:9000/hook", retries: 3}}
  rules:
    - name: orders-errors
      metric: shardline_function_invocations_total
      labels: {function: process, outcome: error}  # also `dimensions`, in CloudWatch's names (FunctionName, ...)
      statistic: Sum                # Average | Maximum | Minimum | Sum | SampleCount | Rate | pNN (default Sum)
      period: 60                    # seconds: a divisor of 60 or a multiple of 60 (default 60)
      evaluationPeriods: 3          # N (default 1)
      datapointsToAlarm: 2          # M (default N)
      threshold: 1
      comparison: GreaterThanOrEqualToThreshold   # also spelled comparisonOperator (default as shown)
      treatMissingData: notBreaching              # missing | notBreaching | breaching | ignore (default missing)
      severity: critical                          # info | warning | critical (default warning)
      groupBy: [shard]                            # evaluate each shard's series on its own (default: combine)
```
``rules`` may also be a mapping of name to rule, and ``definitions`` is accepted for it (serverless-plugin-aws-alerts).
"""

from __future__ import annotations

import asyncio
import difflib
import fnmatch
import json
import logging
import math
import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .._config import ConfigFile
from .._fsutil import atomic_write
from ..clock import Clock
from .catalog import CUSTOM_PREFIX, METRICS
from .notify import AlarmConfigError, Notifier, NotifyConfig, parse_notify
from .statistic import percentile

__all__ = [
    "ALARM",
    "COMPARISONS",
    "INSUFFICIENT_DATA",
    "OK",
    "TREATMENTS",
    "AlarmConfigError",
    "AlarmDefaults",
    "AlarmManager",
    "AlarmRule",
    "AlarmsConfig",
    "Forecast",
    "InvalidRule",
    "MappingInfo",
    "StreamInfo",
    "Transition",
    "decide",
    "default_rules",
    "default_rules_for",
    "fit_time_to_loss",
    "merge_rules",
    "parse_alarms",
]

log = logging.getLogger("shardline.alarms")

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
_MAX_BACKOFF_S = 300.0


class SeriesQuery(Protocol):
    """What alarms need of the SeriesStore."""

    def query(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        start_ms: int,
        end_ms: int,
        period_s: int,
        stat: str,
    ) -> list[tuple[dict[str, str], list[tuple[int, float | None]]]]: ...


def _combine(stat: str) -> Callable[[list[float]], float]:
    return _COMBINE.get(stat, max)  # a percentile: the worst series speaks


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
            choice("statistic", self.statistic, [*_COMBINE, "pNN"])
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


@dataclass(slots=True)
class _Point:
    breaching: bool | None
    value: float | None = None
    detail: str = ""


def _grouped(
    store: SeriesQuery, rule: AlarmRule, *, start_ms: int, period_s: int, slots: int
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
    combine = _combine(rule.statistic)
    return {k: [combine(b) if b else None for b in bins] for k, bins in acc.items()}


def _group_text(rule: AlarmRule, key: tuple[str, ...]) -> str:
    return ", ".join(f"{g}={v}" for g, v in zip(rule.group_by, key, strict=True))


def _points(rule: AlarmRule, store: SeriesQuery, end_ms: int, st: _State) -> list[_Point]:
    slots = rule.evaluation_periods + EXTRA_PERIODS
    step = rule.period_s * 1000
    start_ms = end_ms - slots * step
    if rule.forecast is not None:
        return _forecast_points(rule, rule.forecast, store, start_ms, slots)
    groups = _grouped(store, rule, start_ms=start_ms, period_s=rule.period_s, slots=slots)
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
    out: list[_Point] = []
    for i in range(slots):
        seen = [(compare(v, rule.threshold), v, k) for k, vs in groups.items() if (v := vs[i]) is not None]
        if not seen:
            out.append(_Point(None))
            continue
        hit, value, key = worst([s for s in seen if s[0]] or seen, key=lambda s: s[1])
        out.append(_Point(hit, value, _group_text(rule, key) if rule.group_by else ""))
    return out


def _forecast_points(rule: AlarmRule, fc: Forecast, store: SeriesQuery, start_ms: int, slots: int) -> list[_Point]:
    step, sample_ms, window_ms = rule.period_s * 1000, fc.sample_s * 1000, fc.window_s * 1000
    q_start = (start_ms - window_ms) // sample_ms * sample_ms
    n = (start_ms + slots * step - q_start) // sample_ms
    groups = _grouped(store, rule, start_ms=q_start, period_s=fc.sample_s, slots=n)
    compare = COMPARISONS[rule.comparison][0]
    out: list[_Point] = []
    for i in range(slots):
        end = start_ms + (i + 1) * step
        best = _Point(None)
        for key, values in groups.items():
            samples = [
                ((t + sample_ms / 2) / 1000, v)  # a bucket speaks for its middle
                for j, v in enumerate(values)
                if v is not None and end - window_ms <= (t := q_start + j * sample_ms) < end
            ]
            if len(samples) < fc.min_samples:
                continue
            age, slope, left = fit_time_to_loss(samples, fc.limit_s, end / 1000)
            where = f" ({_group_text(rule, key)})" if rule.group_by else ""
            eta = f"about {left:.0f} s until it reaches {fc.limit_s:g} s" if math.isfinite(left) else "not rising"
            point = _Point(compare(left, rule.threshold), left if math.isfinite(left) else None, "")
            point.detail = f"age {age:.0f} s{where}, changing {slope:+.3f} s/s: {eta}"
            if best.breaching is None or (point.value is not None and (best.value is None or point.value < best.value)):
                best = point
        out.append(best)
    return out


def _reason(rule: AlarmRule, points: list[_Point], state: str) -> str:
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


# ------------------------------------------------------------------------------------------------ manager
@dataclass(frozen=True, slots=True)
class Transition:
    seq: int
    alarm: str
    old_state: str
    new_state: str
    reason: str
    time_ms: int
    rule: AlarmRule
    value: float | None

    def to_dict(self) -> dict[str, Any]:
        r = self.rule
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time_ms // 1000)) + f".{self.time_ms % 1000:03d}+0000"
        return {
            "id": f"{self.alarm}#{self.seq}",
            "seq": self.seq,
            "alarm": self.alarm,
            "old_state": self.old_state,
            "new_state": self.new_state,
            "reason": self.reason,
            "time_ms": self.time_ms,
            "severity": r.severity,
            "description": r.description,
            "metric": r.metric,
            "labels": dict(r.labels),
            "value": self.value,
            "summary": r.summary(),
            # the fields of CloudWatch's alarm notification, so receivers written for it read these unchanged
            "AlarmName": self.alarm,
            "AlarmDescription": r.description,
            "NewStateValue": self.new_state,
            "OldStateValue": self.old_state,
            "NewStateReason": self.reason,
            "StateChangeTime": iso,
            "Trigger": {
                "MetricName": r.metric,
                "Dimensions": [{"name": k, "value": v} for k, v in sorted(r.labels.items())],
                "Statistic": r.statistic,
                "Period": r.period_s,
                "EvaluationPeriods": r.evaluation_periods,
                "DatapointsToAlarm": r.m,
                "ComparisonOperator": r.comparison,
                "Threshold": r.threshold,
                "TreatMissingData": r.treat_missing_data,
            },
        }


@dataclass(slots=True)
class _State:
    state: str
    reason: str
    since_ms: int
    first_seen_ms: int  # when this process first evaluated the alarm (not kept across restarts)
    last_end_ms: int = -1
    value: float | None = None
    last_stamp_s: float = 0.0  # the newest value an age rule has seen


@dataclass(slots=True)
class _Retry:
    attempts: int
    next_ms: int


class AlarmManager:
    """Evaluates every rule once per completed period, keeps transitions and delivers them to the notifiers."""

    def __init__(
        self,
        store: SeriesQuery,
        rules: list[AlarmRule],
        notifiers: list[Notifier],
        clock: Clock,
        state_path: Path | None = None,
        *,
        max_history: int = 1000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._path = state_path
        self._max_history = max_history
        self._notifiers = list(notifiers)
        names = [n.name for n in self._notifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"notifier names must be unique (each keeps its own delivery cursor): {names}")
        self._rules: dict[str, AlarmRule] = {}
        self._alarms: dict[str, _State] = {}
        self._history: list[dict[str, Any]] = []  # oldest first; also every notifier's queue
        self._next_seq = 1
        self._cursors: dict[str, int] = {}  # notifier name -> seq of the last transition it is done with
        self._retry: dict[str, _Retry] = {}
        self._busy: set[str] = set()
        self.undeliverable = 0
        self._load()
        for n in self._notifiers:
            # a notifier added since the last run starts with what happens from now on, not with old history
            cursor = self._cursors.get(n.name, self._next_seq - 1)
            recovered = n.recovered_seq()
            self._cursors[n.name] = cursor if recovered is None else max(cursor, recovered)
        self.set_rules(rules)

    def set_rules(self, rules: Iterable[AlarmRule]) -> None:
        """Replace the rule set; alarms that keep their name keep their state (e.g. when new streams appear)."""
        new: dict[str, AlarmRule] = {}
        for r in rules:
            if r.name in new:
                raise ValueError(f"two alarm rules are named {r.name!r}")
            new[r.name] = r
        now = self._clock.now_ms()
        self._alarms = {
            name: self._alarms.get(name) or _State(INSUFFICIENT_DATA, "Unchecked: initial alarm creation", now, now)
            for name in new
        }
        self._rules = new

    @property
    def rules(self) -> list[AlarmRule]:
        return list(self._rules.values())

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_bytes())
            next_seq, history = int(data["next_seq"]), list(data["history"])
            cursors = {str(k): int(v) for k, v in data["cursors"].items()}
            now = self._clock.now_ms()
            alarms = {
                str(name): _State(s["state"], s["reason"], int(s["since_ms"]), now, -1, s["value"])
                for name, s in data["alarms"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("alarm state %s is unreadable (%s); alarms start over as INSUFFICIENT_DATA", self._path, exc)
            return
        self._next_seq, self._history, self._cursors, self._alarms = next_seq, history, cursors, alarms

    def _save(self) -> None:
        if self._path is None:
            return
        alarms = {n: {"state": s.state, "reason": s.reason, "since_ms": s.since_ms, "value": s.value}
                  for n, s in self._alarms.items()}  # fmt: skip
        data = {
            "version": 1,
            "next_seq": self._next_seq,
            "alarms": alarms,
            "history": self._history,
            "cursors": self._cursors,
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path, json.dumps(data, sort_keys=True).encode())

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, now_ms: int) -> list[Transition]:
        out: list[Transition] = []
        for rule in self._rules.values():
            st = self._alarms[rule.name]
            step = rule.period_s * 1000
            end_ms = now_ms // step * step
            if not rule.enabled or end_ms <= st.last_end_ms:
                continue  # nothing new until the next period completes
            st.last_end_ms = end_ms
            try:
                points = _points(rule, self._store, end_ms, st)
            except Exception:
                log.exception("alarm %s: cannot evaluate %s", rule.name, rule.summary())
                continue
            new = decide(
                [p.breaching for p in points],
                evaluation_periods=rule.evaluation_periods,
                datapoints_to_alarm=rule.m,
                treat_missing_data=rule.treat_missing_data,
                current=st.state,
            )
            st.value = next((p.value for p in reversed(points) if p.breaching is not None), None)
            if new == st.state:
                continue
            reason = _reason(rule, points, new)
            t = Transition(self._next_seq, rule.name, st.state, new, reason, now_ms, rule, st.value)
            self._next_seq += 1
            st.state, st.reason, st.since_ms = new, reason, now_ms
            self._history.append(t.to_dict())
            out.append(t)
        if out:
            self._trim()
            self._save()
        return out

    def _trim(self) -> None:
        excess = len(self._history) - self._max_history
        if excess <= 0:
            return
        dropped, self._history = self._history[:excess], self._history[excess:]
        for n in self._notifiers:
            lost = [h for h in dropped if h["seq"] > self._cursors[n.name] and n.wants(h)]
            if lost:
                log.warning("alarm notifier %s is behind: %d transitions dropped undelivered", n.name, len(lost))
                self.undeliverable += len(lost)
            self._cursors[n.name] = max(self._cursors[n.name], dropped[-1]["seq"])

    def states(self) -> list[dict[str, Any]]:
        """JSON-ready, one per rule: name, state, reason, since_ms, the latest datapoint and the rule."""
        out = []
        for name, rule in self._rules.items():
            s = self._alarms[name]
            out.append(
                {
                    "name": name,
                    "state": s.state,
                    "reason": s.reason,
                    "since_ms": s.since_ms,
                    "value": s.value,
                    **rule.describe(),
                }
            )
        return out

    def history(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Transitions, newest first."""
        return [h for h in reversed(self._history) if name is None or h["alarm"] == name][:limit]

    # ----------------------------------------------------------------- delivery
    async def deliver(self) -> None:
        """Send pending transitions, oldest first, to every notifier not busy with an earlier call. A failed send is
        retried by later calls after an exponential backoff (by the clock), then given up after ``retries``."""
        ready = [n for n in self._notifiers if n.name not in self._busy]
        # taken before the first await, so a call that overlaps this one finds them busy
        self._busy.update(n.name for n in ready)
        try:
            await asyncio.gather(*(self._drain(n) for n in ready))
        finally:
            self._busy.difference_update(n.name for n in ready)

    def pending(self) -> dict[str, int]:
        """Transitions each notifier still has to send."""
        return {
            n.name: sum(1 for h in self._history if h["seq"] > self._cursors[n.name] and n.wants(h))
            for n in self._notifiers
        }

    def _done(self, n: Notifier, seq: int) -> None:
        self._cursors[n.name] = seq
        self._save()  # before the next send: a crash now must not repeat this one

    async def _drain(self, n: Notifier) -> None:
        for event in [h for h in self._history if h["seq"] > self._cursors[n.name]]:
            if not n.wants(event):
                self._cursors[n.name] = event["seq"]
                continue
            retry = self._retry.get(n.name)
            now = self._clock.now_ms()
            if retry is not None and now < retry.next_ms:
                return
            try:
                await n.send(event)
            except Exception as exc:
                attempts = (retry.attempts if retry else 0) + 1
                if attempts <= n.retries:
                    delay_s = min(_MAX_BACKOFF_S, n.backoff_s * 2 ** (attempts - 1))
                    self._retry[n.name] = _Retry(attempts, now + round(delay_s * 1000))
                    log.warning(
                        "alarm %s: sending %s to %s failed (attempt %d of %d), again in %g s: %s",
                        event["alarm"], event["id"], n.name, attempts, n.retries + 1, delay_s, exc,
                    )  # fmt: skip
                    return
                log.error(
                    "alarm %s: gave up sending %s to %s after %d attempts: %s",
                    event["alarm"], event["id"], n.name, attempts, exc,
                )  # fmt: skip
                self.undeliverable += 1
            self._retry.pop(n.name, None)
            self._done(n, event["seq"])


# ----------------------------------------------------------------------------------------------- defaults
@dataclass(frozen=True, slots=True)
class StreamInfo:
    name: str
    retention_s: int


@dataclass(frozen=True, slots=True)
class MappingInfo:
    uuid: str
    function: str
    stream: str
    retention_s: int
    maximum_record_age_s: int = -1

    @property
    def loss_limit_s(self) -> int:
        """Records are lost to this mapping at the retention period, or earlier when MaximumRecordAge drops them."""
        if self.maximum_record_age_s > 0:
            return min(self.retention_s, self.maximum_record_age_s)
        return self.retention_s


@dataclass(frozen=True, slots=True)
class AlarmDefaults:
    enabled: bool = True
    iterator_age_ratios: tuple[tuple[float, str], ...] = ((0.5, "warning"), (0.8, "critical"))
    forecast: bool = True
    forecast_horizon_s: int = 3600
    forecast_window_s: int = 600
    abandoned_after_s: int | None = 7 * 86_400
    abandoned_by_stream: Mapping[str, int | None] = field(default_factory=dict)
    poison_pill_s: int | None = 15 * 60
    throttling: bool = True
    dropped_records: bool = True
    dead_lettered_records: bool = True
    on_failure_destination_stuck: bool = True
    function_errors: bool = True
    function_timeouts: bool = True
    period_s: int = 60
    disable: tuple[str, ...] = ()


# (name suffix, metric, severity, AlarmDefaults switch, description): "any in a period" counts, where no data is
# good news, like the serverless-plugin-aws-alerts defaults (functionErrors: Sum >= 1 in 60 s)
_STREAM_COUNTS = (
    ("write-throttled", "shardline_stream_write_throttled_total", "critical", "throttling",
     "records written to {} were throttled"),
    ("read-throttled", "shardline_stream_read_throttled_total", "warning", "throttling", "reads of {} were throttled"),
)  # fmt: skip
_MAPPING_COUNTS = (
    ("dropped-records", "shardline_esm_dropped_records_total", "critical", "dropped_records",
     "{} gave up on records and had no on-failure destination for them: they are lost"),
    ("dead-lettered-records", "shardline_esm_on_failure_delivered_records_total", "warning", "dead_lettered_records",
     "{} gave up on records and sent them to its on-failure destination"),
)  # fmt: skip
_FUNCTION_COUNTS = (
    ("errors", "error", "function_errors", "invocations of {} ended in an error"),
    ("timeouts", "timeout", "function_timeouts", "invocations of {} timed out"),
)


def _rule(name: str, metric: str, labels: dict[str, str], threshold: float, d: AlarmDefaults, **kw: Any) -> AlarmRule:
    """A built-in rule: one period of ``d.period_s``, and no data is good news (nothing read, nothing failed)."""
    kw.setdefault("statistic", "Maximum")
    kw.setdefault("comparison", "GreaterThanThreshold")
    return AlarmRule(
        name, metric, threshold, period_s=d.period_s, treat_missing_data="notBreaching", labels=labels, **kw
    )


def _count(name: str, metric: str, labels: dict[str, str], d: AlarmDefaults, **kw: Any) -> AlarmRule:
    return _rule(name, metric, labels, 1, d, statistic="Sum", comparison="GreaterThanOrEqualToThreshold", **kw)


def _age_rules(
    prefix: str, subject: str, metric: str, lbl: dict[str, str], limit: tuple[int, str], *, d: AlarmDefaults
) -> list[AlarmRule]:
    limit_s, what = limit
    out = [
        _rule(
            f"{prefix}:iterator-age-{round(ratio * 100)}pct",
            metric,
            lbl,
            ratio * limit_s,
            d,
            severity=severity,
            description=f"iterator age of {subject} above {ratio:.0%} of {what} ({limit_s} s)",
        )
        for ratio, severity in d.iterator_age_ratios
    ]
    if d.forecast:
        # Warn while there is still time to act: the configured horizon, or a quarter of the limit when that is
        # longer (iterator age grows at most a second per second, so an hour's warning on a day of retention would
        # come after the 80% alarm).
        horizon_s = max(d.forecast_horizon_s, limit_s // 4)
        out.append(
            _rule(
                f"{prefix}:data-loss-forecast",
                metric,
                lbl,
                horizon_s,
                d,
                severity="critical",
                comparison="LessThanThreshold",
                forecast=Forecast(limit_s, window_s=d.forecast_window_s),
                description=f"at the present iterator-age slope, records of {subject} reach {what} ({limit_s} s) "
                f"in less than {horizon_s} s",
            )
        )
    return out


def default_rules(
    streams: Iterable[StreamInfo],
    mappings: Iterable[MappingInfo] = (),
    functions: Iterable[str] = (),
    defaults: AlarmDefaults | None = None,
) -> list[AlarmRule]:
    """The built-in rules for these streams, mappings and functions (labels: ``stream``, ``mapping`` = the mapping
    UUID, ``function``), minus the kinds turned off and the names matching a ``defaults.disable`` pattern."""
    d = defaults or AlarmDefaults()
    if not d.enabled:
        return []
    out: list[AlarmRule] = []
    for s in streams:
        lbl, p = {"stream": s.name}, f"stream:{s.name}"
        age_metric = "shardline_stream_iterator_age_seconds"
        out += _age_rules(p, s.name, age_metric, lbl, (s.retention_s, "retention"), d=d)
        after = d.abandoned_by_stream.get(s.name, d.abandoned_after_s)
        if after:
            text = f"no record written to {s.name} for more than {after} s"
            ts = "shardline_stream_last_incoming_record_timestamp_seconds"
            out.append(_rule(f"{p}:abandoned", ts, lbl, after, d, age=True, description=text))
        out += [
            _count(f"{p}:{x}", m, lbl, d, severity=sev, description=t.format(s.name))
            for x, m, sev, on, t in _STREAM_COUNTS
            if getattr(d, on)
        ]
    maps = list(mappings)
    subjects = [f"{mp.function}@{mp.stream}" for mp in maps]
    for mp, name in zip(maps, subjects, strict=True):
        subject = name if subjects.count(name) == 1 else f"{name}#{mp.uuid[:8]}"
        lbl, p = {"mapping": mp.uuid}, f"mapping:{subject}"
        what = "retention" if mp.loss_limit_s == mp.retention_s else "MaximumRecordAgeInSeconds"
        out += _age_rules(p, subject, "shardline_esm_iterator_age_seconds", lbl, (mp.loss_limit_s, what), d=d)
        if d.poison_pill_s:
            text = f"a shard of {subject} has not moved its checkpoint for {d.poison_pill_s} s while records wait"
            stalled = "shardline_esm_checkpoint_stalled_seconds"
            out.append(
                _rule(
                    f"{p}:poison-pill",
                    stalled,
                    lbl,
                    d.poison_pill_s,
                    d,
                    severity="critical",
                    comparison="GreaterThanOrEqualToThreshold",
                    description=text,
                )
            )
        if d.on_failure_destination_stuck:
            # Any period with a record waiting: retries back off up to a minute, so a count of failed attempts
            # could miss a period while the destination is still down.
            text = f"{subject} cannot store on-failure records at its destination; the shard waits until it can"
            pending = "shardline_esm_on_failure_pending_records"
            out.append(
                _rule(f"{p}:on-failure-destination-stuck", pending, lbl, 0, d, severity="critical", description=text)
            )
        out += [
            _count(f"{p}:{x}", m, lbl, d, severity=sev, description=t.format(subject))
            for x, m, sev, on, t in _MAPPING_COUNTS
            if getattr(d, on)
        ]
    for fn in functions:
        out += [
            _count(
                f"function:{fn}:{x}",
                "shardline_function_invocations_total",
                {"function": fn, "outcome": o},
                d,
                description=t.format(fn),
            )
            for x, o, on, t in _FUNCTION_COUNTS
            if getattr(d, on)
        ]
    return [r for r in out if not any(fnmatch.fnmatchcase(r.name, pat) for pat in d.disable)]


def default_rules_for(engine: Any, project: Any = None, defaults: AlarmDefaults | None = None) -> list[AlarmRule]:
    """Built-in rules for the streams an Engine holds now and, given a runtime Project, its mappings and functions."""
    streams = [StreamInfo(name, int(st.retention_hours) * 3600) for name, st in engine.streams.items()]
    retention = {s.name: s.retention_s for s in streams}
    mappings: list[MappingInfo] = []
    functions: list[str] = []
    if project is not None:
        for m in project.mappings:
            c = m.config
            keep = retention.get(c.stream_name, 86_400)
            mappings.append(MappingInfo(c.uuid, c.function_name, c.stream_name, keep, c.maximum_record_age_s))
        functions = list(project.pools)
    return default_rules(streams, mappings, functions, defaults)


def merge_rules(builtin: Iterable[AlarmRule], declared: Iterable[AlarmRule]) -> list[AlarmRule]:
    """Declared rules replace built-in rules of the same name."""
    mine = list(declared)
    names = {r.name for r in mine}
    return [r for r in builtin if r.name not in names] + mine


# ------------------------------------------------------------------------------------------------- config
class AlarmsConfig(NamedTuple):
    rules: list[AlarmRule]
    notify: NotifyConfig
    defaults: AlarmDefaults


_RULE_KEYS = {
    "name", "metric", "labels", "dimensions", "statistic", "period", "evaluationPeriods", "datapointsToAlarm",
    "threshold", "comparison", "comparisonOperator", "treatMissingData", "severity", "description", "enabled",
    "groupBy", "namespace", "type",
}  # fmt: skip
_DEFAULT_KEYS = {
    "enabled", "iteratorAgeRetention", "forecast", "abandonedAfterHours", "poisonPillMinutes", "throttling",
    "droppedRecords", "deadLetteredRecords", "onFailureDestinationStuck", "functionErrors", "functionTimeouts",
    "period", "disable",
}  # fmt: skip
_FIELD_KEYS = {"treat_missing_data": "treatMissingData", "evaluation_periods": "evaluationPeriods",
               "datapoints_to_alarm": "datapointsToAlarm"}  # fmt: skip
# CloudWatch dimension names -> our labels, so dimensions copied from a CloudFormation alarm keep working
_DIMENSIONS = {"StreamName": "stream", "ShardId": "shard", "FunctionName": "function",
               "EventSourceMappingUUID": "mapping", "ConsumerName": "consumer"}  # fmt: skip


def parse_alarms(data: Any, path: Path) -> AlarmsConfig:
    """The ``alarms:`` section of ``path`` (its value; None when absent). Errors name the file, key and choices."""
    where = "alarms"
    if data is None:
        return AlarmsConfig([], NotifyConfig(), AlarmDefaults())
    cf = ConfigFile(path, AlarmConfigError)
    if not isinstance(data, dict):
        raise cf.fail(where, "must be a mapping with 'defaults', 'notify' and 'rules'")
    cf.check_keys(where, data, {"defaults", "notify", "rules", "definitions"})
    rules: list[AlarmRule] = []
    for key in ("rules", "definitions"):
        raw = data.get(key)
        if raw is None:
            continue
        if isinstance(raw, dict):  # serverless-plugin-aws-alerts: rule name -> definition
            items = [(f"{where}.{key}.{k}", {"name": k, **v} if isinstance(v, dict) else v) for k, v in raw.items()]
        elif isinstance(raw, list):
            items = [(f"{where}.{key}[{i}]", v) for i, v in enumerate(raw)]
        else:
            raise cf.fail(f"{where}.{key}", "must be a list of rules (or a mapping of rule name to rule)")
        for w, v in items:
            rule = _parse_rule(cf, w, v)
            if any(r.name == rule.name for r in rules):
                raise cf.fail(f"{w}.name", f"{rule.name!r} is used by another rule; names must be unique")
            rules.append(rule)
    notify = parse_notify(data.get("notify"), path, f"{where}.notify")
    return AlarmsConfig(rules, notify, _parse_defaults(cf, f"{where}.defaults", data.get("defaults")))


def _metric(cf: ConfigFile, where: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise cf.fail(where, "must be a metric name such as shardline_esm_iterator_age_seconds")
    if name in METRICS or name.startswith(CUSTOM_PREFIX):
        return name
    cw = [m.name for m in METRICS.values() if re.search(rf"(^|[\s/]){re.escape(name)}(\s|$)", m.cloudwatch)]
    hint = difflib.get_close_matches(name, list(METRICS), n=1)
    if cw:
        suffix = f" (CloudWatch's {name} is {' or '.join(cw)}, in base units)"
    else:
        suffix = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: a shardline_ metric or {CUSTOM_PREFIX}*)"
    raise cf.fail(where, f"unknown metric {name!r}{suffix}")


def _parse_rule(cf: ConfigFile, where: str, v: Any) -> AlarmRule:
    if not isinstance(v, dict):
        raise cf.fail(where, "must be a mapping with at least 'name', 'metric' and 'threshold'")
    cf.check_keys(where, v, _RULE_KEYS)
    for key in ("name", "metric", "threshold"):
        if key not in v:
            raise cf.fail(f"{where}.{key}", "is required")
    if not isinstance(v["name"], str) or not v["name"]:
        raise cf.fail(f"{where}.name", "must be a non-empty string")
    metric = _metric(cf, f"{where}.metric", v["metric"])
    if v.get("type", "static") != "static":
        raise cf.fail(f"{where}.type", f"{v['type']!r} is not supported (allowed: static)")
    threshold = v["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise cf.fail(f"{where}.threshold", f"{threshold!r} is not a number")
    group_by = [v["groupBy"]] if isinstance(v.get("groupBy"), str) else v.get("groupBy", [])
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        raise cf.fail(f"{where}.groupBy", "must be a list of label names")
    cmp_key = "comparisonOperator" if "comparisonOperator" in v else "comparison"
    statistic = str(v.get("statistic", "Sum"))
    kind = METRICS[metric].kind if metric in METRICS else "summary"
    if (statistic == "Rate" and kind != "counter") or (percentile(statistic) is not None and kind != "histogram"):
        raise cf.fail(f"{where}.statistic", f"{statistic!r} does not apply to {metric}, a {kind}")
    n = cf.integer(f"{where}.evaluationPeriods", v.get("evaluationPeriods", 1), 1, 86_400)
    try:
        return AlarmRule(
            name=v["name"],
            metric=metric,
            labels=_labels(cf, where, v, metric),
            threshold=float(threshold),
            comparison=v.get(cmp_key, "GreaterThanOrEqualToThreshold"),
            statistic=statistic,
            period_s=cf.integer(f"{where}.period", v.get("period", 60), 1, 86_400),
            evaluation_periods=n,
            datapoints_to_alarm=cf.integer(f"{where}.datapointsToAlarm", v.get("datapointsToAlarm", n), 1, n),
            treat_missing_data=v.get("treatMissingData", "missing"),
            severity=v.get("severity", "warning"),
            description=str(v.get("description", "")),
            enabled=cf.boolean(f"{where}.enabled", v.get("enabled", True)),
            group_by=tuple(group_by),
        )
    except InvalidRule as exc:
        key = cmp_key if exc.field_name == "comparison" else _FIELD_KEYS.get(exc.field_name, exc.field_name)
        raise cf.fail(f"{where}.{key}", exc.message) from None


def _labels(cf: ConfigFile, where: str, v: dict[str, Any], metric: str) -> dict[str, str]:
    key = "labels" if "labels" in v else "dimensions"
    raw = v.get(key, {})
    if isinstance(raw, list):  # CloudFormation: [{Name: ..., Value: ...}]
        pairs = [
            (d.get("Name", d.get("name")), d.get("Value", d.get("value"))) if isinstance(d, dict) else (None, None)
            for d in raw
        ]
        for i, (name, value) in enumerate(pairs):
            if not isinstance(name, str) or value is None:
                raise cf.fail(f"{where}.{key}[{i}]", "must be {Name: ..., Value: ...}")
        raw = dict(pairs)
    if not isinstance(raw, dict):
        raise cf.fail(f"{where}.{key}", "must be a mapping of label name to value")
    out = {_DIMENSIONS.get(str(k), str(k)): str(val) for k, val in raw.items()}
    known = METRICS[metric].labels if metric in METRICS else ()
    for label in out:
        if known and label not in known:
            raise cf.fail(f"{where}.{key}.{label}", f"{metric} has no such label (allowed: {', '.join(known)})")
    return out


def _parse_defaults(cf: ConfigFile, where: str, data: Any) -> AlarmDefaults:
    if data is None or isinstance(data, bool):
        return AlarmDefaults(enabled=data is not False)
    if not isinstance(data, dict):
        raise cf.fail(where, "must be a mapping (or false to turn every built-in rule off)")
    cf.check_keys(where, data, _DEFAULT_KEYS)
    base = AlarmDefaults()
    ratios = base.iterator_age_ratios
    age = data.get("iteratorAgeRetention", True)
    if isinstance(age, dict):
        cf.check_keys(f"{where}.iteratorAgeRetention", age, {"warning", "critical"})
        ratios = tuple(
            (cf.number(f"{where}.iteratorAgeRetention.{sev}", age.get(sev, r), 0.01, 1), sev) for r, sev in ratios
        )
    elif not cf.boolean(f"{where}.iteratorAgeRetention", age):
        ratios = ()
    fc = data.get("forecast", True)
    horizon, window = base.forecast_horizon_s, base.forecast_window_s
    if isinstance(fc, dict):
        cf.check_keys(f"{where}.forecast", fc, {"enabled", "horizonMinutes", "windowMinutes"})
        horizon = round(60 * cf.number(f"{where}.forecast.horizonMinutes", fc.get("horizonMinutes", 60), 1, 1e5))
        window = round(60 * cf.number(f"{where}.forecast.windowMinutes", fc.get("windowMinutes", 10), 1, 50))
        forecast = cf.boolean(f"{where}.forecast.enabled", fc.get("enabled", True))
    else:
        forecast = cf.boolean(f"{where}.forecast", fc)
    ab = data.get("abandonedAfterHours", 168)
    by_stream: dict[str, int | None] = {}
    if isinstance(ab, dict):
        cf.check_keys(f"{where}.abandonedAfterHours", ab, {"default", "streams"})
        streams = ab.get("streams") or {}
        if not isinstance(streams, dict):
            raise cf.fail(f"{where}.abandonedAfterHours.streams", "must be a mapping of stream name to hours")
        by_stream = {str(k): _hours(cf, f"{where}.abandonedAfterHours.streams.{k}", h) for k, h in streams.items()}
        ab = ab.get("default", 168)
        after = _hours(cf, f"{where}.abandonedAfterHours.default", ab)
    else:
        after = _hours(cf, f"{where}.abandonedAfterHours", ab)
    pp = data.get("poisonPillMinutes", 15)
    poison = None if pp is False else round(60 * cf.number(f"{where}.poisonPillMinutes", pp, 1, 1e5))
    disable = [data["disable"]] if isinstance(data.get("disable"), str) else data.get("disable", [])
    if not isinstance(disable, list) or not all(isinstance(p, str) for p in disable):
        raise cf.fail(f"{where}.disable", "must be a list of rule names or patterns such as 'stream:*:read-*'")
    period = cf.integer(f"{where}.period", data.get("period", 60), 1, 3600)
    if 60 % period and period % 60:
        raise cf.fail(f"{where}.period", f"{period} is not allowed (allowed: a divisor of 60 or a multiple of 60)")

    def flag(key: str) -> bool:
        return cf.boolean(f"{where}.{key}", data.get(key, True))

    return AlarmDefaults(
        enabled=flag("enabled"),
        iterator_age_ratios=ratios,
        forecast=forecast,
        forecast_horizon_s=horizon,
        forecast_window_s=window,
        abandoned_after_s=after,
        abandoned_by_stream=by_stream,
        poison_pill_s=poison,
        throttling=flag("throttling"),
        dropped_records=flag("droppedRecords"),
        dead_lettered_records=flag("deadLetteredRecords"),
        on_failure_destination_stuck=flag("onFailureDestinationStuck"),
        function_errors=flag("functionErrors"),
        function_timeouts=flag("functionTimeouts"),
        period_s=period,
        disable=tuple(disable),
    )


def _hours(cf: ConfigFile, where: str, value: Any) -> int | None:
    """Hours to seconds; false turns the rule off."""
    if value is False:
        return None
    return round(3600 * cf.number(where, value, 0.01, 87_600))
