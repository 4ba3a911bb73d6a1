"""A shard's log: an ordered list of segments, a durable log-start checkpoint, and recovery.

Directory layout of one shard:

```
<shard dir>/
  00000000000000000000.log     frames (framing.py)
  00000000000000000000.index   sparse index cache (segment.py)
  00000000000000052113.log     the next segment, named by its first offset
  log-start                    the first offset still readable (log_recovery.py)
  holes                        offset ranges known to hold no record (log_recovery.py)
```

Offsets are dense except for holes: records lost to damage whose offsets must never be handed out again (a consumer
may have checkpointed them). A hole always lies between two segment files (``skip_to`` starts a new segment past
it), so a segment's frames stay dense. A gap between segments that ``holes`` does not list is a loss found at open
(a segment file deleted): it is reported once, then listed.

Retention first advances ``log-start`` durably, then deletes whole segments below it, so a crash in between
leaves only files that the next open removes.

Records may be *staged* before they reach a segment (see journal.py): they already have their offsets
(``next_offset`` counts them) and their encoded bytes wait in the log's slot of a ``StageTable`` (staging.py),
durable in the engine's write-ahead journal. The table belongs to a ``LogTable`` shared by the logs of one stream,
one slot a log.
``materialize`` writes staged records as frames of bounded size; every read, seal, close and trim does so first,
so the segment files are the only thing readers ever look at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._fsutil import fsync_dir
from .framing import (
    FRAME_BYTES,
    FRAME_MAX_RECORDS,
    FRAME_RECORDS,
    HEADER_SIZE,
    encode_frame,
    encode_frame_body,
)
from .log_reads import first_at_or_after, read_range
from .log_recovery import (
    RecoveryReport,
    delete_files,
    find_holes,
    open_segments,
    read_log_start,
    write_holes,
    write_log_start,
)
from .segment import CorruptRange, FileCache, Segment
from .staging import LogTable, newest_delta, rebase

__all__ = ["FRAME_BYTES", "FRAME_MAX_RECORDS", "FRAME_RECORDS", "FileCache", "LogTable", "RecoveryReport", "ShardLog"]

log = logging.getLogger("shardline.storage")


class ShardLog:
    """Append-only log of one shard. Not thread-safe: appends and reads run on the owner's event loop; only
    ``sync`` may run on a worker thread."""

    __slots__ = (
        "__weakref__",
        "_durable",
        "_files",
        "_index_interval",
        "_last_arrival_ms",
        "_segment_bytes",
        "_segment_max_age_ms",
        "_segments",
        "_visible",
        "_visible_on_write",
        "claimed_end",
        "directory",
        "holes",
        "log_start",
        "on_sync_error",
        "sealed",
        "slot",
        "synced_offset",
        "table",
        "tail_damage",
    )

    def __init__(
        self,
        directory: Path,
        files: FileCache,
        *,
        segment_bytes: int,
        index_interval: int,
        segment_max_age_ms: int,
        visible_on_write: bool,
        durable: bool = True,
        table: LogTable | None = None,
        slot: int = 0,
    ) -> None:
        self.directory = directory
        # The hot write state lives in the table's arrays (see LogTable); a log opened alone gets a table of its own.
        self.table = LogTable() if table is None else table
        self.slot = slot
        self.table.attach(slot, self)
        self._files = files
        self._segment_bytes = segment_bytes
        self._index_interval = index_interval
        self._segment_max_age_ms = segment_max_age_ms
        self._visible_on_write = visible_on_write
        # A roll fsyncs the sealed segment and the directory (a checkpoint fsyncs only the active segment). Not
        # with fsync=never, which fsyncs nothing else either: there a roll would stall the loop for nothing.
        self._durable = durable
        self._segments: list[Segment] = []
        self.log_start = 0
        self._visible = 0  # see visible_offset
        self.synced_offset = 0
        self.sealed = False
        self._last_arrival_ms = -1
        self.tail_damage: list[CorruptRange] = []  # damaged ranges recovery found in the active segment
        self.claimed_end = -1  # what the active segment's cut tail claimed (Segment.claimed_end)
        self.holes: list[tuple[int, int]] = []  # offset ranges that hold no record (see the module docstring)
        # Told of any failed fsync of the segments, on any path (a checkpoint, a roll, a seal, a read writing staged
        # records): Linux may drop the pages and pass a later fsync, so the owner must trust none (the engine stops).
        self.on_sync_error: Callable[[OSError], object] = lambda _exc: None

    # ----------------------------------------------------------------- open / close
    @classmethod
    def open(
        cls,
        directory: Path,
        files: FileCache,
        *,
        segment_bytes: int,
        index_interval: int,
        segment_max_age_ms: int,
        visible_on_write: bool,
        durable: bool = True,
        sealed: bool = False,
        table: LogTable | None = None,
        slot: int = 0,
    ) -> tuple[ShardLog, RecoveryReport]:
        """Open (recover) the log in ``directory``; its write state goes to ``slot`` of ``table`` (a table of its
        own when None)."""
        directory.mkdir(parents=True, exist_ok=True)
        self = cls(
            directory,
            files,
            segment_bytes=segment_bytes,
            index_interval=index_interval,
            segment_max_age_ms=segment_max_age_ms,
            visible_on_write=visible_on_write,
            durable=durable,
            table=table,
            slot=slot,
        )
        try:
            report = self._recover(sealed)
        except BaseException:
            # Nothing to close for the caller: give up the active segment's descriptor and the table slot here.
            for seg in self._segments:
                seg.release()
            self.table.detach(slot, self)
            raise
        return self, report

    def _recover(self, sealed: bool) -> RecoveryReport:
        directory = self.directory
        report = RecoveryReport(str(directory))
        self.log_start = read_log_start(directory)
        self._segments, self.tail_damage, self.claimed_end = open_segments(
            directory, self.log_start, sealed=sealed, index_interval=self._index_interval, report=report
        )
        if sealed and len(self._segments) == 1 and self._segments[0].end_offset <= self.log_start:
            # A sealed log that retention emptied just before a crash: finish deleting it.
            gone = self._segments.pop()
            self.next_offset = gone.end_offset
            delete_files(directory, gone.base_offset, report)
        if self._segments:
            self.next_offset = self._segments[-1].end_offset
            self._last_arrival_ms = max(s.max_arrival_ms for s in self._segments)
        else:
            self.next_offset = self.log_start
        # log-start never passes the end; only a lost tail could make it.
        self.log_start = min(self.log_start, self.next_offset)
        self.holes = find_holes(directory, self.log_start, self._segments, durable=self._durable, report=report)
        self.visible_offset = self.synced_offset = self.next_offset
        self.sealed = sealed
        report.segments = len(self._segments)
        if not self._segments and not sealed:
            self._roll(self.next_offset)
        return report

    def close(self) -> None:
        """Materialize what is staged, then close every segment (the active one is fsynced) and free the log's
        table slot. Every descriptor and the slot are given up even when a step fails; the first error is raised
        after (records still staged are in the journal, whose replay writes them)."""
        error: BaseException | None = None
        if self.pending_count and not self.sealed:
            try:
                self.materialize()
            except BaseException as exc:
                error = exc
        for seg in self._segments:
            try:
                self._files.forget(seg.path)
                if seg.writable:
                    seg.close()
            except BaseException as exc:
                seg.release()
                error = error or exc
        self.table.detach(self.slot, self)
        if error is not None:
            raise error

    def seal(self) -> None:
        """No more appends; staged records are written, the active segment is fsynced, closed and its index saved.
        All or nothing: after a failure the log takes appends and reads as before, and a second call seals it."""
        if self.pending_count:
            self.materialize()
        if self._segments and self._segments[-1].writable:
            seg = self._segments[-1]
            if seg.torn:
                seg.cut_torn_tail()
            self._fsync(seg)
            seg.seal(durable=False)
        self.sealed = True
        self.synced_offset = self.visible_offset = self.next_offset

    # ----------------------------------------------------------------- write state (kept in the table)
    @property
    def next_offset(self) -> int:
        """The offset the next record gets (staged records count)."""
        return self.table.next_offset(self.slot)

    @next_offset.setter
    def next_offset(self, offset: int) -> None:
        if self.table.staged.count(self.slot):
            raise RuntimeError(f"{self.directory}: the next offset of a log with staged records is theirs")
        self.table.staged.set_base(self.slot, offset)

    @property
    def pending(self) -> list[bytes]:
        """A copy of the staged records, in offset order from ``pending_base`` (see journal.py)."""
        return self.table.staged.records(self.slot)

    @property
    def pending_count(self) -> int:
        """How many records are staged."""
        return self.table.staged.count(self.slot)

    @property
    def pending_base(self) -> int:
        """Offset of the first staged record (the next offset when none is staged)."""
        return self.table.staged.base(self.slot)

    @property
    def pending_first(self) -> int:
        """Arrival of the first staged record (the staged arrival deltas count from it)."""
        return self.table.staged.first(self.slot)

    @property
    def pending_max(self) -> int:
        """Newest arrival among the staged records."""
        return self.table.staged.newest(self.slot)

    # ----------------------------------------------------------------- writes
    def records_between(self, start: int, end: int) -> int:
        """How many offsets in [start, end) hold a record (or may: every offset that is not in a hole)."""
        if end <= start:
            return 0
        return end - start - sum(max(0, min(h_end, end) - max(h_first, start)) for h_first, h_end in self.holes)

    @property
    def visible_offset(self) -> int:
        """Readers see offsets below this: ``next_offset`` when records are visible on write, else the offset
        ``mark_synced`` last made durable."""
        return self.next_offset if self._visible_on_write else self._visible

    @visible_offset.setter
    def visible_offset(self, offset: int) -> None:
        self._visible = offset

    @property
    def last_arrival_ms(self) -> int:
        """Arrival time of the newest record, staged or written (-1 when there is none)."""
        return self.pending_max if self.pending_count else self._last_arrival_ms

    def append(self, records: Sequence[tuple[bytes, bytes, bytes]], arrival_ms: int) -> int:
        """Append one frame; returns its base offset. The records are visible at once unless the log was opened
        with ``visible_on_write=False``, in which case ``mark_synced`` makes them visible."""
        if self.sealed:
            raise RuntimeError(f"append to sealed log {self.directory}")
        if self.pending_count:
            self.materialize()
        base = self.next_offset
        self._write_frame(encode_frame(base, arrival_ms, records), base, len(records), arrival_ms, arrival_ms)
        self.next_offset = base + len(records)
        return base

    def materialize(self) -> int:
        """Write the staged records, as one frame when they fit FRAME_RECORDS and FRAME_BYTES, else as several (a
        read that starts inside a frame decodes the frame from its start, so frames stay small). Returns the record
        bytes written (0: nothing was staged). On an error what was not written stays staged (it is in the journal)
        and the next call tries again."""
        staged, slot = self.table.staged, self.slot
        # A batch that just passed FRAME_RECORDS is still written whole: its records, as they are staged, after the
        # frame header (never copied on the way).
        batch = staged.frame_header(slot, FRAME_MAX_RECORDS, FRAME_BYTES)
        if batch is None and not staged.count(slot):
            return 0
        if self.sealed:
            raise RuntimeError(f"staged records in sealed log {self.directory}")
        if batch is None:
            nbytes = staged.nbytes(slot)
            self._materialize_split(staged.records(slot))
            return nbytes
        head, count, base, first, newest, nbytes = batch
        with staged.view(slot) as body:
            self._write_frame((head, body), base, count, first, newest, size=len(head) + nbytes)
        staged.consume(slot, count)
        return nbytes

    def frame_segment(self) -> Segment | None:
        """The segment the staged batch can be written to by ``StageTable.write_frames`` (see
        Journal.materialize_all), then recorded by ``commit_written``. None when ``materialize`` must do it: nothing
        staged, a segment to roll first, or a sealed log. (A batch for several frames write_frames leaves alone.)"""
        staged, slot = self.table.staged, self.slot
        if self.sealed or not staged.count(slot):
            return None
        seg = self._segments[-1]
        if seg.torn or self._must_roll(seg, HEADER_SIZE + staged.nbytes(slot), staged.first(slot)):
            return None
        return seg

    def commit_written(self, seg: Segment, pos: int, written: tuple[int, int, int, int, int, int]) -> int:
        """Record the frame ``StageTable.write_frames`` wrote to ``seg`` (from ``frame_segment``) at ``pos``, with
        its result: (count, base, first, newest, record bytes, frame bytes). Returns the record bytes."""
        count, base, first, newest, nbytes, size = written
        seg.appended(pos, size, base, count, arrival_ms=first, max_arrival_ms=newest)
        if newest > self._last_arrival_ms:
            self._last_arrival_ms = newest
        self.table.staged.consume(self.slot, count)
        return nbytes

    def _materialize_split(self, pend: list[bytes]) -> None:
        """Write a large staged batch as frames of at most FRAME_RECORDS records and about FRAME_BYTES bytes. A
        staged record's offset delta counts from the batch start; a frame's must count from the frame's."""
        first = self.pending_first
        i = 0
        while i < len(pend):
            j, size = i, 0
            while j < len(pend) and j - i < FRAME_RECORDS and (j == i or size + len(pend[j]) <= FRAME_BYTES):
                size += len(pend[j])
                j += 1
            chunk = rebase(pend[i:j]) if i else pend[i:j]
            newest = first + newest_delta(chunk)
            base = self.pending_base + i
            frame = encode_frame_body(base, j - i, first, newest, b"".join(chunk))
            try:
                self._write_frame(frame, base, j - i, first, newest)
            except BaseException:
                self.table.staged.consume(self.slot, i)  # the unwritten rest stays staged, counted from its start
                raise
            i = j
        self.table.staged.consume(self.slot, len(pend))

    def cut_damaged_tail(self, from_offset: int) -> int:
        """Cut the active segment at its first damaged range that starts at or after ``from_offset``, with every
        frame after it. The journal calls this when it holds every record from ``from_offset`` on: bytes written
        since the last checkpoint were not fsynced yet, so a power loss may have left a hole with intact frames
        after it, which the journal refills in order. Returns the bytes cut."""
        for damage in self.tail_damage:
            if damage.first_offset >= from_offset and not self.sealed and not self.pending_count:
                cut = self._segments[-1].truncate(damage.start, damage.first_offset)
                self.next_offset = self.visible_offset = self.synced_offset = damage.first_offset
                self.tail_damage = [d for d in self.tail_damage if d.first_offset < damage.first_offset]
                log.warning(
                    "%s: cut %d bytes after damaged offsets %d.. (written since the last checkpoint; the journal "
                    "restores them)",
                    self.directory,
                    cut,
                    damage.first_offset,
                )
                return cut
        return 0

    def skip_to(self, offset: int) -> None:
        """Leave the offsets from ``next_offset`` up to ``offset`` unused for ever: recovery found that records may
        have been acknowledged there (and lost) or that intact records follow them. Staged records are written
        first; the hole is recorded durably, then the log goes on in a new segment named ``offset``."""
        start = self.next_offset
        if offset <= start:
            return
        if self.sealed:
            raise RuntimeError(f"skip in sealed log {self.directory}")
        if self.pending_count:
            self.materialize()
            start = self.next_offset
        if (start, offset) not in self.holes:  # (it is when an earlier call failed after writing it)
            self._write_holes([*self.holes, (start, offset)])
        empty = self._segments[-1] if self._segments and self._segments[-1].size == 0 else None
        self._roll(offset)
        if empty is not None:  # an empty segment would claim the hole: the new one replaces it
            i = self._segments.index(empty)
            del self._segments[i]
            self._files.forget(empty.path)
            try:
                delete_files(self.directory, empty.base_offset, RecoveryReport(str(self.directory)))
            except OSError as exc:  # an empty segment before the active one holds nothing a reader could miss
                log.warning("%s: cannot remove an empty segment: %s", self.directory, exc)
        self.next_offset = offset
        self.mark_synced(offset)
        self.tail_damage = []

    def _write_holes(self, holes: list[tuple[int, int]]) -> None:
        write_holes(self.directory, holes, durable=self._durable)
        self.holes = holes

    def discard_pending(self) -> None:
        """Forget staged records (their stream is being deleted); their offsets stay used."""
        self.table.staged.consume(self.slot, self.pending_count)

    @property
    def written_offset(self) -> int:
        """The end of what is in segment files (``next_offset`` minus what is staged)."""
        return self.pending_base

    def _write_frame(
        self,
        frame: bytes | tuple[bytes, memoryview],
        base: int,
        count: int,
        first_ms: int,
        max_ms: int,
        *,
        size: int | None = None,
    ) -> None:
        """Append ``frame`` (bytes, or its pieces with ``size``, their bytes in all), rolling the segment first when
        due."""
        if size is None:
            size = len(frame)
        seg = self._segments[-1]
        if self._must_roll(seg, size, first_ms):
            seg = self._roll(base)
        seg.append(frame, base, count, first_ms, max_ms, size=size)
        if max_ms > self._last_arrival_ms:
            self._last_arrival_ms = max_ms

    def _must_roll(self, seg: Segment, size: int, first_ms: int) -> bool:
        """Whether a frame of ``size`` bytes whose first record arrived at ``first_ms`` starts a new segment."""
        return bool(seg.size) and (
            seg.size + size > self._segment_bytes
            or (seg.first_arrival_ms >= 0 and first_ms - seg.first_arrival_ms >= self._segment_max_age_ms)
        )

    def sync(self) -> None:
        """fsync the active segment. Thread-safe against appends on the loop (they only add bytes)."""
        if self._segments:
            self._fsync(self._segments[-1])

    def _fsync(self, seg: Segment) -> None:
        """fsync ``seg``; a failure is told to ``on_sync_error`` before it is raised."""
        try:
            seg.fsync()
        except OSError as exc:
            self.on_sync_error(exc)
            raise

    def mark_synced(self, offset: int) -> None:
        """Everything below ``offset`` is durable; make it visible to readers."""
        self.synced_offset = max(self.synced_offset, offset)
        self.visible_offset = max(self.visible_offset, offset)

    def _roll(self, base: int) -> Segment:
        """Start the segment named ``base`` and make it the active one. All or nothing: the active segment is
        fsynced, the new one created and made durable in the directory, and only then is the old one sealed (its
        index saved, which fails nothing) and the new one taken. A failure on the way removes the new file again
        (``Segment.discard``), so the log, its descriptors and its files are as they were and the next roll starts
        afresh."""
        old = self._segments[-1] if self._segments and self._segments[-1].writable else None
        if old is not None and old.torn:
            old.cut_torn_tail()
        if old is not None and self._durable:
            self._fsync(old)  # (before the next segment exists: a crash never leaves one after unsynced bytes)
        seg = Segment.create(self.directory, base, self._index_interval)
        try:
            if self._durable:
                fsync_dir(self.directory)
        except BaseException:
            seg.discard()
            raise
        self._segments.append(seg)
        if old is not None:
            old.seal(durable=False)  # (fsynced above; cannot fail now)
        return seg

    # ----------------------------------------------------------------- reads
    def read(
        self, offset: int, max_records: int, max_bytes: int, end_offset: int | None = None
    ) -> tuple[list[Any], int]:
        """``read_counted`` as ``StoredRecord``s, without the byte count."""
        records, nxt, _ = self.read_counted(offset, max_records, max_bytes, end_offset)
        return records, nxt

    def read_counted(
        self,
        offset: int,
        max_records: int,
        max_bytes: int,
        end_offset: int | None = None,
        *,
        id_base: int | None = None,
        encryption: str | None = None,
    ) -> tuple[list[Any], int, int]:
        """Records from ``offset`` (raised to log-start) up to the visible end, at most ``max_records`` and about
        ``max_bytes`` of key + data (always at least one record). Returns the records, the next offset to read and
        the bytes of partition key (UTF-8) and data of the records returned, which the decoder counts anyway (a
        GetRecords response's size, without a second pass over its records).

        Records are ``StoredRecord``; with ``id_base`` they are ``models.Record`` whose sequence number is
        ``id_base + offset`` (one object per record on the hot read path)."""
        offset = max(offset, self.log_start)
        end = self.visible_offset if end_offset is None else min(end_offset, self.visible_offset)
        if self.pending_count and end > self.pending_base:
            self.materialize()
        return read_range(
            self._segments,
            self._files,
            offset,
            end,
            max_records=max_records,
            max_bytes=max_bytes,
            id_base=id_base,
            encryption=encryption,
        )

    def offset_for_time(self, arrival_ms: int) -> int:
        """The offset of the first record that arrived at or after ``arrival_ms`` (the visible end if none)."""
        if self.pending_count:
            self.materialize()
        return first_at_or_after(self._segments, self._files, self.log_start, self.visible_offset, arrival_ms)

    def arrival_of(self, offset: int) -> int | None:
        """Arrival time of the record at ``offset``, or None when it is not readable."""
        recs, _ = self.read(offset, 1, 1)
        return recs[0].arrival_ms if recs and recs[0].offset == offset else None

    # ----------------------------------------------------------------- retention
    def segment_ranges(self) -> list[tuple[int, int, int]]:
        """(base offset, end offset, newest arrival ms) per segment, oldest first."""
        if self.pending_count:
            self.materialize()
        return [(s.base_offset, s.end_offset, s.max_arrival_ms) for s in self._segments]

    def trim_before_time(self, cutoff_ms: int) -> int:
        """Delete every segment whose newest record arrived before ``cutoff_ms`` (the active one too, once it is
        not the only place the log's end offset is recorded). Returns the number of records removed."""
        if self.pending_count:
            self.materialize()
        doomed = 0
        for seg in self._segments[:-1]:
            if seg.max_arrival_ms < cutoff_ms:
                doomed += 1
            else:
                break
        last = self._segments[-1] if self._segments else None
        drop_all = (
            last is not None and doomed == len(self._segments) - 1 and last.size > 0 and last.max_arrival_ms < cutoff_ms
        )
        if drop_all and not self.sealed:
            # Keep a fresh empty segment so the log still knows where it ends.
            self._roll(self.next_offset)
            doomed += 1
        elif drop_all and self.sealed:
            doomed += 1
        if not doomed:
            return 0
        new_start = self._segments[doomed].base_offset if doomed < len(self._segments) else self.next_offset
        old_start = self.log_start
        removed = self.records_between(old_start, new_start)
        write_log_start(self.directory, new_start)
        self.log_start = new_start
        # Each segment leaves the list once its files are gone: should a deletion fail, the segments left (below
        # log-start, so never read) are deleted by the next pass, or by the next open.
        report = RecoveryReport(str(self.directory))
        for seg in self._segments[:doomed]:
            self._files.forget(seg.path)
            if seg.writable:
                seg.seal(durable=False)
            delete_files(self.directory, seg.base_offset, report)
            del self._segments[0]
        return max(0, removed)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)
