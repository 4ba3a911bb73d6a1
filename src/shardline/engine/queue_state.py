"""A queue's state: its configuration, one delivery cursor per shard, and the records it has delivered and not yet
seen acknowledged; receipt handles.

A record below its shard's cursor is acknowledged unless ``QueueState.pending`` tracks it, so the state holds only
what is in flight, waiting for redelivery, or dead-lettered: acknowledging forgets a record, records past the end of
their stream's retention are forgotten, and a queue delivers no new record while ``MAX_PENDING`` are tracked. The
state is one sealed JSON file per queue (``queues/<id>.json`` in the data directory), replaced atomically.

A receipt handle names one delivery of one record::

    version (1) | queue id (16) | shard index (4) | offset (8) | delivery (4) | dead-letter (1) | HMAC-SHA256 (12)

in URL-safe base64, the HMAC keyed by the data directory's secret, so a handle cannot be forged or moved to another
queue. ``delivery`` counts every delivery of the record: a handle from an earlier delivery no longer matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["MAX_PENDING", "Handle", "Pending", "QueueState", "decode_handle", "encode_handle"]

MAX_PENDING = 10_000
_HANDLE = struct.Struct(">B16sIQIB")
_MAC_BYTES = 12
_VERSION = 1


@dataclass(slots=True)
class Pending:
    """A delivered record not acknowledged yet."""

    receive_count: int
    first_receive_ms: int
    visible_ms: int  # when it can be received again (on its path: normal or dead-letter)
    delivery: int  # deliveries so far, on either path (its receipt handles name one)
    dead: bool = False


@dataclass(slots=True)
class QueueState:
    queue_id: str  # 32 hex digits: the ARN's resource id and the file name
    name: str
    stream_name: str
    stream_id: str  # the stream incarnation it reads (a re-created stream of the same name is another)
    stream_created_ms: int
    created_ms: int
    start_type: str
    start_ms: int | None  # AT_TIMESTAMP's timestamp, as configured
    effective_start_ms: int  # the time delivery begins at (what DescribeQueue shows once ACTIVE)
    visibility_s: int = 30
    dead_letter: bool = True
    max_receive_count: int = 6
    status: str = "CREATING"
    status_until_ms: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    cursors: dict[int, int] = field(default_factory=dict)  # shard index -> next offset never delivered
    pending: dict[tuple[int, int], Pending] = field(default_factory=dict)  # (shard, offset) -> its state
    # (visible_ms, shard, offset) for every pending record; stale entries are skipped and compacted
    due: list[tuple[int, int, int]] = field(default_factory=list)
    turn: int = 0  # which shard new records are read from first (round robin)

    @property
    def ident(self) -> str:
        return self.queue_id

    def schedule(self, shard: int, offset: int, p: Pending) -> None:
        heapq.heappush(self.due, (p.visible_ms, shard, offset))
        if len(self.due) > 2 * len(self.pending) + 64:
            self.due = [(q.visible_ms, s, o) for (s, o), q in self.pending.items()]
            heapq.heapify(self.due)

    def pop_due(self, now_ms: int) -> list[tuple[int, int]]:
        """The pending records whose visibility timeout has passed, oldest first."""
        out: list[tuple[int, int]] = []
        while self.due and self.due[0][0] <= now_ms:
            visible, shard, offset = heapq.heappop(self.due)
            p = self.pending.get((shard, offset))
            if p is not None and p.visible_ms == visible:  # (else stale)
                out.append((shard, offset))
        return out

    def next_visible_ms(self) -> int | None:
        return self.due[0][0] if self.due else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.queue_id,
            "name": self.name,
            "stream": self.stream_name,
            "stream_id": self.stream_id,
            "stream_created_ms": self.stream_created_ms,
            "created_ms": self.created_ms,
            "start_type": self.start_type,
            "start_ms": self.start_ms,
            "effective_start_ms": self.effective_start_ms,
            "visibility_s": self.visibility_s,
            "dead_letter": self.dead_letter,
            "max_receive_count": self.max_receive_count,
            "status": self.status,
            "status_until_ms": self.status_until_ms,
            "tags": self.tags,
            "cursors": [[s, o] for s, o in self.cursors.items()],
            "pending": [
                [s, o, p.receive_count, p.first_receive_ms, p.visible_ms, p.delivery, int(p.dead)]
                for (s, o), p in self.pending.items()
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueueState:
        q = cls(
            queue_id=str(d["id"]),
            name=str(d["name"]),
            stream_name=str(d["stream"]),
            stream_id=str(d["stream_id"]),
            stream_created_ms=int(d["stream_created_ms"]),
            created_ms=int(d["created_ms"]),
            start_type=str(d["start_type"]),
            start_ms=None if d["start_ms"] is None else int(d["start_ms"]),
            effective_start_ms=int(d["effective_start_ms"]),
            visibility_s=int(d["visibility_s"]),
            dead_letter=bool(d["dead_letter"]),
            max_receive_count=int(d["max_receive_count"]),
            status=str(d["status"]),
            status_until_ms=int(d["status_until_ms"]),
            tags={str(k): str(v) for k, v in d["tags"].items()},
        )
        q.cursors = {int(s): int(o) for s, o in d["cursors"]}
        for s, o, count, first, visible, delivery, dead in d["pending"]:
            q.pending[(int(s), int(o))] = Pending(int(count), int(first), int(visible), int(delivery), bool(dead))
        q.due = [(p.visible_ms, s, o) for (s, o), p in q.pending.items()]
        heapq.heapify(q.due)
        return q


class Handle(NamedTuple):
    queue_id: str
    shard: int
    offset: int
    delivery: int
    dead: bool


def encode_handle(secret: bytes, h: Handle) -> str:
    body = _HANDLE.pack(_VERSION, bytes.fromhex(h.queue_id), h.shard, h.offset, h.delivery, int(h.dead))
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")


def decode_handle(secret: bytes, text: str) -> Handle | None:
    """The delivery ``text`` names, or None when it is no handle this data directory issued."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _HANDLE.size + _MAC_BYTES:
        return None
    body, mac = raw[: _HANDLE.size], raw[_HANDLE.size :]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()[:_MAC_BYTES]):
        return None
    version, qid, shard, offset, delivery, dead = _HANDLE.unpack(body)
    if version != _VERSION:
        return None
    return Handle(qid.hex(), shard, offset, delivery, bool(dead))
