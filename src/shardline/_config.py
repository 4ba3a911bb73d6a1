"""The checks every configuration section shares (``shardline.yml``'s streams and functions, its ``alarms:``), so an
error reads the same wherever it is found: ``<file>: <key path>: <what is wrong> (allowed: <what is allowed>)``.

A leaf: the runtime's project loader and the monitoring layer's alarm parser both use it, and neither imports the
other for it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "ConfigFile"]


class ConfigError(ValueError):
    """An invalid project file. The message names the file, the key and what is allowed."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """Checks of the values read from ``path``; each failure is an ``error`` (a ConfigError) naming the file, the key
    path ``where`` ('' for the top of the file) and what is allowed."""

    path: Path
    error: type[ConfigError] = ConfigError

    def fail(self, where: str, message: str) -> ConfigError:
        return self.error(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def check_keys(self, where: str, data: Mapping[str, Any], allowed: Collection[str]) -> None:
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else f"; allowed: {', '.join(sorted(allowed))}"
                raise self.fail(f"{where}.{key}" if where else str(key), f"unknown key{suffix}")

    def entry(
        self,
        where: str,
        name: Any,
        spec: Any,
        *,
        pattern: re.Pattern[str],
        naming: str,
        shape: str,
        keys: Collection[str],
    ) -> dict[str, Any]:
        """The settings of one named entry of a section (a stream, a function, a source) at ``where``: its name
        matches ``pattern`` (else the error says ``naming``), and its settings are a mapping (else ``shape``) of
        ``keys`` only."""
        if not pattern.match(str(name)):
            raise self.fail(where, naming)
        if not isinstance(spec, dict):
            raise self.fail(where, shape)
        self.check_keys(where, spec, keys)
        return spec

    def number(self, where: str, value: Any, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{value!r} is not a number (allowed: {_bounds(lo, hi)})")
        return float(self._within(where, value, lo, hi))

    def integer(self, where: str, value: Any, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"{value!r} is not an integer (allowed: {_bounds(lo, hi)})")
        return int(self._within(where, value, lo, hi))

    def boolean(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"{value!r} is not allowed (allowed: true, false)")
        return value

    def _within(self, where: str, value: float, lo: float, hi: float) -> float:
        if not lo <= value <= hi:
            raise self.fail(where, f"{value!r} is out of range (allowed: {_bounds(lo, hi)})")
        return value


def _bounds(lo: float, hi: float) -> str:
    # an integer bound exactly as written (:g would turn 1000000 into 1e+06), a fractional one in :g's short form
    return "..".join(str(b) if isinstance(b, int) else f"{b:g}" for b in (lo, hi))
