"""The built-in rules that warn before records are lost: per stream, per event source mapping and per function,
derived from what the engine and the project hold (``AlarmDefaults`` turns them on and off: ``alarms.defaults``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .rules import AlarmRule, Forecast

if TYPE_CHECKING:
    from ...engine import Engine

__all__ = [
    "AlarmDefaults",
    "MappingInfo",
    "StreamInfo",
    "builtin_rule",
    "default_rules",
    "default_rules_for",
    "enabled_rules",
    "merge_rules",
    "storage_rules",
]


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
    storage: bool = True
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
# (name suffix, state of shardline_storage_state, description): the data directory refuses writes
_STORAGE_STATES = (
    ("fsync-failed", "failed", "an fsync in the data directory failed: writes are refused until the server is "
     "restarted (the restart replays the journal; see /health)"),
    ("disk-full", "disk_full", "the data directory's disk is full: writes are refused until space is freed"),
)  # fmt: skip
_FUNCTION_COUNTS = (
    ("errors", "error", "function_errors", "invocations of {} ended in an error"),
    ("timeouts", "timeout", "function_timeouts", "invocations of {} timed out"),
)


def builtin_rule(
    name: str, metric: str, labels: dict[str, str], threshold: float, d: AlarmDefaults, **kw: Any
) -> AlarmRule:
    """A built-in rule: one period of ``d.period_s``, and no data is good news (nothing read, nothing failed)."""
    kw.setdefault("statistic", "Maximum")
    kw.setdefault("comparison", "GreaterThanThreshold")
    return AlarmRule(
        name, metric, threshold, period_s=d.period_s, treat_missing_data="notBreaching", labels=labels, **kw
    )


def _count(name: str, metric: str, labels: dict[str, str], d: AlarmDefaults, **kw: Any) -> AlarmRule:
    return builtin_rule(name, metric, labels, 1, d, statistic="Sum", comparison="GreaterThanOrEqualToThreshold", **kw)


def _age_rules(
    prefix: str, subject: str, metric: str, lbl: dict[str, str], limit: tuple[int, str], *, d: AlarmDefaults
) -> list[AlarmRule]:
    limit_s, what = limit
    out = [
        builtin_rule(
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
            builtin_rule(
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
            out.append(builtin_rule(f"{p}:abandoned", ts, lbl, after, d, age=True, description=text))
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
                builtin_rule(
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
                builtin_rule(
                    f"{p}:on-failure-destination-stuck", pending, lbl, 0, d, severity="critical", description=text
                )
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
    return enabled_rules(out, d)


def storage_rules(defaults: AlarmDefaults | None = None) -> list[AlarmRule]:
    """The built-in rules on the engine's data directory: any period in which it refused writes (a failed fsync, a
    full disk) is critical, since every put fails until someone acts."""
    d = defaults or AlarmDefaults()
    if not d.storage:
        return []
    storage = [
        builtin_rule(f"storage:{x}", "shardline_storage_state", {"state": st}, 0, d, severity="critical", description=t)
        for x, st, t in _STORAGE_STATES
    ]
    return enabled_rules(storage, d)


def enabled_rules(rules: Iterable[AlarmRule], d: AlarmDefaults) -> list[AlarmRule]:
    """The built-in ``rules`` that ``d`` leaves on: none when built-in rules are off, else those no ``d.disable``
    pattern names."""
    if not d.enabled:
        return []
    return [r for r in rules if not any(fnmatch.fnmatchcase(r.name, pat) for pat in d.disable)]


def default_rules_for(engine: Engine, project: Any = None, defaults: AlarmDefaults | None = None) -> list[AlarmRule]:
    """Built-in rules for the Engine's data directory and the streams it holds now and, given a runtime Project, its
    mappings and functions."""
    streams = [StreamInfo(st.name, st.retention_hours * 3600) for st in engine.view.streams()]
    retention = {s.name: s.retention_s for s in streams}
    mappings: list[MappingInfo] = []
    functions: list[str] = []
    if project is not None:
        for m in project.mappings:
            c = m.config
            keep = retention.get(c.stream_name, 86_400)
            mappings.append(MappingInfo(c.uuid, c.function_name, c.stream_name, keep, c.maximum_record_age_s))
        functions = list(project.pools)
    return storage_rules(defaults) + default_rules(streams, mappings, functions, defaults)


def merge_rules(builtin: Iterable[AlarmRule], declared: Iterable[AlarmRule]) -> list[AlarmRule]:
    """Declared rules replace built-in rules of the same name."""
    mine = list(declared)
    names = {r.name for r in mine}
    return [r for r in builtin if r.name not in names] + mine
