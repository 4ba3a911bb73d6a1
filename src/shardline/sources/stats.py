"""What a running source reports: rows per table, snapshot progress, and how far behind the database it is."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..clock import Clock
from .envelope import Position

__all__ = ["SourceFigures", "SourceStats"]


@dataclass
class SourceStats:
    name: str
    stream: str
    clock: Clock
    rows_total: dict[str, int] = field(default_factory=dict)  # table -> rows put (snapshot and binary log)
    snapshot_rows: dict[str, int] = field(default_factory=dict)
    snapshot_tables: list[str] = field(default_factory=list)
    snapshot_estimates: dict[str, int] = field(default_factory=dict)  # table -> the server's row estimate
    snapshot_running: bool = False
    snapshot_done: bool = False
    checkpoint: Position | None = None
    last_event_ms: int | None = None  # the newest event's commit time in the database
    last_seen_ms: int | None = None  # when that event (or an idle check) was seen here
    caught_up: bool = False

    def snapshot_started(self, done_rows: dict[str, int], tables: list[str]) -> None:
        self.snapshot_rows = {t: done_rows.get(t, 0) for t in tables}
        self.snapshot_tables = tables
        self.snapshot_running = True

    def snapshot_finished(self) -> None:
        self.snapshot_running = False
        self.snapshot_done = True

    def rows(self, table: str, n: int, *, snapshot: bool) -> None:
        self.rows_total[table] = self.rows_total.get(table, 0) + n
        if snapshot:
            self.snapshot_rows[table] = self.snapshot_rows.get(table, 0) + n

    def event(self, event_ms: int) -> None:
        self.last_event_ms = event_ms
        self.last_seen_ms = self.clock.now_ms()
        self.caught_up = False

    def idle(self) -> None:
        self.caught_up = True
        self.last_seen_ms = self.clock.now_ms()

    def checkpointed(self, position: Position) -> None:
        self.checkpoint = position

    def lag_ms(self) -> int:
        """How far behind the database the source is: 0 when caught up, else the age of the newest event seen."""
        if self.caught_up or self.last_event_ms is None:
            return 0
        return max(0, self.clock.now_ms() - self.last_event_ms)


@dataclass(frozen=True)
class SourceFigures:
    """One source's figures for the metrics layer (read through its ``SourcesLike`` protocol)."""

    name: str
    stream: str
    rows_total: dict[str, int]  # table -> rows put since the process started (snapshot and binary log)
    snapshot_rows: dict[str, int]  # table -> rows of the snapshot done (resumed snapshots count the earlier part)
    snapshot_estimates: dict[str, int]  # table -> the server's estimate, never below the rows done
    snapshot_running: bool
    snapshot_done: bool
    lag_seconds: float  # how far behind the database: the newest event's age, 0 when caught up
    binlog_bytes_behind: int | None  # binary log after the checkpoint on the server (None: unknown or purged)
    binlog_at_risk: bool  # the checkpoint is in the oldest binary log the server keeps: the next purge drops it
    binlog_purged: bool  # the server no longer has the checkpoint's binary log
