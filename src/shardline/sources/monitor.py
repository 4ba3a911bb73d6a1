"""Watching running sources: snapshot progress, rows/s per table, how far behind the database each source is, and
an alarm when it falls behind or when the binary log it needs is gone.

Every ``interval_s`` the monitor samples each source's ``SourceStats`` (rows per table since the last sample, the
newest event's commit time) and asks the server for its binary logs (``SHOW BINARY LOGS``: how many bytes the
checkpoint is behind the server's end). It logs one line per source, a text progress bar while the snapshot
runs, and raises the ``falling behind`` alarm (a WARNING line, then one INFO line when it clears) when the lag
stays above ``lag_alarm_s`` for two samples in a row. A checkpoint whose binary-log file the server no longer has
raises the ``binlog purged`` alarm: the source cannot resume there and needs a new snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock
from .envelope import Position
from .stats import SourceStats

__all__ = ["SourceHealth", "SourceMonitor", "at_risk", "bytes_behind", "progress_bar"]

log = logging.getLogger("shardline.sources")


def progress_bar(done: int, total: int, width: int = 30) -> str:
    frac = 1.0 if total <= 0 else min(1.0, done / total)
    filled = int(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {frac * 100:5.1f}%"


def bytes_behind(logs: list[tuple[str, int]], at: Position) -> int | None:
    """Bytes of binary log after ``at`` on a server with these (file, size) logs; None if ``at``'s file is gone."""
    names = [n for n, _ in logs]
    if at.file not in names:
        return None
    i = names.index(at.file)
    return max(0, logs[i][1] - at.pos) + sum(size for _, size in logs[i + 1 :])


def at_risk(logs: list[tuple[str, int]], at: Position) -> bool:
    """Whether ``at`` is in the oldest binary log the server keeps while a newer one is being written: the next
    purge (``binlog_expire_logs_seconds``, ``expire_logs_days``, ``PURGE BINARY LOGS``) removes it first."""
    return len(logs) > 1 and logs[0][0] == at.file


@dataclass
class SourceHealth:
    """One source's figures at the last sample (what the log line and the alarms are made from)."""

    rows_per_s: dict[str, float] = field(default_factory=dict)
    lag_ms: int = 0
    bytes_behind: int | None = 0
    at_risk: bool = False
    behind_samples: int = 0
    falling_behind: bool = False
    purged: bool = False
    _last_rows: dict[str, int] = field(default_factory=dict)
    _last_ms: int | None = None


class SourceMonitor:
    def __init__(
        self,
        stats: Callable[[], list[SourceStats]],
        binary_logs: Callable[[str], list[tuple[str, int]] | None],
        clock: Clock,
        *,
        interval_s: float = 5.0,
        lag_alarm_s: float = 60.0,
    ) -> None:
        self.stats = stats
        self.binary_logs = binary_logs  # source name -> the server's (file, size) list (None: cannot ask now)
        self.clock = clock
        self.interval_s = interval_s
        self.lag_alarm_ms = int(lag_alarm_s * 1000)
        self.health: dict[str, SourceHealth] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            logs = {s.name: await asyncio.to_thread(self.binary_logs, s.name) for s in self.stats()}
            for line, level in self.sample(logs):
                log.log(level, "%s", line)

    def sample(self, logs: dict[str, Any]) -> list[tuple[str, int]]:
        """Update every source's health from its stats and the server's logs; return the lines to log."""
        now = self.clock.now_ms()
        out: list[tuple[str, int]] = []
        for st in self.stats():
            h = self.health.setdefault(st.name, SourceHealth())
            if h._last_ms is not None and now > h._last_ms:
                secs = (now - h._last_ms) / 1000
                h.rows_per_s = {
                    t: (n - h._last_rows.get(t, 0)) / secs for t, n in st.rows_total.items()
                }  # fmt: skip
            h._last_rows, h._last_ms = dict(st.rows_total), now
            h.lag_ms = st.lag_ms()
            server_logs = logs.get(st.name)
            if st.checkpoint is not None and server_logs is not None:
                h.bytes_behind = bytes_behind(server_logs, st.checkpoint)
                h.at_risk = at_risk(server_logs, st.checkpoint)
                was_purged, h.purged = h.purged, h.bytes_behind is None  # (a source resumed by GTID moves on)
                if h.purged and not was_purged:
                    out.append((
                        f"ALARM source {st.name}: binlog purged: the server no longer has {st.checkpoint.file}, "
                        "where the source's checkpoint is; remove its checkpoint file to start over with a snapshot",
                        logging.ERROR,
                    ))  # fmt: skip
            h.behind_samples = h.behind_samples + 1 if h.lag_ms > self.lag_alarm_ms else 0
            if h.behind_samples >= 2 and not h.falling_behind:
                h.falling_behind = True
                out.append((
                    f"ALARM source {st.name}: falling behind: {h.lag_ms / 1000:.0f}s behind the database "
                    f"(alarm above {self.lag_alarm_ms / 1000:.0f}s)",
                    logging.WARNING,
                ))  # fmt: skip
            elif h.behind_samples == 0 and h.falling_behind:
                h.falling_behind = False
                out.append((f"OK source {st.name}: caught up with the database", logging.INFO))
            out.append((self.line(st, h), logging.INFO))
        return out

    def line(self, st: SourceStats, h: SourceHealth) -> str:
        if st.snapshot_running:
            done = sum(st.snapshot_rows.values())
            total = sum(max(st.snapshot_estimates.get(t, 0), st.snapshot_rows.get(t, 0)) for t in st.snapshot_tables)
            return f"source {st.name}: snapshot {progress_bar(done, total)} {done:,}/~{total:,} rows"
        rates = ", ".join(f"{t} {r:,.0f}/s" for t, r in sorted(h.rows_per_s.items()) if r > 0) or "idle"
        behind = "" if h.bytes_behind is None else f", {h.bytes_behind:,} binlog bytes behind"
        return f"source {st.name}: {rates}; lag {h.lag_ms / 1000:.1f}s{behind}"
