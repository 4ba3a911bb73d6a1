"""Replaying the journal at open (``Journal.open``; the rules are in journal.py's docstring).

Every record after the checkpoint that its shard log lacks is staged again at its own offset; damaged bytes are
skipped, repaired or cut (journal_scan.py finds the frames); and for every shard the offsets that may have been
acknowledged are *claimed*, so that no log hands them out again: ``keep_claims`` moves each log past its claims
(reporting the records it lacks as lost), ``keep_reservations`` past its reservation after an unclean stop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .._fsutil import cut_file
from .journal_checkpoint import Claims
from .journal_scan import REC, REC_SIZE, SUFFIX, Frame, claims, file_name, read_frame, repair, resync, runs_past
from .log import LogTable, ShardLog
from .staging import Entry

if TYPE_CHECKING:
    from .journal import Journal

__all__ = ["JournalReport", "Loss", "Replay", "Resolver", "claim", "keep_claims", "keep_reservations"]

log = logging.getLogger("shardline.storage")

Resolver = Callable[[int, int], "ShardLog | None"]


def claim(claimed: Claims, tag: int, index: int, end: int) -> None:
    if end > claimed.get((tag, index), -1):
        claimed[(tag, index)] = end


@dataclass(frozen=True, slots=True)
class Loss:
    """Offsets [first, end) of shard ``index`` of the stream ``tag`` whose records recovery could not restore.
    They may have been acknowledged, so they stay unused: later records keep their own offsets, new ones come
    after them."""

    tag: int
    index: int
    first: int
    end: int


@dataclass(slots=True)
class JournalReport:
    """What replaying the journal at open found."""

    checkpoint: int = 0
    end: int = 0
    frames: int = 0
    records: int = 0  # staged again (they had not reached their segments)
    already_written: int = 0
    orphaned: int = 0  # their stream or shard no longer exists
    torn_bytes: int = 0
    cut_bytes: int = 0  # shard segment bytes after a hole in data written since the checkpoint, refilled from here
    repaired: int = 0  # frames damaged only in their position, length or magic field, replayed whole
    damaged: list[str] = field(default_factory=list)
    lost: list[Loss] = field(default_factory=list)  # offsets lost for good (never handed out again), by shard
    reserved_skipped: int = 0  # offsets left unused after an unclean stop: reserved, maybe acknowledged, not on disk

    @property
    def clean(self) -> bool:
        return not (self.torn_bytes or self.damaged or self.lost)

    @property
    def lost_records(self) -> int:
        return sum(loss.end - loss.first for loss in self.lost)

    def lose(self, tag: int, index: int, first: int, end: int) -> None:
        """Record offsets [first, end) of a shard as lost (joined to the shard's previous range when adjacent)."""
        last = self.lost[-1] if self.lost else None
        if last is not None and (last.tag, last.index, last.end) == (tag, index, first):
            self.lost[-1] = Loss(tag, index, last.first, end)
        else:
            self.lost.append(Loss(tag, index, first, end))


@dataclass(slots=True)
class Replay:
    """One replay of a journal directory's files into ``journal`` (``Journal.stage_records``), recording what it
    finds in ``report`` and the offsets that may have been acknowledged in ``claimed``. A frame cut short by the
    end of the newest file claims its offsets only with ``acks_unsynced`` (see ``Journal.open``)."""

    journal: Journal
    resolve: Resolver
    report: JournalReport
    claimed: Claims
    acks_unsynced: bool
    damaged_bytes: int = 0  # journal bytes found damaged (bounds the offsets they can claim)
    replayed: set[ShardLog] = field(default_factory=set)

    def files(self, directory: Path, readable: bool) -> tuple[list[int], int]:
        """Replay every journal file from the report's checkpoint on; returns the start positions of the files
        present and the journal position after the last intact frame. ``readable``: whether the checkpoint was."""
        report = self.report
        starts = sorted(int(p.name[:20]) for p in directory.glob(f"*{SUFFIX}") if p.name[:20].isdigit())
        end = report.checkpoint
        for i, start in enumerate(starts):
            path = directory / file_name(start)
            size = path.stat().st_size
            nxt = starts[i + 1] if i + 1 < len(starts) else None
            if start + size <= report.checkpoint or (nxt is not None and nxt <= report.checkpoint):
                continue  # wholly before the checkpoint: deleted by the checkpoint below
            begin = max(start, report.checkpoint)
            if start > end and (readable or end > report.checkpoint):
                # (Without a readable checkpoint, files before the oldest one were deleted by a checkpoint.)
                report.damaged.append(f"{path.name}: journal positions {end}..{start} are missing")
                log.error("journal: positions %d..%d are missing before %s", end, start, path.name)
            valid_end = self.file(path, start, begin, newest=nxt is None)
            end = valid_end
            if valid_end < start + size:
                if nxt is None:
                    report.torn_bytes += start + size - valid_end
                    cut_file(path, valid_end - start)
                else:
                    report.damaged.append(f"{path.name}: damaged bytes from journal position {valid_end} on")
                    log.error("journal: damaged bytes from %d on in %s; replaying later files", valid_end, path.name)
        return starts, end

    def file(self, path: Path, start: int, begin: int, *, newest: bool) -> int:
        """Replay the frames of one file from position ``begin``; returns the position after the last intact one.

        After bytes that hold no intact frame the replay goes on at the next intact frame (``resync``): the bytes
        between are replayed when they are one frame damaged only in the fields its place implies (``repair``),
        else they are reported and the offsets their record headers still name are claimed (``claims``). With no
        intact frame after them, they end what this file holds (in the newest file: a torn tail, which is cut; a
        frame there that its file's end cuts short was never written whole, so it claims nothing unless puts are
        acknowledged before the journal is fsynced)."""
        report = self.report
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            pos = begin
            while pos < start + size:
                frame = read_frame(fd, start, pos, size)
                if frame is None or not frame.intact:
                    nxt = resync(fd, start, pos, size)
                    frame = repair(fd, start, pos, nxt)
                    if frame is None:
                        torn = newest and nxt >= start + size and runs_past(fd, start, pos, size)
                        if not torn or self.acks_unsynced:
                            self._claim_damaged(fd, start, pos, nxt)
                        if nxt >= start + size:
                            break  # nothing intact follows: the end of what this file holds
                        report.damaged.append(f"{path.name}: damaged bytes at journal positions {pos}..{nxt} skipped")
                        log.error("journal: damaged bytes at %d..%d in %s; skipped", pos, nxt, path.name)
                        pos = nxt
                        continue
                    report.repaired += 1
                    log.warning(
                        "journal: frame at %d in %s repaired (damaged position or length field)", pos, path.name
                    )
                self._frame(frame)
                report.frames += 1
                pos += frame.total
            return pos
        finally:
            os.close(fd)

    def _claim_damaged(self, fd: int, start: int, pos: int, end: int) -> None:
        """Claim the offsets that the damaged bytes from ``pos`` to ``end`` still name, where plausible: at or
        after their log's next offset, and within the records that all damaged bytes so far could hold."""
        self.damaged_bytes += end - pos
        bound = self.damaged_bytes // REC_SIZE
        tag, records = claims(fd, start, pos, end)
        for index, offset in records:
            lg = self.resolve(tag, index)
            if lg is not None and lg.next_offset <= offset < lg.next_offset + bound:
                claim(self.claimed, tag, index, offset + 1)

    def _frame(self, frame: Frame) -> None:
        report, resolve, claimed = self.report, self.resolve, self.claimed
        tag = frame.tag
        body = frame.body
        plans: dict[LogTable, list[Entry]] = {}  # (a frame holds one stream: one table)
        expect: dict[int, int] = {}
        logs: dict[int, ShardLog | None] = {}
        unpack = REC.unpack_from

        def stage() -> None:
            for table, plan in plans.items():
                self.journal.stage_records(frame.arrival, table, plan, tag=tag)
                report.records += len(plan)
                for slot in {entry[0]: None for entry in plan}:
                    lg = table.logs[slot]
                    assert lg is not None
                    lg.mark_synced(lg.next_offset)  # the caller checkpoints before anyone reads
            plans.clear()

        p = 0
        for _ in range(frame.record_count):
            index, offset, _d, _a, pk_len, ehk_len, data_len = unpack(body, p)
            p += REC_SIZE
            pk_end = p + pk_len
            ehk_end = pk_end + ehk_len
            data_end = ehk_end + data_len
            if index in logs:
                lg = logs[index]
            else:
                lg = logs[index] = resolve(tag, index)
                if lg is not None:
                    claim(claimed, tag, index, lg.claimed_end)
            if lg is None:
                report.orphaned += 1
            elif lg.sealed:  # sealing wrote every staged record first
                if offset < lg.next_offset:
                    report.already_written += 1
                else:  # a sealed log takes no record: this one is lost with the segment bytes before it
                    report.lose(tag, index, offset, offset + 1)
                    log.error("journal: %s: the record at offset %d is past the sealed end", lg.directory, offset)
            else:
                if lg not in self.replayed:
                    # The first record of this shard after the checkpoint: everything the segment holds from
                    # here on was written after the last fsync of the segment, and the journal holds all of it.
                    self.replayed.add(lg)
                    if lg.tail_damage:
                        report.cut_bytes += lg.cut_damaged_tail(offset)
                nxt = expect.get(index, lg.next_offset)
                if offset < nxt:
                    report.already_written += 1
                else:
                    if offset > nxt:  # the records before it are lost; this one keeps its offset
                        stage()
                        report.lose(tag, index, nxt, offset)
                        log.error(
                            "journal: %s: offsets %d..%d (%d records) are lost; the intact records after them keep "
                            "their offsets",
                            lg.directory,
                            nxt,
                            offset - 1,
                            offset - nxt,
                        )
                        lg.skip_to(offset)
                    plans.setdefault(lg.table, []).append(
                        (lg.slot, body[p:pk_end], body[pk_end:ehk_end], body[ehk_end:data_end])
                    )
                    expect[index] = offset + 1
            p = data_end
        stage()


def keep_claims(claimed: Claims, resolve: Resolver, report: JournalReport, marks: Claims) -> bool:
    """Move each log past the offsets claimed for it; those it lacks are lost (reported) and stay unused. Each
    log's mark becomes its new next offset; returns whether any mark was set."""
    marked = False
    for (tag, index), end in sorted(claimed.items()):
        lg = resolve(tag, index)
        if lg is None:
            continue
        # (A sealed log takes no more records: once reported, its loss needs no mark.)
        marks[(tag, index)] = lg.next_offset if lg.sealed else max(end, lg.next_offset)
        marked = True
        first = lg.next_offset
        if end <= first:
            continue
        report.lose(tag, index, first, end)
        log.error(
            "journal: %s: offsets %d..%d (%d records) may have been acknowledged and are lost; new records "
            "start after them",
            lg.directory,
            first,
            end - 1,
            end - first,
        )
        if not lg.sealed:
            lg.skip_to(end)
    return marked


def keep_reservations(reserved: Claims, resolve: Resolver, report: JournalReport) -> None:
    """After an unclean stop, move each log past its reservation: the offsets below it may have been given to
    records acknowledged before a power cut took them, with nothing left on disk to tell (journal.py's docstring)."""
    skipped: list[str] = []
    for (tag, index), end in sorted(reserved.items()):
        lg = resolve(tag, index)
        if lg is None or lg.sealed or end <= lg.next_offset:
            continue
        report.reserved_skipped += end - lg.next_offset
        skipped.append(f"{lg.directory.name} {lg.next_offset}..{end - 1}")
        lg.skip_to(end)
    if skipped:
        log.warning(
            "journal: after an unclean stop under fsync=interval/never, %d logs go on after the offsets reserved "
            "for them (records acknowledged but never written may have had them; they are left unused): %s",
            len(skipped),
            ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else ""),
        )
