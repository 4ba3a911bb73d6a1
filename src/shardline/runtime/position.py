"""Where a shard's processing stands: a typed checkpoint value.

A position is a sequence number (every record up to and including it is settled, with an optional sub-sequence
number for aggregated records), or one of the sentinels ``TRIM_HORIZON`` and ``LATEST`` (nothing settled yet),
``AT_TIMESTAMP`` with a time in milliseconds (nothing settled before that time), or ``SHARD_END`` (the whole shard is
settled). ``Position.parse`` reads the text a lease table stores and ``str(position)`` writes it back; every other
place works with the typed value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Position", "PositionKind"]

PositionKind = Literal["SEQUENCE", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "SHARD_END"]
_SENTINELS: tuple[PositionKind, ...] = ("TRIM_HORIZON", "LATEST", "SHARD_END")
_MAX_SEQUENCE_DIGITS = 128


@dataclass(frozen=True, slots=True)
class Position:
    kind: PositionKind
    sequence_number: str | None = None
    sub_sequence: int = 0
    timestamp_ms: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "SEQUENCE":
            s = self.sequence_number
            if s is None or not (s.isascii() and s.isdigit()) or len(s) > _MAX_SEQUENCE_DIGITS:
                raise ValueError(f"not a sequence number: {s!r}")
        elif self.sequence_number is not None:
            raise ValueError(f"a {self.kind} position has no sequence number")
        if self.kind == "AT_TIMESTAMP":
            if self.timestamp_ms is None or self.timestamp_ms < 0:
                raise ValueError("an AT_TIMESTAMP position needs a timestamp in milliseconds")
        elif self.timestamp_ms is not None:
            raise ValueError(f"a {self.kind} position has no timestamp")
        if self.sub_sequence < 0 or (self.sub_sequence and self.kind != "SEQUENCE"):
            raise ValueError("a sub-sequence number belongs to a sequence-number position")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def sequence(cls, sequence_number: str, sub_sequence: int = 0) -> Position:
        return cls("SEQUENCE", sequence_number, sub_sequence)

    @classmethod
    def at_timestamp(cls, timestamp_ms: int) -> Position:
        return cls("AT_TIMESTAMP", timestamp_ms=timestamp_ms)

    @classmethod
    def parse(cls, text: str, sub_sequence: int = 0) -> Position:
        """The position a stored checkpoint text names: digits, a sentinel, or ``AT_TIMESTAMP:<ms>``."""
        if text.isascii() and text.isdigit():
            return cls.sequence(text, sub_sequence)
        if text in _SENTINELS:
            return cls(text)
        if text.startswith("AT_TIMESTAMP:"):
            ms = text.split(":", 1)[1]
            if ms.isascii() and ms.isdigit():
                return cls.at_timestamp(int(ms))
        raise ValueError(f"not a checkpoint: {text!r}")

    # ----------------------------------------------------------------- reading
    @property
    def is_sequence(self) -> bool:
        return self.kind == "SEQUENCE"

    @property
    def is_shard_end(self) -> bool:
        return self.kind == "SHARD_END"

    @property
    def started(self) -> bool:
        """Processing has moved past the starting position (a sequence number or SHARD_END)."""
        return self.kind in ("SEQUENCE", "SHARD_END")

    def iterator(self) -> tuple[str, str | None, int | None]:
        """GetShardIterator's (ShardIteratorType, StartingSequenceNumber, Timestamp ms) resuming after this position.
        SHARD_END has no iterator (nothing is left to read)."""
        if self.kind == "SEQUENCE":
            return "AFTER_SEQUENCE_NUMBER", self.sequence_number, None
        if self.kind == "AT_TIMESTAMP":
            return "AT_TIMESTAMP", None, self.timestamp_ms
        if self.kind == "SHARD_END":
            raise ValueError("a shard settled to SHARD_END has nothing left to read")
        return self.kind, None, None

    def __str__(self) -> str:
        if self.kind == "SEQUENCE":
            assert self.sequence_number is not None
            return self.sequence_number
        if self.kind == "AT_TIMESTAMP":
            return f"AT_TIMESTAMP:{self.timestamp_ms}"
        return self.kind


TRIM_HORIZON = Position("TRIM_HORIZON")
LATEST = Position("LATEST")
SHARD_END = Position("SHARD_END")
