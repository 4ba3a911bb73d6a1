"""Change-data-capture sources in the metrics: their families, their built-in alarm rules, and the narrow interface
the monitor reads them through (``SourcesLike``; ``shardline.sources.service.Sources`` provides it).

Families (labels ``source``, plus ``table`` or ``stream`` where they apply):

- ``shardline_source_rows_total``: rows put on the stream per table (snapshot and binary log), a counter;
- ``shardline_source_snapshot_rows`` and ``shardline_source_snapshot_rows_estimated``: the initial snapshot's rows
  done and the server's estimate of the total per table (never below the rows done), while and after it runs;
- ``shardline_source_snapshot_running``: 1 while the snapshot runs;
- ``shardline_source_lag_seconds``: how far behind the database the source is (the age of the newest event it has
  seen, 0 when it has caught up);
- ``shardline_source_binlog_bytes_behind``: binary log on the server after the source's checkpoint;
- ``shardline_source_binlog_at_risk``: 1 when the checkpoint is in the oldest binary log the server keeps while a
  newer one is written, so the next purge drops the position the source needs;
- ``shardline_source_binlog_purged``: 1 when the server no longer has the checkpoint's binary log.

Built-in rules per source: ``source:<name>:falling-behind`` (the lag stayed above the source's ``lag_alarm_s``
for a whole period), ``source:<name>:binlog-at-risk`` (warning) and ``source:<name>:binlog-purged`` (critical).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .alarms import AlarmDefaults, AlarmRule
from .alarms.builtin import builtin_rule, enabled_rules
from .catalog import Metric
from .collect import Family, FamilyHook, Snapshot

__all__ = [
    "SOURCE_METRICS",
    "SourceFiguresLike",
    "SourcesLike",
    "source_families",
    "source_hook",
    "source_overview",
    "source_rules",
]


class SourceFiguresLike(Protocol):
    """One source's figures (``shardline.sources.stats.SourceFigures``)."""

    @property
    def name(self) -> str: ...
    @property
    def stream(self) -> str: ...
    @property
    def rows_total(self) -> Mapping[str, int]: ...
    @property
    def snapshot_rows(self) -> Mapping[str, int]: ...
    @property
    def snapshot_estimates(self) -> Mapping[str, int]: ...
    @property
    def snapshot_running(self) -> bool: ...
    @property
    def lag_seconds(self) -> float: ...
    @property
    def binlog_bytes_behind(self) -> int | None: ...
    @property
    def binlog_at_risk(self) -> bool: ...
    @property
    def binlog_purged(self) -> bool: ...


@runtime_checkable
class SourcesLike(Protocol):
    """What the monitor reads from a process's sources."""

    @property
    def lag_alarm_s(self) -> float: ...

    def names(self) -> list[str]: ...

    def figures(self) -> Sequence[SourceFiguresLike]: ...


_SRC = ("source",)
_NA = "n/a (change data capture from a MySQL or MariaDB binary log)"
SOURCE_METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "shardline_source_rows_total",
            "counter",
            "rows",
            "Rows a change-data-capture source put on its stream, per table (snapshot and binary log).",
            _NA,
            ("source", "stream", "table"),
        ),
        Metric(
            "shardline_source_snapshot_rows",
            "gauge",
            "rows",
            "Rows of a table the source's initial snapshot has put on the stream.",
            _NA,
            ("source", "table"),
        ),
        Metric(
            "shardline_source_snapshot_rows_estimated",
            "gauge",
            "rows",
            "The server's estimate of a table's rows for the snapshot (never below the rows done).",
            _NA,
            ("source", "table"),
        ),
        Metric("shardline_source_snapshot_running", "gauge", "1", "1 while the source's snapshot runs.", _NA, _SRC),
        Metric(
            "shardline_source_lag_seconds",
            "gauge",
            "seconds",
            "How far behind the database the source is: the age of the newest change it has seen, 0 when caught up.",
            _NA,
            _SRC,
        ),
        Metric(
            "shardline_source_binlog_bytes_behind",
            "gauge",
            "bytes",
            "Binary log the server has written after the source's checkpoint.",
            _NA,
            _SRC,
        ),
        Metric(
            "shardline_source_binlog_at_risk",
            "gauge",
            "1",
            "1 when the source's checkpoint is in the oldest binary log the server keeps (the next purge drops it).",
            _NA,
            _SRC,
        ),
        Metric(
            "shardline_source_binlog_purged",
            "gauge",
            "1",
            "1 when the server no longer has the binary log of the source's checkpoint (it needs a new snapshot).",
            _NA,
            _SRC,
        ),
    )
}


def source_families(figures: Iterable[SourceFiguresLike]) -> list[Family]:
    fams = {name: Family(m) for name, m in SOURCE_METRICS.items()}

    def add(name: str, value: float, **labels: str) -> None:
        fams[name].samples.append((tuple(sorted(labels.items())), float(value)))

    for f in figures:
        for table, n in sorted(f.rows_total.items()):
            add("shardline_source_rows_total", n, source=f.name, stream=f.stream, table=table)
        for table, n in sorted(f.snapshot_rows.items()):
            add("shardline_source_snapshot_rows", n, source=f.name, table=table)
            estimate = max(n, f.snapshot_estimates.get(table, 0))
            add("shardline_source_snapshot_rows_estimated", estimate, source=f.name, table=table)
        add("shardline_source_snapshot_running", f.snapshot_running, source=f.name)
        add("shardline_source_lag_seconds", f.lag_seconds, source=f.name)
        if f.binlog_bytes_behind is not None:
            add("shardline_source_binlog_bytes_behind", f.binlog_bytes_behind, source=f.name)
        add("shardline_source_binlog_at_risk", f.binlog_at_risk, source=f.name)
        add("shardline_source_binlog_purged", f.binlog_purged, source=f.name)
    return [f for f in fams.values() if f.samples]


def source_hook(sources: SourcesLike) -> FamilyHook:
    """A collector hook (``Monitor(hooks=...)``) sampling these sources' families."""
    return FamilyHook(tuple(SOURCE_METRICS.values()), lambda now_ms: source_families(sources.figures()))


def source_rules(names: Iterable[str], lag_alarm_s: float, defaults: AlarmDefaults | None = None) -> list[AlarmRule]:
    """The built-in rules for these sources (label ``source``), minus those a ``defaults.disable`` pattern names."""
    d = defaults or AlarmDefaults()
    out: list[AlarmRule] = []
    for name in names:
        lbl, p = {"source": name}, f"source:{name}"
        out += [
            builtin_rule(
                f"{p}:falling-behind",
                "shardline_source_lag_seconds",
                lbl,
                lag_alarm_s,
                d,
                statistic="Minimum",
                description=f"source {name} stayed more than {lag_alarm_s:g} s behind the database for a period",
            ),
            builtin_rule(
                f"{p}:binlog-at-risk",
                "shardline_source_binlog_at_risk",
                lbl,
                1,
                d,
                comparison="GreaterThanOrEqualToThreshold",
                description=f"the checkpoint of source {name} is in the oldest binary log the server keeps: "
                "the next purge drops the position it needs",
            ),
            builtin_rule(
                f"{p}:binlog-purged",
                "shardline_source_binlog_purged",
                lbl,
                1,
                d,
                comparison="GreaterThanOrEqualToThreshold",
                severity="critical",
                description=f"the server no longer has the binary log of source {name}'s checkpoint: "
                "it cannot resume there and needs a new snapshot",
            ),
        ]
    return enabled_rules(out, d)


def source_overview(snap: Snapshot) -> list[dict[str, Any]]:
    """The dashboard's sources (``/api/overview`` ``sources``), from the snapshot's source families."""
    by: dict[str, dict[str, Any]] = {}

    def entry(labels: tuple[tuple[str, str], ...]) -> tuple[dict[str, Any], dict[str, str]]:
        lb = dict(labels)
        src = by.setdefault(lb["source"], {"name": lb["source"], "tables": {}})
        return src, lb

    for fam in snap.families:
        name = fam.metric.name
        if name not in SOURCE_METRICS:
            continue
        for labels, value in fam.samples:
            src, lb = entry(labels)
            if "table" in lb:
                table = src["tables"].setdefault(lb["table"], {"name": lb["table"]})
                table[name.removeprefix("shardline_source_")] = value
                if "stream" in lb:
                    src["stream"] = lb["stream"]
            else:
                src[name.removeprefix("shardline_source_")] = value
    out = []
    for src in sorted(by.values(), key=lambda s: str(s["name"])):
        src["tables"] = sorted(src["tables"].values(), key=lambda t: str(t["name"]))
        out.append(src)
    return out
