"""The engine's write-ahead journal: one write (and under fsync=always one shared fsync) per put request, however
many shards the request touches.

A request's records are encoded once. The bytes go to the journal as one frame, and each record's segment encoding
is *staged* in its shard's slot of the stream's stage table (staging.py). Staged records are materialised into the
segment files in batches, one frame per shard: when the staged bytes pass a bound, whenever a shard is read,
sealed, trimmed or closed, and at every checkpoint. A checkpoint materialises everything staged, fsyncs the segments
written since the previous checkpoint (unless fsync=never), then records its journal position durably, with the
next offset of every log written since (its *mark*); journal files wholly before that position are deleted.

Recovery opens the shard logs first (cutting torn tails as usual), then replays the journal from the checkpoint:
a record already in its shard's segments is skipped, a record of a stream that no longer exists is skipped, every
other record is staged again at its own offset. Damage costs only the records in the damaged bytes
(journal_scan.py): replay resumes at the next intact frame, found by the position it carries; a frame damaged only in
its position, length or magic field is repaired; bytes with no intact frame after them end the file (in the newest
file, a torn tail, which is cut). When records of a shard are lost, the intact ones after them keep their offsets
and the lost offsets become a hole (``ShardLog.skip_to``). Last, each log moves past every offset that may have been
acknowledged: its mark, the offsets damaged journal bytes still name, the end its segment's cut tail claims. No
sequence number is ever handed out twice, and every loss is reported (``JournalReport.lost``) and logged.

Under fsync=interval and never a put is acknowledged before its frame is durable, and a power cut can take every
frame after the last durable point without leaving a trace for the rules above. So each log there hands out offsets
only below a *reservation* recorded durably in the checkpoint file beforehand: each checkpoint raises it well ahead
of the log (by RESERVE_MIN or four times what the log took since the previous one), and a batch that would come
within FRAME_MAX_RECORDS of it raises it at once (one small write and fsync, on the put's path, rare). After an
unclean stop each log goes on from its reservation: numbers acknowledged and then lost to a power cut are never
handed out again, at the price of a gap (a hole) of unused numbers. A clean close under interval records exact ends.

Layout and format (all integers big-endian):

```
<data dir>/journal/
  00000000000000000000.wal    frames, named by the journal position of the first frame in the file
  checkpoint                  position, marks and reservations, overwritten in place (journal_checkpoint.py)

 frame header (37 bytes)
 0          8       12  13       17          25          33      37
 +----------+-------+---+--------+-----------+-----------+-------+---------...
 | position | len   | M | crc32  | arrival   | stream    | count | records
 | u64      | u32   |(1)| u32    | ms u64    | tag u64   | u32   |
 +----------+-------+---+--------+-----------+-----------+-------+---------...
 len = bytes after the len field; crc = CRC-32 of every other byte of the frame

 record: shard index u32 | offset u64 | the record exactly as a segment frame stores it (framing.py: 15-byte
         header, partition key, explicit hash key, data; the deltas are relative to the shard's staged batch)
```
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from .._fsutil import CutBackFailed, append_all, fsync_dir
from .framing import CRC, HEADER_SIZE, LEN_PREFIX, MAGIC, PREFIX
from .journal_checkpoint import CheckpointFile, Claims, read_checkpoint
from .journal_replay import JournalReport, Loss, Replay, Resolver, claim, keep_claims, keep_reservations
from .journal_scan import ID, TAIL, file_name
from .log import FRAME_BYTES, FRAME_MAX_RECORDS, LogTable, ShardLog
from .segment import Segment
from .staging import ACCELERATED, Entry

__all__ = ["HEADER_SIZE", "Journal", "JournalReport", "Loss", "Resolver", "Staged", "SyncFailed"]

log = logging.getLogger("shardline.storage")

STAGED_OVERHEAD = 40  # memory a staged record may cost beyond its bytes (the reference table: object, list slot)
RESERVE_MIN = 1 << 16  # offsets a log reserves at least (fsync=interval and never; see the module docstring)


# materialize_all writes the frames of many logs in one call per table (StageTable.write_frames) when at least this
# many have a batch to write, half of them from a helper thread when the table is compiled (it writes without the
# GIL) and there is a second core.
FAN_OUT_MIN = 32
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_HELPERS = 1 if ACCELERATED and _CPUS > 1 else 0
_Job = tuple[ShardLog, Segment, int]  # a log, the segment its frame goes to, and the segment's size before


def _write_jobs(jobs: list[_Job]) -> list[Any]:
    """StageTable.write_frames over ``jobs`` (in runs of one table): each job's result, or the exception its run
    raised (a run raises before it writes anything)."""
    out: list[Any] = []
    i = 0
    while i < len(jobs):
        table = jobs[i][0].table.staged
        j = i + 1
        while j < len(jobs) and jobs[j][0].table.staged is table:
            j += 1
        try:
            out += table.write_frames(
                [(lg.slot, seg.fd, pos) for lg, seg, pos in jobs[i:j]], FRAME_MAX_RECORDS, FRAME_BYTES
            )
        except BaseException as exc:  # (handed to the event loop's thread, which raises it once all are recorded)
            out += [exc] * (j - i)
        i = j
    return out


def _sync(fsync: Callable[[Any], None], target: Any) -> None:
    """``fsync(target)``, its failure raised as SyncFailed."""
    try:
        fsync(target)
    except OSError as exc:
        raise SyncFailed(exc.errno, exc.strerror) from exc


def _holds_staged(lg: ShardLog) -> bool:
    """Whether ``lg`` is still open in its table's slot with records staged there."""
    logs = lg.table.logs
    return lg.slot < len(logs) and logs[lg.slot] is lg and lg.pending_count > 0


def _take_back(lg: ShardLog, seg: Segment, pos: int) -> None:
    """Cut a frame that was (or may have been) written to ``seg`` at ``pos`` but not recorded back off the file,
    its records still staged; a write recorded half way (an interrupt inside ``commit_written``) is finished."""
    if seg.size != pos:  # recorded in the segment: it is on disk, so it must leave the stage table too
        if lg.written_offset < seg.end_offset:
            lg.table.staged.consume(lg.slot, seg.end_offset - lg.written_offset)
        return
    try:
        os.ftruncate(seg.fd, pos)
    except OSError as exc:
        seg.torn = True  # (the segment cuts it before its next write)
        log.error("%s: cannot cut an unrecorded frame back off: %s", seg.path, exc)


def _write_error(seg: Segment, err: int, cut_err: int) -> OSError:
    if not cut_err:
        return OSError(err, os.strerror(err))
    seg.torn = True  # (the segment cuts the partial frame before its next write)
    exc = CutBackFailed.of(err, cut_err)
    log.error("%s: %s", seg.path, exc)
    return exc


class SyncFailed(OSError):
    """An fsync of a journal file or of the journal's directory failed on the put path (a roll): bytes written
    before it may be lost although a later fsync succeeds (the engine stops writing, engine/_base.py)."""


class Staged(NamedTuple):
    """What ``Journal.put`` returns: each record's offset and, when asked for, its result (see staging.py)."""

    offsets: list[int]
    results: list[Any] | None


class Journal:
    """Append-only journal of put requests. Appends run on the owner's event loop; ``sync`` may run on a worker
    thread (it has the ``next_offset`` / ``sync`` / ``mark_synced`` shape the group committer expects)."""

    def __init__(self, directory: Path, *, file_bytes: int, durable: bool, max_span_ms: int = 1000) -> None:
        self.directory = directory
        self.file_bytes = file_bytes
        self.max_span_ms = max_span_ms  # a staged batch never spans more arrival time than this
        self.durable = durable  # fsync segments and the checkpoint (fsync=always and interval)
        self.position = 0  # journal position the next frame gets
        self.checkpointed = 0
        self.synced_position = 0
        self.staged_bytes = 0  # about the memory of records staged since the last materialisation
        self.frames_written = 0
        self.checkpoints = 0
        self._files: list[int] = []  # start positions of the journal files, oldest first
        self._file_start = -1  # start of the active file (-1: none yet)
        self._fd = -1
        self._fd_lock = threading.Lock()
        self._dirty: dict[ShardLog, None] = {}  # logs with staged records
        self._unsynced: dict[ShardLog, int] = {}  # logs written since the last checkpoint, with their stream tag
        # Each log's next offset at the last checkpoint, recorded with it: recovery never goes below these, even
        # when the segment bytes that held the records are gone (the journal no longer holds them).
        self._marks: Claims = {}
        self._marks_dirty = False
        self.broken: OSError | None = None
        self._full: list[int] = []  # slots whose batch reached FRAME_RECORDS in the current put
        self._checkpoint = CheckpointFile(directory)
        self._helper: ThreadPoolExecutor | None = None  # writes frames beside the loop's thread (materialize_all)
        # Reservations (fsync=interval and never): the end each log may hand offsets below, as the next checkpoint
        # writes them and as the checkpoint file holds them durably (what the put path checks against).
        self._reserving = False
        self._reserved: Claims = {}
        self._reserved_durable: Claims = {}

    # ----------------------------------------------------------------- open / replay
    @classmethod
    def open(
        cls,
        directory: Path,
        resolve: Resolver,
        *,
        file_bytes: int,
        durable: bool,
        max_span_ms: int = 1000,
        shards: Iterable[tuple[int, int]] = (),
        acks_unsynced: bool = False,
    ) -> tuple[Journal, JournalReport]:
        """Open the journal and stage again, at its own offset, every record after the checkpoint that its shard
        log lacks. Then no log hands out an offset that may have been acknowledged: each log goes on past what
        the checkpoint's marks, the journal's damaged frames and its segment's cut tail claim for it (``shards``:
        (stream tag, shard index) of every open log, whose cut tails the journal cannot know otherwise). A frame
        cut short by the end of the newest file claims its offsets only with ``acks_unsynced`` (puts are
        acknowledged before their frame is fsynced: fsync=interval and never); otherwise it was never
        acknowledged. The caller then materialises and checkpoints (``checkpoint_now``)."""
        directory.mkdir(parents=True, exist_ok=True)
        self = cls(directory, file_bytes=file_bytes, durable=durable, max_span_ms=max_span_ms)
        shards = list(shards)
        checkpoint, readable, marks, reserved = read_checkpoint(directory)
        report = JournalReport(checkpoint=checkpoint)
        self.checkpointed = report.checkpoint
        claimed = dict(marks)
        replay = Replay(self, resolve, report, claimed, acks_unsynced)
        self._files, end = replay.files(directory, readable)
        self._full.clear()  # replay leaves full batches to the checkpoint that follows it
        for tag, index in shards:
            lg = resolve(tag, index)
            if lg is not None:
                claim(claimed, tag, index, lg.claimed_end)
        if keep_claims(claimed, resolve, report, self._marks):
            self._marks_dirty = True
        keep_reservations(reserved, resolve, report)
        if acks_unsynced:
            self._reserving = True
            for tag, index in shards:  # recorded by the checkpoint the caller makes next
                lg = resolve(tag, index)
                if lg is not None and not lg.sealed:
                    self._reserved[(tag, index)] = lg.next_offset + RESERVE_MIN
                    self._marks_dirty = True
        self.position = self.synced_position = max(end, report.checkpoint)
        report.end = self.position
        return self, report

    # ----------------------------------------------------------------- writes
    def stage_records(
        self, now: int, table: LogTable, plan: list[Entry], *, results: bool = False, tag: int = -1
    ) -> tuple[bytes, list[int], list[Any] | None]:
        """Give each record the next offset of its log (``table.logs[slot]``) and stage its segment encoding
        there. Returns the journal encoding of the records, their offsets and (with ``results``, from a table that
        makes them) their results, in plan order. ``tag`` names the stream in the checkpoint's marks (-1: not
        marked). On an error nothing is staged. A log opened with
        ``visible_on_write`` shows staged records to readers at once (its visible offset is its next offset);
        otherwise ``ShardLog.mark_synced`` shows them.

        The per-record loop runs in the stage table (staging.py); it calls back here only at a batch's start and
        when a batch would span too much arrival time."""
        logs = table.logs
        staged = table.staged
        dirty = self._dirty
        unsynced = self._unsynced

        def on_span(slot: int) -> None:  # keep a frame's records close in time (and staged memory bounded)
            lg = logs[slot]
            assert lg is not None
            self._written(staged.count(slot), lg.materialize())

        reserving = self._reserving and tag >= 0

        def on_first(slot: int) -> None:
            lg = logs[slot]
            if lg is None or lg.sealed:
                raise RuntimeError(f"staging a record in log slot {slot}, which has no open log")
            dirty[lg] = None
            unsynced[lg] = tag
            # A batch holds fewer than FRAME_MAX_RECORDS records: it must fit below the durable reservation.
            if reserving and lg.next_offset + FRAME_MAX_RECORDS > self._reserved_durable.get((tag, slot), 0):
                self._reserve_now(table, tag)

        try:
            return staged.stage(now, self.max_span_ms, plan, on_span, on_first, self._full, results)
        except BaseException:
            self._fix_visible(table, plan)
            raise

    def put(self, tag: int, now: int, table: LogTable, plan: list[Entry], *, results: bool = False) -> Staged:
        """Stage ``plan`` (records of the logs of ``table``) and write it as one journal frame. Returns each
        record's offset and, with ``results``, each record's result. On a write error nothing is staged and the
        journal file is as it was (no reader runs before this returns, so records staged for a write that then
        fails are never seen)."""
        if self.broken is not None:
            raise OSError(f"the journal is unusable after an earlier error: {self.broken}")
        self._full.clear()
        body, offsets, made = self.stage_records(now, table, plan, results=results, tag=tag)
        try:
            self._write(now, tag, len(plan), body)
        except OSError:
            self._full.clear()
            self._unstage(table, plan)
            raise
        # Only now (the records are in the journal) may a full batch go to its segment: a failed write must be
        # able to take every record of the request back.
        full, self._full = self._full, []
        for slot in full:
            lg = table.logs[slot]
            if lg is None:
                continue
            try:
                self._written(lg.pending_count, lg.materialize())
            except OSError as exc:  # acknowledged and in the journal: the next pass writes them
                log.error("%s: writing a full batch failed: %s", lg.directory, exc)
        self.staged_bytes += len(body) + STAGED_OVERHEAD * len(plan)
        return Staged(offsets, made)

    def _write(self, now: int, tag: int, count: int, body: bytes) -> None:
        if self._fd < 0 or self.position - self._file_start >= self.file_bytes:
            self._roll()
        pos = self.position
        length = HEADER_SIZE - LEN_PREFIX + len(body)
        head = PREFIX.pack(pos, length, MAGIC)
        tail = TAIL.pack(now, tag, count)
        crc = zlib.crc32(body, zlib.crc32(tail, zlib.crc32(head)))
        try:  # (the request's records are written as they are, not copied into a frame first)
            append_all(self._fd, (head + CRC.pack(crc) + tail, body), pos - self._file_start)
        except CutBackFailed as exc:  # the file now ends in a partial frame: refuse further writes
            self.broken = exc
            log.error("journal: %s; refusing further writes", exc)
            raise
        self.position = pos + HEADER_SIZE + len(body)
        self.frames_written += 1

    def _written(self, count: int, nbytes: int) -> None:
        """``count`` staged records (``nbytes`` of segment encoding) reached their segment."""
        self.staged_bytes = max(0, self.staged_bytes - nbytes - (ID.size + STAGED_OVERHEAD) * count)

    @classmethod
    def _unstage(cls, table: LogTable, plan: list[Entry]) -> None:
        """Take back the records of ``plan`` (staged last, in order): their bytes (and so their offsets) and the
        batch's newest arrival."""
        counts: dict[int, int] = {}
        for slot, *_ in plan:
            counts[slot] = counts.get(slot, 0) + 1
        for slot, n in counts.items():
            table.staged.drop_last(slot, n)
        cls._fix_visible(table, plan)

    @staticmethod
    def _fix_visible(table: LogTable, plan: list[Entry]) -> None:
        """No log shows readers more than it holds after records were taken back."""
        for slot in {entry[0]: None for entry in plan}:
            lg = table.logs[slot] if 0 <= slot < len(table.logs) else None
            if lg is not None and lg.visible_offset > lg.next_offset:
                lg.visible_offset = lg.next_offset

    def _roll(self) -> None:
        """Start a new journal file at the current position (the old one is fsynced first)."""
        with self._fd_lock:
            if self._fd >= 0:
                if self.durable:
                    _sync(os.fsync, self._fd)
                os.close(self._fd)
                self._fd = -1
            start = self.position
            path = self.directory / file_name(start)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if os.fstat(fd).st_size != 0:
                os.ftruncate(fd, 0)  # a leftover that recovery found wholly invalid
            self._fd = fd
            self._file_start = start
            if not self._files or self._files[-1] != start:
                self._files.append(start)
        if self.durable:
            _sync(fsync_dir, self.directory)

    # ----------------------------------------------------------------- durability
    @property
    def next_offset(self) -> int:
        return self.position

    def sync(self) -> None:
        """fsync the active file. Thread-safe against appends on the loop."""
        with self._fd_lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def mark_synced(self, position: int) -> None:
        self.synced_position = max(self.synced_position, position)

    def materialize_all(self) -> None:
        """Write every staged record to its segment files. With many logs, the one-frame batches that need no
        segment roll go out in one ``StageTable.write_frames`` call per table, from two threads (the caller's and a
        helper, while the caller waits): the compiled table takes the CRCs and writes without the GIL, so two cores
        share the work. The rest are written one by one (``ShardLog.materialize``). On an error every log that
        still holds staged records stays dirty, and the error is raised once the others are written (the logs
        written one by one stop at their first error)."""
        logs = list(self._dirty)
        self._dirty = {}
        try:
            rest, error = self._write_fanned_out(logs) if len(logs) >= FAN_OUT_MIN else (logs, None)
            for lg in rest:
                lg.materialize()
            if error is not None:
                raise error
        except BaseException:
            still = {lg: None for lg in logs if _holds_staged(lg)}
            still.update(self._dirty)
            self._dirty = still
            raise
        self.staged_bytes = 0

    def _write_fanned_out(self, logs: list[ShardLog]) -> tuple[list[ShardLog], BaseException | None]:
        """Write the batches that ``ShardLog.frame_segment`` allows with ``StageTable.write_frames``, half of them
        on the helper thread, and record them. Returns the logs left to ``materialize`` and the first failure (its
        log stays staged). A frame written but not recorded (an interrupt between the two) is cut back off its
        file, so a segment file never holds bytes its segment does not account for."""
        jobs: list[_Job] = []
        ordinary: list[ShardLog] = []
        for lg in logs:
            seg = lg.frame_segment()
            if seg is None:
                ordinary.append(lg)
            else:
                jobs.append((lg, seg, seg.size))
        jobs.sort(key=lambda job: id(job[0].table))  # (one write_frames call per table and thread)
        half = len(jobs) // 2 if _HELPERS else len(jobs)
        theirs = None
        if half < len(jobs):
            if self._helper is None:
                self._helper = ThreadPoolExecutor(_HELPERS, thread_name_prefix="shardline-frames")
            theirs = self._helper.submit(_write_jobs, jobs[half:])
        error: BaseException | None = None
        try:
            outcomes = _write_jobs(jobs[:half])
        except BaseException as exc:  # (an interrupt: some of these frames may be written, none recorded)
            outcomes, error = [exc] * half, exc
        while theirs is not None:  # the helper's frames are recorded too, even after an interrupt
            try:
                outcomes += theirs.result()
                theirs = None
            except BaseException as exc:
                error = error or exc
        for (lg, seg, pos), outcome in zip(jobs, outcomes, strict=True):
            if outcome is None:  # (not one frame after all: the ordinary way)
                ordinary.append(lg)
                continue
            if isinstance(outcome, tuple) and len(outcome) == 6:
                try:
                    lg.commit_written(seg, pos, outcome)
                    continue
                except BaseException as exc:
                    outcome = exc  # noqa: PLW2901 (recorded below as this log's failure)
            if isinstance(outcome, tuple):
                outcome = _write_error(seg, *outcome)  # noqa: PLW2901
            else:
                _take_back(lg, seg, pos)
            error = error or outcome
        return ordinary, error

    def begin_checkpoint(self) -> tuple[int, list[ShardLog]]:
        """Materialise everything staged; returns the position the checkpoint may record once the returned logs
        are fsynced (when ``durable``)."""
        position = self.position
        self.materialize_all()
        self._take_marks()
        logs = list(self._unsynced)
        self._unsynced = {}
        return position, logs

    def _take_marks(self) -> None:
        """Mark the next offset of each log written since the last checkpoint (everything is materialised), and
        renew its reservation when less than half of what it would reserve now is left."""
        marks = self._marks
        reserved = self._reserved
        for lg, tag in self._unsynced.items():
            if tag < 0:
                continue
            key = (tag, lg.slot)
            before = marks.get(key)
            if before != lg.next_offset:
                marks[key] = lg.next_offset
                self._marks_dirty = True
            if self._reserving:
                ahead = self._reservation(lg, before)
                if reserved.get(key, 0) < lg.next_offset + ahead // 2:
                    reserved[key] = lg.next_offset + ahead
                    self._marks_dirty = True

    @staticmethod
    def _reservation(lg: ShardLog, mark: int | None) -> int:
        """How far ahead of its next offset a log reserves: four times what it took since its last mark."""
        taken = lg.next_offset - mark if mark is not None else 0
        return max(RESERVE_MIN, 4 * taken)

    def _reserve_now(self, table: LogTable, tag: int) -> None:
        """Reserve ahead for every open log of ``table`` (one stream) and record it durably before the put that
        needs it goes on: one write and one fsync of the checkpoint file for the whole stream."""
        marks = self._marks
        reserved = self._reserved
        for lg in table.logs:
            if lg is not None and not lg.sealed:
                key = (tag, lg.slot)
                ahead = self._reservation(lg, marks.get(key))
                reserved[key] = max(reserved.get(key, 0), lg.next_offset + FRAME_MAX_RECORDS + ahead)
        self._write_checkpoint(self.checkpointed)

    def abort_checkpoint(self, logs: list[ShardLog]) -> None:
        for lg in logs:
            self._unsynced[lg] = -1  # (its mark is already taken)

    def finish_checkpoint(self, position: int) -> None:
        """Record ``position`` durably and delete the journal files wholly before it. May run on a worker thread
        (the engine keeps the fsyncs off its event loop)."""
        if position > self.checkpointed or self._marks_dirty:
            self._write_checkpoint(max(position, self.checkpointed))
            self.checkpointed = max(position, self.checkpointed)
        self.checkpoints += 1
        keep: list[int] = []
        doomed: list[int] = []
        with self._fd_lock:  # _roll adds files on the loop thread
            for i, start in enumerate(self._files):
                end = self._files[i + 1] if i + 1 < len(self._files) else None
                if end is not None and end <= position and start != self._file_start:
                    doomed.append(start)
                else:
                    keep.append(start)
            self._files = keep
        for start in doomed:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / file_name(start)).unlink()

    def _write_checkpoint(self, position: int) -> None:
        """Overwrite the checkpoint file (journal_checkpoint.py) with ``position``, the marks and the reservations."""
        with self._checkpoint.lock:
            self._marks_dirty = False
            items = list(self._marks.items())  # (one call: finish_checkpoint may run beside the loop thread)
            reserved = dict(self._reserved)
            # New reservations must be durable before a put relies on them, under fsync=never too.
            self._checkpoint.write(position, items, reserved, self.durable or reserved != self._reserved_durable)
            self._reserved_durable = reserved

    def checkpoint_now(self) -> None:
        """A synchronous checkpoint (open and close): materialise, fsync what was written, record the position."""
        position, logs = self.begin_checkpoint()
        if self.durable:
            for lg in logs:
                lg.sync()
        self.finish_checkpoint(position)

    def release(self) -> None:
        """Close the journal's files without a checkpoint and without deleting any: the next open replays everything
        since the last checkpoint, as after a crash (the engine closes so after a failed fsync)."""
        self._stop_helper()
        self._close_file()
        self._checkpoint.close()

    def _stop_helper(self) -> None:
        if self._helper is not None:
            self._helper.shutdown()
            self._helper = None

    def _close_file(self) -> None:
        with self._fd_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def close(self) -> None:
        """Checkpoint at the end and delete every journal file: a cleanly closed engine needs no replay. The
        shard logs must be materialised and closed (fsynced) first."""
        try:
            self.materialize_all()
        finally:
            self._stop_helper()
        self._close_file()
        self._take_marks()
        self._unsynced = {}
        # Every log's next offset is exact now and recorded in its mark (durably: reservations fsync the file
        # under never too), so a clean stop leaves no reservation and no gap behind.
        if self._reserved:
            self._reserved = {}
            self._marks_dirty = True
        self.finish_checkpoint(self.position)
        self._checkpoint.close()
        for start in self._files:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / file_name(start)).unlink()
        self._files = []
