"""Which fetched records are settled, and so where a shard's checkpoint is."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..models import Record

__all__ = ["Entry", "Settler"]


@dataclass(slots=True)
class Entry:
    record: Record
    body: bytes | None  # serialized event record; None when filtered out
    settled: bool = False


class Settler:
    """Tracks fetched records in order; the checkpoint is the last record of the settled prefix."""

    def __init__(self) -> None:
        self._pending: deque[Entry] = deque()
        self.checkpoint: str | None = None
        self.dirty = False

    def fetched(self, entry: Entry) -> None:
        self._pending.append(entry)

    def settle(self, entries: list[Entry]) -> None:
        for e in entries:
            e.settled = True
        while self._pending and self._pending[0].settled:
            self.checkpoint = self._pending.popleft().record.sequence_number
            self.dirty = True

    @property
    def outstanding(self) -> int:
        return len(self._pending)
