"""Staged records of a group of shard logs (one stream's shards), in slots indexed by shard index.

A put request's records are encoded once: each record goes to the write-ahead journal (journal.py) and its segment
encoding is *staged* in its shard's slot until the log writes the slot's records as a frame (log.py). A slot holds
the staged records (framing.py's record encoding; offset deltas count from the slot's ``base``, arrival deltas
from its ``first``), the offset of the first of them (with nothing staged: the log's next offset) and the first
and newest arrival among them.

``StageTable`` is the compiled table (``_stagetable.c``) where it was built, else ``PyStageTable``, the reference
implementation below; SHARDLINE_PURE_PYTHON=1 keeps the reference. Both behave the same for the same calls
(tests/storage/test_stagetable.py runs both on random sequences of calls). The compiled one keeps each slot's
state in one compact C struct and its records in one growing buffer, so staging a record touches no Python object
of its shard: with 1,000 shards the per-shard state still fits the CPU caches (docs/architecture.md).

Staging one request (``stage``) gives each record the next offset of its slot and returns the journal encoding of
all of them (per record: shard index u32 | offset u64 | the segment encoding, big-endian) with their offsets. Two
callbacks let the owner act at a batch boundary: ``on_span(slot)`` when the slot's staged batch would span more
than ``span`` ms of arrival time (it must write the slot's records, leaving it empty), ``on_first(slot)`` before
the first record of a new batch (it may refuse by raising). A slot whose batch reaches ``full_at`` records is
appended to ``full``. If anything raises, nothing of the request stays staged.

A table made with an ``entry`` type (a NamedTuple) also returns each staged record's result when asked:
``entry(slot name, str(id base + offset), None, ...)``, with the name and id base given to ``name(slot, ...)`` (for
a put: the shard id and the shard's sequence-number prefix). ``put_bytes(slot)`` counts the key and data bytes of
every record staged in a slot, so the put path keeps no per-shard counter of its own.
"""

from __future__ import annotations

import errno
import operator
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from .._fsutil import CutBackFailed, append_all
from ._compiled import compiled
from .framing import FRAME_RECORDS, encode_frame_header
from .framing import REC as SEG_REC
from .journal_scan import ID

if TYPE_CHECKING:
    from .log import ShardLog

__all__ = ["ACCELERATED", "LogTable", "PyStageTable", "StageTable"]

_U32 = struct.Struct(">I")

# (slot = shard index, partition key UTF-8, explicit hash key ASCII or b"", data)
Entry = tuple[int, bytes, bytes, bytes]


def rebase(records: Sequence[bytes]) -> list[bytes]:
    """Encoded records with their offset deltas renumbered from 0 (the delta is the first field)."""
    pack = _U32.pack
    return [pack(k) + rec[4:] for k, rec in enumerate(records)]


def newest_delta(records: Sequence[bytes]) -> int:
    """The largest arrival delta (the second field) among encoded records."""
    return int(max(_U32.unpack_from(rec, 4)[0] for rec in records))


def _key_data_bytes(record: bytes) -> int:
    """Partition key + data bytes of an encoded record: what a put counts."""
    _, _, pk_len, _, data_len = SEG_REC.unpack_from(record)
    return int(pk_len + data_len)


class PyStageTable:
    """The reference implementation (see the module docstring); ``_stagetable.StageTable`` has the same methods."""

    __slots__ = ("_base", "_bytes", "_entry", "_first", "_names", "_newest", "_pend", "full_at")

    def __init__(self, full_at: int, entry: Any = None) -> None:
        if full_at < 1:
            raise ValueError("full_at must be at least 1")
        if entry is not None and not (
            isinstance(entry, type) and issubclass(entry, tuple) and len(getattr(entry, "_fields", ())) >= 2
        ):
            raise TypeError("entry must be a NamedTuple type with at least two fields (name, record id)")
        self.full_at = full_at
        self._entry: Any = entry
        self._pend: list[list[bytes]] = []
        self._base: list[int] = []
        self._first: list[int] = []
        self._newest: list[int] = []
        self._bytes: list[int] = []
        self._names: list[tuple[str, int] | None] = []

    def __len__(self) -> int:
        return len(self._pend)

    def _check(self, slot: int) -> int:
        if not 0 <= slot < len(self._pend):
            raise IndexError(f"stage slot {slot} out of range")
        return slot

    def grow(self, n: int) -> None:
        """Make slots 0..n-1 exist (new ones empty, base 0)."""
        grow = n - len(self._pend)
        if grow > 0:
            self._pend.extend([] for _ in range(grow))
            self._base.extend([0] * grow)
            self._first.extend([-1] * grow)
            self._newest.extend([-1] * grow)
            self._bytes.extend([0] * grow)
            self._names.extend([None] * grow)

    def reset(self, slot: int) -> None:
        """Empty the slot: no records, base 0, no arrivals, no bytes counted, no name."""
        self._check(slot)
        self._pend[slot] = []
        self._base[slot] = self._bytes[slot] = 0
        self._first[slot] = self._newest[slot] = -1
        self._names[slot] = None

    def count(self, slot: int) -> int:
        return len(self._pend[self._check(slot)])

    def nbytes(self, slot: int) -> int:
        return sum(len(rec) for rec in self._pend[self._check(slot)])

    def base(self, slot: int) -> int:
        return self._base[self._check(slot)]

    def next_offset(self, slot: int) -> int:
        return self._base[self._check(slot)] + len(self._pend[slot])

    def first(self, slot: int) -> int:
        return self._first[self._check(slot)]

    def newest(self, slot: int) -> int:
        return self._newest[self._check(slot)]

    def put_bytes(self, slot: int) -> int:
        """Key + data bytes of every record staged in the slot (records taken back do not count)."""
        return self._bytes[self._check(slot)]

    def name(self, slot: int, name: str, id_base: int) -> None:
        """Name the results of the slot's records: ``name`` (ASCII, at most 21 characters) and record ids
        ``id_base + offset`` (a non-negative integer of at most 41 digits)."""
        self._check(slot)
        if type(id_base) is not int:
            raise TypeError("an id base is an int")
        if not name.isascii() or len(name) > 21:
            raise ValueError("a slot's name is ASCII, at most 21 characters")
        if id_base < 0 or len(str(id_base)) > 41:
            raise ValueError("an id base is a non-negative integer of at most 41 digits")
        self._names[slot] = (name, id_base)

    def set_base(self, slot: int, offset: int) -> None:
        """Set the next offset of an empty slot."""
        if self._pend[self._check(slot)]:
            raise ValueError(f"stage slot {slot} holds records: its base is theirs")
        if offset < 0:
            raise ValueError(f"negative offset {offset}")
        self._base[slot] = offset

    def set_newest(self, slot: int, ms: int) -> None:
        self._newest[self._check(slot)] = ms

    def records(self, slot: int) -> list[bytes]:
        """The staged records, each its segment encoding, in offset order."""
        return list(self._pend[self._check(slot)])

    def body(self, slot: int) -> bytes:
        """The staged records joined: a frame's record bytes."""
        return b"".join(self._pend[self._check(slot)])

    def view(self, slot: int) -> memoryview:
        """The staged records as a read-only buffer (the compiled table shares its own without copying it, and
        refuses every change to its records until the view is released)."""
        return memoryview(self.body(slot)).toreadonly()

    def frame_header(self, slot: int, max_records: int, max_bytes: int) -> tuple[bytes, int, int, int, int, int] | None:
        """The header of a frame whose records are the slot's staged records as ``view`` shows them (framing.py),
        with (count, base, first, newest, bytes of the records); None when nothing is staged or when more than one
        record is and they exceed ``max_records`` or ``max_bytes`` (the owner then writes them as several
        frames)."""
        pend = self._pend[self._check(slot)]
        nbytes = sum(len(rec) for rec in pend)
        if not pend or (len(pend) > 1 and (len(pend) > max_records or nbytes > max_bytes)):
            return None
        base, first, newest = self._base[slot], self._first[slot], self._newest[slot]
        if first < 0 or newest < 0 or nbytes > 0xFFFFFFFF - 25:
            raise OverflowError("staged records do not fit a frame header")
        head = encode_frame_header(base, len(pend), first, newest, self.body(slot))
        return head, len(pend), base, first, newest, nbytes

    def write_frames(self, jobs: Sequence[tuple[int, int, int]], max_records: int, max_bytes: int) -> list[Any]:
        """For each job (slot, fd, position: the file's size), append the slot's records to the file as one frame
        (``frame_header``, then the records) in one write. Each job's result: None when the records are not
        one frame (nothing written); (count, base, first, newest, bytes of the records, bytes of the frame) once
        written; (errno, 0) when the write failed and was cut back off the file, (errno, errno of the cut) when
        the cut failed too. Nothing else changes: the owner then consumes what it records as written. A slot may
        appear once. The compiled table runs the CRCs and writes without the GIL."""
        parsed: list[tuple[int, int, int]] = []
        for job in jobs:  # (every job is checked before anything is written)
            fields = tuple(job)
            if len(fields) != 3:
                raise TypeError("a write_frames job is (slot, fd, position)")
            slot, fd, pos = (operator.index(field) for field in fields)
            if not -(2**31) <= fd < 2**31:
                raise OverflowError("fd out of range")
            parsed.append((slot, fd, pos))
        seen: set[int] = set()
        frames: list[tuple[int, int, bytes, tuple[int, int, int, int, int, int]] | None] = []
        for slot, fd, pos in parsed:
            self._check(slot)
            if slot in seen:
                raise ValueError(f"slot {slot} is in write_frames twice")
            seen.add(slot)
            batch = self.frame_header(slot, max_records, max_bytes)
            if batch is None:
                frames.append(None)
            else:
                head, count, base, first, newest, nbytes = batch
                result = (count, base, first, newest, nbytes, len(head) + nbytes)
                frames.append((fd, pos, head + self.body(slot), result))
        out: list[Any] = []
        for frame_job in frames:
            if frame_job is None:
                out.append(None)
                continue
            fd, pos, data, result = frame_job
            try:
                append_all(fd, data, pos)
            except CutBackFailed as exc:
                out.append((exc.write_errno, exc.errno))
            except OSError as exc:
                out.append((exc.errno or errno.EIO, 0))
            else:
                out.append(result)
        return out

    def consume(self, slot: int, n: int) -> None:
        """The first ``n`` staged records were written: drop them and move the base past them (the offset deltas of
        the rest count from the new base)."""
        pend = self._pend[self._check(slot)]
        if not 0 <= n <= len(pend):
            raise ValueError(f"cannot consume {n} of {len(pend)} staged records")
        if n == len(pend):
            self._pend[slot] = []
        elif n:
            self._pend[slot] = rebase(pend[n:])
        self._base[slot] += n

    def drop_last(self, slot: int, n: int) -> None:
        """Take back the last ``n`` staged records (their offsets are free again); the newest arrival becomes that
        of the records left."""
        pend = self._pend[self._check(slot)]
        if not 0 <= n <= len(pend):
            raise ValueError(f"cannot drop {n} of {len(pend)} staged records")
        if n:
            self._bytes[slot] -= sum(_key_data_bytes(rec) for rec in pend[-n:])
            del pend[-n:]
        if pend:
            self._newest[slot] = self._first[slot] + newest_delta(pend)

    def stage(  # noqa: PLR0917 (positional, as the compiled table takes them)
        self,
        now: int,
        span: int,
        plan: Sequence[Entry],
        on_span: Callable[[int], object],
        on_first: Callable[[int], object],
        full: list[int],
        results: bool,
    ) -> tuple[bytes, list[int], list[Any] | None]:
        """Stage ``plan`` arriving at ``now``; returns its journal encoding, each record's offset and, when asked
        and the table has an entry type, each record's result (see the module docstring)."""
        plan = tuple(plan)
        entry_type: Any = self._entry if results else None
        nslots, names = len(self._pend), self._names
        for slot, pk, ehk, data in plan:  # refuse a bad entry before anything is staged
            if not 0 <= slot < nslots:
                raise IndexError(f"stage slot {slot} out of range")
            if entry_type is not None and names[slot] is None:
                raise ValueError(f"stage slot {slot} has no name")
            if not (type(pk) is bytes and type(ehk) is bytes and type(data) is bytes):
                raise TypeError("a staged record's key, hash key and data must be bytes")
            if len(pk) > 0xFFFF or len(ehk) > 0xFF or len(data) > 0xFFFFFFFF:
                raise ValueError("a staged record's field is too long for its length field")
        parts: list[bytes] = []
        offsets: list[int] = []
        entries: list[Any] | None = None if entry_type is None else []
        rest = () if entry_type is None else (None,) * (len(entry_type._fields) - 2)  # the fields after the id
        make = tuple.__new__
        undo: list[tuple[int, int, int]] = []  # (slot, first and newest arrival before the record)
        pack_id = ID.pack
        pack_seg = SEG_REC.pack
        join = b"".join
        pends, bases, firsts, maxes, put_bytes = self._pend, self._base, self._first, self._newest, self._bytes
        last = self.full_at - 1
        try:
            for slot, pk, ehk, data in plan:
                pend = pends[slot]
                before = (slot, firsts[slot], maxes[slot])
                adelta = 0
                if pend:
                    adelta = now - firsts[slot]
                    if adelta > span:  # keep a frame's records close in time (and staged memory bounded)
                        on_span(slot)
                        pend = pends[slot]
                    elif adelta < 0:  # the clock stepped back: never before the first record of the batch
                        adelta = 0
                if not pend:
                    on_first(slot)
                    pend = pends[slot]
                    firsts[slot] = maxes[slot] = now
                    adelta = 0
                # The offset delta is the record's place in the batch: offsets are dense from the base.
                delta = len(pend)
                off = bases[slot] + delta
                seg = join((pack_seg(delta, adelta, len(pk), len(ehk), len(data)), pk, ehk, data))
                parts += (pack_id(slot, off), seg)
                undo.append(before)
                pend.append(seg)
                put_bytes[slot] += len(pk) + len(data)
                if now > maxes[slot]:
                    maxes[slot] = now
                offsets.append(off)
                if entries is not None:
                    name, id_base = names[slot]  # type: ignore[misc]
                    entries.append(make(entry_type, (name, str(id_base + off), *rest)))
                if delta == last:
                    full.append(slot)
        except BaseException:
            for slot, first, newest in reversed(undo):
                rec = pends[slot].pop()
                firsts[slot], maxes[slot] = first, newest
                put_bytes[slot] -= _key_data_bytes(rec)
            raise
        return join(parts), offsets, entries


_stagetable = compiled("_stagetable")
# (the compiled table has the reference's methods: _stagetable.pyi)
StageTable = PyStageTable if _stagetable is None else cast("type[PyStageTable]", _stagetable.StageTable)
ACCELERATED = _stagetable is not None


class LogTable:
    """The logs of a group that takes puts together (one stream's shards), in a list indexed by slot (the shard
    index), and their staged records in a ``StageTable`` (above) with the same slots. A log's next offset is
    its slot's ``next_offset``: staging a record writes nothing but the record.

    A put touches, per record, its slot of the stage table and no Python object of the shard: with 1,000 shards the
    compiled table's per-shard state still fits the CPU caches (docs/architecture.md). ``ShardLog`` reads and
    writes its own slot through properties."""

    __slots__ = ("logs", "staged")

    def __init__(self, entry: Any = None) -> None:
        """``entry``: the NamedTuple of a staged record's result (see staging.py), None for no results."""
        self.logs: list[ShardLog | None] = []
        self.staged = StageTable(FRAME_RECORDS, entry)

    def attach(self, slot: int, lg: ShardLog) -> None:
        """Give ``slot`` to ``lg`` with empty write state (a slot belongs to one open log at a time)."""
        if slot < 0:
            raise ValueError(f"negative log slot {slot}")
        grow = slot + 1 - len(self.logs)
        if grow > 0:
            self.logs.extend([None] * grow)
            self.staged.grow(slot + 1)
        held = self.logs[slot]
        if held is not None and held is not lg:
            raise ValueError(f"log slot {slot} is held by {held.directory}")
        self.logs[slot] = lg
        self.staged.reset(slot)

    def next_offset(self, slot: int) -> int:
        """The offset the next record of the log at ``slot`` gets: the staged batch's base plus the batch (a closed
        log's slot keeps its final values)."""
        return self.staged.next_offset(slot)

    def detach(self, slot: int, lg: ShardLog) -> None:
        """``lg`` is closed: free its slot (its last values stay readable through the closed log)."""
        if 0 <= slot < len(self.logs) and self.logs[slot] is lg:
            self.logs[slot] = None
