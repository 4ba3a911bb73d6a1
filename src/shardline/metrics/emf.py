"""CloudWatch Embedded Metric Format lines in handler output, turned into ``shardline_custom_*`` metrics.

A handler (or Powertools' ``Metrics``) prints one JSON object per line:

```json
{"_aws": {"Timestamp": 1700000000000,
          "CloudWatchMetrics": [{"Namespace": "shop", "Dimensions": [["service"]],
                                 "Metrics": [{"Name": "OrdersPlaced", "Unit": "Count"}]}]},
 "service": "checkout", "OrdersPlaced": 3}
```

Each metric of each directive, for each of its dimension sets, becomes one series of the summary
``shardline_custom_orders_placed`` labelled ``namespace="shop", function="<function>", service="checkout"``;
its ``_sum`` and ``_count`` add up every value printed (a list value adds each element). Units become base units
in the name and the value (Milliseconds -> ``_seconds`` ÷ 1000, Kilobytes -> ``_bytes`` × 1024, Percent ->
``_ratio`` ÷ 100, X/Second -> ``_..._per_second``); Count and None add no suffix. Points are timed by when they are
sampled, not by the line's Timestamp. Lines that are not valid EMF are counted and otherwise ignored.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .catalog import CUSTOM_PREFIX

__all__ = ["EmfMetrics", "EmfSeries", "parse_line"]

log = logging.getLogger("shardline.metrics")

MAX_LINE_BYTES = 256 * 1024  # CloudWatch Logs' event size limit
_LABEL_OK = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = {"namespace", "function", "le", "quantile"}

_SCALES = {
    "seconds": ("seconds", 1.0),
    "milliseconds": ("seconds", 1e-3),
    "microseconds": ("seconds", 1e-6),
    "bytes": ("bytes", 1.0),
    "kilobytes": ("bytes", 1024.0),
    "megabytes": ("bytes", 1024.0**2),
    "gigabytes": ("bytes", 1024.0**3),
    "terabytes": ("bytes", 1024.0**4),
    "bits": ("bits", 1.0),
    "kilobits": ("bits", 1e3),
    "megabits": ("bits", 1e6),
    "gigabits": ("bits", 1e9),
    "terabits": ("bits", 1e12),
    "percent": ("ratio", 0.01),
    "count": ("", 1.0),
    "none": ("", 1.0),
}


@dataclass(frozen=True, slots=True)
class EmfSeries:
    """One datapoint batch: the Prometheus family name, its labels (sorted), the unit it came in, the values in
    base units."""

    family: str
    labels: tuple[tuple[str, str], ...]
    unit: str
    values: tuple[float, ...]


def metric_name(name: str, unit: str | None) -> tuple[str, float]:
    """The family name for an EMF metric name and unit, and the factor that turns its values into base units."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    snake = re.sub(r"[^a-z0-9]+", "_", snake).strip("_") or "metric"
    base, _, per = (unit or "None").lower().partition("/")
    suffix, scale = _SCALES.get(base, ("", 1.0))
    parts = [snake]
    if suffix and not snake.endswith(suffix):
        parts.append(suffix)
    if per == "second":
        parts.append("per_second")
    return CUSTOM_PREFIX + "_".join(parts), scale


def _label_name(dim: str) -> str:
    name = dim if _LABEL_OK.match(dim) else re.sub(r"[^a-zA-Z0-9_]", "_", dim)
    name = name.lstrip("_") or "dimension"
    if name[0].isdigit() or name in _RESERVED:
        name = f"dimension_{name}"
    return name


def _numbers(value: Any) -> tuple[float, ...] | None:
    items = value if isinstance(value, list) else [value]
    out: list[float] = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        f = float(v)
        if not math.isfinite(f):
            return None
        out.append(f)
    return tuple(out)


def parse_line(line: str, function: str) -> list[EmfSeries] | None:
    """The series one line contributes, or None when the line is not an EMF object (or not a valid one)."""
    text = line.strip()
    if not text.startswith("{") or '"_aws"' not in text or len(text) > MAX_LINE_BYTES:
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    aws = doc.get("_aws")
    if not isinstance(aws, dict):
        return None
    directives = aws.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return None
    out: list[EmfSeries] = []
    for d in directives:
        if not isinstance(d, dict) or not isinstance(d.get("Namespace"), str) or not isinstance(d.get("Metrics"), list):
            return None
        dimsets = d.get("Dimensions", [[]])
        if not isinstance(dimsets, list) or not all(
            isinstance(ds, list) and all(isinstance(x, str) for x in ds) for ds in dimsets
        ):
            return None
        label_sets: list[tuple[tuple[str, str], ...]] = []
        for ds in dimsets or [[]]:
            if any(dim not in doc or isinstance(doc[dim], dict | list) for dim in ds):
                return None  # a dimension must have a scalar value in the root object
            labels = {"namespace": d["Namespace"], "function": function}
            for dim in ds:
                labels[_label_name(dim)] = str(doc[dim])
            label_sets.append(tuple(sorted(labels.items())))
        for m in d["Metrics"]:
            if not isinstance(m, dict) or not isinstance(m.get("Name"), str):
                return None
            name = m["Name"]
            values = _numbers(doc.get(name))
            if values is None:
                return None
            unit = m.get("Unit") if isinstance(m.get("Unit"), str) else "None"
            family, scale = metric_name(name, unit)
            scaled = tuple(v * scale for v in values)
            for labels_t in label_sets:
                out.append(EmfSeries(family, labels_t, unit or "None", scaled))
    return out


class EmfMetrics:
    """Running sums and counts of every custom series seen, bounded to ``max_series`` series."""

    def __init__(self, max_series: int = 500) -> None:
        self.max_series = max_series
        self.ok_lines = 0
        self.invalid_lines = 0
        self.dropped_series = 0
        self.units: dict[str, str] = {}  # family -> the EMF unit it was first declared with
        self._data: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = {}
        self._count = 0

    def feed(self, function: str, logs: str) -> int:
        """Take the EMF lines out of one invocation's output; returns how many were valid."""
        if '"_aws"' not in logs:
            return 0
        found = 0
        for line in logs.splitlines():
            if '"_aws"' not in line:
                continue
            series = parse_line(line, function)
            if series is None:
                self.invalid_lines += 1
                continue
            self.ok_lines += 1
            found += 1
            for s in series:
                self._add(s)
        return found

    def _add(self, s: EmfSeries) -> None:
        fam = self._data.get(s.family)
        if fam is None:
            if self._count >= self.max_series:
                self._drop(s)
                return
            fam = self._data[s.family] = {}
            self.units[s.family] = s.unit
        acc = fam.get(s.labels)
        if acc is None:
            if self._count >= self.max_series:
                self._drop(s)
                return
            acc = fam[s.labels] = [0.0, 0.0]
            self._count += 1
        acc[0] += sum(s.values)
        acc[1] += len(s.values)

    def _drop(self, s: EmfSeries) -> None:
        if not self.dropped_series:
            log.warning("metrics: %d custom series kept, the limit; %s%s is not", self.max_series, s.family, s.labels)
        self.dropped_series += 1

    def families(self) -> Iterator[tuple[str, dict[tuple[tuple[str, str], ...], list[float]]]]:
        """(family, {labels: [sum, count]}) for every custom summary, sorted by family."""
        for name in sorted(self._data):
            yield name, self._data[name]
