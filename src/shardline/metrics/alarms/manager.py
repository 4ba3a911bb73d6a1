"""The alarm manager: evaluates every rule once per completed period, keeps each alarm's state and the history of
its transitions, and delivers them to the notifiers.

States, their history and each notifier's delivery cursor live in ``state_path`` (JSON, replaced atomically), so
after a restart an alarm that is still in ALARM is not announced again and no transition is delivered twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._fsutil import atomic_write
from ...clock import Clock
from ..notify import Notifier
from ..series import SeriesStore
from .forecast import forecast_points
from .rules import EXTRA_PERIODS, INSUFFICIENT_DATA, AlarmRule, AlarmState, Point, decide, metric_points, reason

__all__ = ["AlarmManager", "Transition"]

log = logging.getLogger("shardline.alarms")

_MAX_BACKOFF_S = 300.0


def _points(rule: AlarmRule, store: SeriesStore, end_ms: int, st: AlarmState) -> list[Point]:
    """The datapoints of the evaluation range that ends at ``end_ms``, oldest first."""
    slots = rule.evaluation_periods + EXTRA_PERIODS
    start_ms = end_ms - slots * rule.period_s * 1000
    if rule.forecast is not None:
        return forecast_points(rule, rule.forecast, store, start_ms, slots)
    return metric_points(rule, store, start_ms, slots, st)


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
class _Retry:
    attempts: int
    next_ms: int


class AlarmManager:
    """Evaluates every rule once per completed period, keeps transitions and delivers them to the notifiers."""

    def __init__(
        self,
        store: SeriesStore,
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
        self._alarms: dict[str, AlarmState] = {}
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
            name: self._alarms.get(name) or AlarmState(INSUFFICIENT_DATA, "Unchecked: initial alarm creation", now, now)
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
                str(name): AlarmState(s["state"], s["reason"], int(s["since_ms"]), now, -1, s["value"])
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
            why = reason(rule, points, new)
            t = Transition(self._next_seq, rule.name, st.state, new, why, now_ms, rule, st.value)
            self._next_seq += 1
            st.state, st.reason, st.since_ms = new, why, now_ms
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
