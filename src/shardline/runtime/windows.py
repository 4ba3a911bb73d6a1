"""Tumbling windows (spec §3.8): one open window per shard, its state, and the records it holds.

Records handled inside a window settle only when the window's final invocation succeeds, so the checkpoint never
passes a record whose window state could still be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .event import iso_seconds
from .settling import Entry

__all__ = ["MAX_WINDOW_STATE_BYTES", "Window"]

MAX_WINDOW_STATE_BYTES = 1024 * 1024


@dataclass
class Window:
    """An open tumbling window of one shard: its state, and the records that only settle when it closes."""

    start_ms: int
    end_ms: int
    state: Any = field(default_factory=dict)
    held: list[Entry] = field(default_factory=list)
    terminated_early: bool = False

    @classmethod
    def of(cls, arrival_ms: int, tumbling_ms: int) -> Window:
        """The window a record arriving at ``arrival_ms`` belongs to (windows align to the Unix epoch)."""
        start = arrival_ms // tumbling_ms * tumbling_ms
        return cls(start, start + tumbling_ms)

    def holds(self, arrival_ms: int) -> bool:
        return self.start_ms <= arrival_ms < self.end_ms

    def over(self, next_arrival_ms: int | None, *, fetch_done: bool, now_ms: int, batching_window_s: int) -> bool:
        """A window closes when a later window's record arrives, the shard ends, or it sits idle past its end."""
        if next_arrival_ms is not None:
            return not self.holds(next_arrival_ms)
        if fetch_done:
            return True
        return now_ms >= self.end_ms + batching_window_s * 1000

    def handled(self, entries: list[Entry], state: Any) -> None:
        """``entries`` were handled and the function returned ``state``: hold them until the window closes. A state
        over 1 MB ends the window early."""
        self.held.extend(entries)
        self.state = state
        if len(orjson.dumps(state)) > MAX_WINDOW_STATE_BYTES:
            self.terminated_early = True

    def extra(self, shard_id: str, stream_arn: str, *, final: bool) -> dict[str, Any]:
        return {
            # AWS quirk: the window bounds carry whole seconds (2020-12-09T07:04:00Z), unlike the millisecond
            # timestamps of the on-failure record.
            "window": {"start": iso_seconds(self.start_ms), "end": iso_seconds(self.end_ms)},
            "state": self.state if self.state is not None else {},
            "shardId": shard_id,
            "eventSourceARN": stream_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": final and self.terminated_early,
        }
