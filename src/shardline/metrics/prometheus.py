"""The Prometheus text exposition format (version 0.0.4) of a Snapshot.

Each family gets ``# HELP`` (its meaning and CloudWatch equivalent, from the catalog) and ``# TYPE``; histograms
get cumulative ``_bucket{le=...}`` series ending in ``le="+Inf"``, then ``_sum`` and ``_count``; summaries (custom
EMF metrics) get ``_sum`` and ``_count``.
"""

from __future__ import annotations

import itertools

from .catalog import help_text
from .collect import Labels, Snapshot, format_float

__all__ = ["CONTENT_TYPE", "escape_help", "escape_label_value", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = [*labels, extra] if extra is not None else labels
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs) + "}"


def render(snapshot: Snapshot) -> bytes:
    lines: list[str] = []
    add = lines.append
    for f in snapshot.families:
        m = f.metric
        name = m.name
        add(f"# HELP {name} {escape_help(help_text(m))}")
        add(f"# TYPE {name} {m.kind}")
        for labels, value in f.samples:
            add(f"{name}{_labels(labels)} {format_float(value)}")
        for labels, h in f.histograms:
            for bound, c in zip(itertools.chain(h.bounds, (float("inf"),)), h.cumulative, strict=True):
                add(f"{name}_bucket{_labels(labels, ('le', format_float(bound)))} {format_float(c)}")
            add(f"{name}_sum{_labels(labels)} {format_float(h.total)}")
            add(f"{name}_count{_labels(labels)} {format_float(h.count)}")
        for labels, total, count in f.summaries:
            add(f"{name}_sum{_labels(labels)} {format_float(total)}")
            add(f"{name}_count{_labels(labels)} {format_float(count)}")
    add("")
    return "\n".join(lines).encode()
