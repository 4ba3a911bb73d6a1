"""The statistics a query or an alarm may ask of a series, in CloudWatch's names: the six of ``STATS`` and a
percentile ``pNN`` (``p50``, ``p99.9``, ``p100``), which only a histogram can answer. One parser for the
percentile, so the store, the query API and the alarm rules accept the same spellings."""

from __future__ import annotations

import re

__all__ = ["STATS", "percentile"]

STATS = ("Average", "Maximum", "Minimum", "Sum", "SampleCount", "Rate")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


def percentile(stat: str) -> float | None:
    """The percentile ``stat`` names (99.9 for ``p99.9``), or None when it names none."""
    match = _PERCENTILE.match(stat)
    return None if match is None else float(match.group(1))
