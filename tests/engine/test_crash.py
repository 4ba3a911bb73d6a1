"""Crash safety of the engine: a real writer process killed with SIGKILL, and a damaged sealed segment.

The writer (crash_writer.py) runs PutRecords under fsync="always" and reports every acknowledged record. After each
kill this process opens the same data directory and checks what fsync="always" promises: every acknowledged record
is there, byte-identical, in its shard, in order, with its sequence number; nothing torn or partial is readable;
sequence numbers only grow; and the log takes new writes after the recovery.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shardline import Engine, ManualClock, PutRecordsRequestEntry, Record, Shard

WRITER = Path(__file__).with_name("crash_writer.py")


def _load_writer() -> ModuleType:
    # By path: the record format must be the writer's own, whatever the import mode of this test directory.
    spec = importlib.util.spec_from_file_location("shardline_crash_writer", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cw = _load_writer()
STREAM: str = cw.STREAM

SEGMENT_BYTES = 256 * 1024  # small: segments roll during the runs, so kills also land in rolls
INDEX_INTERVAL_BYTES = 16 * 1024
CLOCK_START_MS = 1_700_000_000_000
RUN_CLOCK_STEP_MS = 120_000  # each process sees a later time than the one before it
WAIT_S = 60.0  # only guards against a hung writer; no assertion depends on timing


def _seed() -> int:
    env = os.environ.get("SHARDLINE_CRASH_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(1 << 32)
    print(f"crash test seed: {seed} (SHARDLINE_CRASH_SEED=<seed> repeats its choices; kill moments still vary)")
    return seed


def _engine(data_dir: Path, clock_ms: int, **overrides: Any) -> Engine:
    settings: dict[str, Any] = {
        "segment_bytes": SEGMENT_BYTES,
        "index_interval_bytes": INDEX_INTERVAL_BYTES,
        **overrides,
    }
    return Engine(data_dir=data_dir, fsync="always", clock=ManualClock(clock_ms), **settings)


# ---------------------------------------------------------------------------------------------- bookkeeping


@dataclass
class Ledger:
    """What the test knows across kills."""

    acks: dict[tuple[str, str], tuple[str, int, str]] = field(default_factory=dict)  # (shard, seq) -> pk, len, digest
    splits: set[str] = field(default_factory=set)  # shards an acknowledged SplitShard closed
    snapshot: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # shard -> what the last check read
    kills: int = 0
    kills_while_writing: int = 0
    kills_inside_split: int = 0  # after the writer said split-start and before it said split-done
    acks_checked: int = 0
    records_read: int = 0

    def add_ack(self, shard_id: str, seq: str, pk: str, length: int, digest: str) -> None:
        key = (shard_id, seq)
        old = self.acks.get(key)
        assert old is None or old == (pk, length, digest), f"{shard_id} sequence number {seq} acknowledged twice"
        self.acks[key] = (pk, length, digest)

    def read_ack_file(self, path: Path) -> int:
        """Take in every whole line of a run's ack file; returns the number of acknowledged records."""
        if not path.exists():
            return 0
        # A line without its newline was being written when the kill came: that put was not reported.
        lines = path.read_bytes().split(b"\n")[:-1]
        n = 0
        for line in lines:
            entry = json.loads(line)
            if isinstance(entry, dict):
                self.splits.add(entry["split"])
                continue
            for shard_id, seq, pk, length, digest in entry:
                self.add_ack(shard_id, seq, pk, length, digest)
                n += 1
        return n


class _Stdout:
    """The writer's progress lines, read without blocking forever."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.seen: list[str] = []

    def _pop_lines(self) -> None:
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.seen.append(line.decode())

    def wait_for(self, *words: str) -> str:
        deadline = time.monotonic() + WAIT_S
        start = len(self.seen)
        while True:
            self._pop_lines()
            for word in self.seen[start:]:
                if word in words:
                    return word
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"writer did not say {words} (said {self.seen})"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 4096)
                assert chunk, f"writer exited (code {self.proc.poll()}) before saying {words}"
                self.buf += chunk

    def drain(self) -> list[str]:
        """Everything the (dead) writer said."""
        while chunk := os.read(self.fd, 4096):
            self.buf += chunk
        self._pop_lines()
        return self.seen


@contextmanager
def _writer(data_dir: Path, acks: Path, stderr: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(data_dir), str(acks), *args],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@dataclass(frozen=True)
class KillPlan:
    # "startup": during start and recovery; "early"/"late": while writing; "split": inside a SplitShard;
    # "after-split": once a SplitShard was acknowledged
    kind: str
    delay_s: float


def _crash_round(
    tmp: Path, data_dir: Path, ledger: Ledger, *, run: int, seed: int, plan: KillPlan, args: list[str]
) -> bool:
    """Start a writer, kill it as planned; returns whether it had started writing."""
    acks = tmp / f"acks-{run}.jsonl"
    stderr = tmp / f"writer-{run}.err"
    argv = [
        f"--run={run}",
        f"--seed={seed}",
        f"--clock-ms={CLOCK_START_MS + run * RUN_CLOCK_STEP_MS}",
        f"--segment-bytes={SEGMENT_BYTES}",
        f"--index-interval-bytes={INDEX_INTERVAL_BYTES}",
        *args,
    ]
    with _writer(data_dir, acks, stderr, *argv) as proc:
        out = _Stdout(proc)
        try:
            if plan.kind != "startup":
                out.wait_for("ready")
            if plan.kind == "split":
                out.wait_for("split-start", "split-skip")
            if plan.kind == "after-split":
                out.wait_for("split-done", "split-skip")
            time.sleep(plan.delay_s)
            assert proc.poll() is None, f"writer stopped on its own with code {proc.returncode}"
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nwriter stderr:\n{stderr.read_text()[-3000:]}") from None
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        said = out.drain()
    ledger.kills += 1
    ledger.read_ack_file(acks)
    started = "ready" in said
    ledger.kills_while_writing += started
    ledger.kills_inside_split += "split-start" in said and "split-done" not in said
    return started


# ---------------------------------------------------------------------------------------------- checks


async def _read_shard(engine: Engine, shard_id: str) -> tuple[list[Record], set[str] | None]:
    """Every record of a shard from TRIM_HORIZON, and the children the end of a closed shard names."""
    it: str | None = await engine.get_shard_iterator(
        stream_name=STREAM, shard_id=shard_id, shard_iterator_type="TRIM_HORIZON"
    )
    out: list[Record] = []
    children: set[str] | None = None
    while it is not None:
        res = await engine.get_records(it, limit=10_000)
        out.extend(res.records)
        if res.child_shards is not None:
            children = {c.shard_id for c in res.child_shards}
        if not res.records:
            break
        it = res.next_shard_iterator
    return out, children


async def _read_by_lineage(engine: Engine, shards: dict[str, Shard]) -> dict[str, list[Record]]:
    """Read as a consumer does: root shards first, then each child once all its parents are read, found through the
    child shards that the end of each parent names."""

    def parents(s: Shard) -> set[str]:
        return {p for p in (s.parent_shard_id, s.adjacent_parent_shard_id) if p is not None}

    records: dict[str, list[Record]] = {}
    todo = [sid for sid, s in shards.items() if not parents(s)]
    while todo:
        sid = todo.pop(0)
        records[sid], named = await _read_shard(engine, sid)
        expected = {c for c, s in shards.items() if sid in parents(s)}
        closed = shards[sid].sequence_number_range.ending_sequence_number is not None
        if closed:
            assert named == expected, f"closed {sid} names children {named}, the shard list says {expected}"
        else:
            assert named is None and not expected, f"open {sid} has children {named or expected}"
        for child in sorted(expected):
            if parents(shards[child]) <= records.keys() and child not in records and child not in todo:
                todo.append(child)
    assert records.keys() == shards.keys(), f"shards not reachable from the roots: {shards.keys() - records.keys()}"
    return records


def _check_records(shards: dict[str, Shard], records: dict[str, list[Record]], ledger: Ledger) -> None:
    found: dict[tuple[str, str], tuple[str, int, str]] = {}
    origin_at: dict[tuple[int, int, int], tuple[str, str]] = {}
    counters: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}  # shard -> writer -> first, last counter
    for sid, recs in records.items():
        rng_ = shards[sid].hash_key_range
        last_seq = -1
        per_writer: dict[tuple[int, int], tuple[int, int]] = {}
        snapshot: list[tuple[int, str, str]] = []
        for rec in recs:
            seq = int(rec.sequence_number)
            assert seq > last_seq, f"{sid}: sequence number {seq} after {last_seq}"
            last_seq = seq
            try:
                origin = cw.parse_record(rec.data, rec.partition_key)
            except ValueError as exc:
                raise AssertionError(f"{sid} {seq}: a record no put wrote is readable: {exc}") from None
            key = cw.routing_key(rec.partition_key, origin)
            assert rng_.starting_hash_key <= key <= rng_.ending_hash_key, f"{sid} {seq}: hash key {key} not in range"
            ident = (origin.run, origin.task, origin.counter)
            assert ident not in origin_at, f"record {ident} readable twice: {origin_at[ident]} and {(sid, seq)}"
            origin_at[ident] = (sid, rec.sequence_number)
            first, last = per_writer.get(origin.writer, (origin.counter, -1))
            assert origin.counter > last, f"{sid}: writer {origin.writer} record {origin.counter} after {last}"
            per_writer[origin.writer] = (first, origin.counter)
            dig = cw.digest(rec.data)
            found[(sid, rec.sequence_number)] = (rec.partition_key, len(rec.data), dig)
            snapshot.append((seq, rec.partition_key, dig))
        counters[sid] = per_writer
        before = ledger.snapshot.get(sid, [])
        assert snapshot[: len(before)] == before, f"{sid}: records read after an earlier kill changed or vanished"
        ledger.snapshot[sid] = snapshot
        ledger.records_read += len(recs)

    lost = [k for k in ledger.acks if k not in found]
    assert not lost, f"{len(lost)} of {len(ledger.acks)} acknowledged records are missing, e.g. {lost[:3]}"
    changed = [k for k, v in ledger.acks.items() if found[k] != v]
    assert not changed, f"{len(changed)} acknowledged records read back different, e.g. {changed[:3]}"
    ledger.acks_checked += len(ledger.acks)

    for sid, s in shards.items():
        for parent in (s.parent_shard_id, s.adjacent_parent_shard_id):
            if parent is None:
                continue
            if records[parent] and records[sid]:
                assert int(records[sid][0].sequence_number) > int(records[parent][-1].sequence_number)
            # One writer task puts one batch at a time, and a reshard closes the parent between two batches.
            for writer, (first, _) in counters[sid].items():
                if writer in counters[parent]:
                    assert counters[parent][writer][1] < first, f"writer {writer} wrote to {parent} after {sid}"
    for sid in ledger.splits:
        assert shards[sid].sequence_number_range.ending_sequence_number is not None, f"acked split of {sid} lost"


async def _write_after_recovery(
    engine: Engine, shards: dict[str, Shard], records: dict[str, list[Record]], ledger: Ledger, run: int
) -> None:
    """One record into every open shard: each gets a sequence number above everything the shard held."""
    rng = random.Random(run)
    opened = [s for s in shards.values() if s.sequence_number_range.ending_sequence_number is None]
    entries = []
    for i, s in enumerate(opened):
        key = s.hash_key_range.starting_hash_key
        data, pk, ehk = cw.encode_record(rng, run, cw.PARENT_TASK, i, body_len=rng.randrange(0, 3000), explicit=key)
        entries.append(PutRecordsRequestEntry(data, pk, ehk))
    result = await engine.put_records(entries, stream_name=STREAM)
    assert result.failed_record_count == 0, result
    for s, entry, res in zip(opened, entries, result.records, strict=True):
        assert res.shard_id == s.shard_id and res.sequence_number is not None
        # Above the shard's own records, and above its parents' for a child that has none yet.
        lineage = [s.shard_id, *(p for p in (s.parent_shard_id, s.adjacent_parent_shard_id) if p is not None)]
        floor = max((int(records[sid][-1].sequence_number) for sid in lineage if records[sid]), default=-1)
        assert int(res.sequence_number) > floor, f"{s.shard_id}: new sequence number {res.sequence_number} <= {floor}"
        it = await engine.get_shard_iterator(
            stream_name=STREAM,
            shard_id=s.shard_id,
            shard_iterator_type="AT_SEQUENCE_NUMBER",
            starting_sequence_number=res.sequence_number,
        )
        got = (await engine.get_records(it, limit=1)).records
        assert [(r.sequence_number, r.data, r.partition_key) for r in got] == [
            (res.sequence_number, entry.data, entry.partition_key)
        ]
        ledger.add_ack(s.shard_id, res.sequence_number, entry.partition_key, len(entry.data), cw.digest(entry.data))


async def _check_after_kill(data_dir: Path, ledger: Ledger, run: int, writer_started: bool) -> None:
    async with _engine(data_dir, CLOCK_START_MS + run * RUN_CLOCK_STEP_MS + RUN_CLOCK_STEP_MS // 2) as engine:
        # A kill tears at most the end of an active segment; anything else means a write went wrong.
        damaged = [(r.directory, r.corrupt) for r in engine.recovery if r.corrupt]
        assert not damaged, f"recovery after a kill found damage inside the logs: {damaged}"
        if writer_started:
            assert not engine.was_clean
        listed = await engine.list_shards(STREAM)
        assert listed.next_token is None
        shards = {s.shard_id: s for s in listed.shards}
        records = await _read_by_lineage(engine, shards)
        _check_records(shards, records, ledger)
        await _write_after_recovery(engine, shards, records, ledger, run)


async def _create_stream(data_dir: Path, shard_count: int) -> None:
    async with _engine(data_dir, CLOCK_START_MS) as engine:
        await engine.create_stream(STREAM, shard_count)


def _kill_loop(
    tmp_path: Path, *, rounds: int, shard_count: int, plan_for: Callable[[random.Random, int], KillPlan], split: bool
) -> Ledger:
    seed = _seed()
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    asyncio.run(_create_stream(data_dir, shard_count))
    ledger = Ledger()
    for run in range(1, rounds + 1):
        plan = plan_for(rng, run)
        args = [f"--split-after={rng.randrange(0, 30)}"] if split else []
        started = _crash_round(tmp_path, data_dir, ledger, run=run, seed=rng.getrandbits(32), plan=plan, args=args)
        try:
            asyncio.run(_check_after_kill(data_dir, ledger, run, started))
        except AssertionError as exc:
            raise AssertionError(f"after kill {run} ({plan}), seed {seed}: {exc}") from exc
    print(
        f"kills: {ledger.kills} ({ledger.kills_while_writing} while writing), acknowledged records: "
        f"{len(ledger.acks)}, ack checks: {ledger.acks_checked}, records read: {ledger.records_read}, "
        f"shards: {len(ledger.snapshot)}, splits acknowledged: {len(ledger.splits)}, kills inside a split: "
        f"{ledger.kills_inside_split}"
    )
    return ledger


def _random_plan(rng: random.Random, run: int) -> KillPlan:
    kind = rng.choices(("startup", "early", "late"), weights=(1, 3, 6))[0]
    if kind == "startup":
        return KillPlan(kind, rng.uniform(0.0, 0.25))
    if kind == "early":
        return KillPlan(kind, rng.uniform(0.0, 0.02))
    return KillPlan(kind, rng.uniform(0.02, 0.3))


def _split_plan(rng: random.Random, run: int) -> KillPlan:
    # The first kill comes after an acknowledged split, so every run has a lineage to check.
    kind = "after-split" if run == 1 else rng.choices(("split", "after-split", "late"), weights=(4, 2, 2))[0]
    if kind == "split":
        return KillPlan(kind, rng.uniform(0.0, 0.005))
    if kind == "after-split":
        return KillPlan(kind, rng.uniform(0.0, 0.1))
    return KillPlan(kind, rng.uniform(0.0, 0.3))


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_record(tmp_path: Path) -> None:
    ledger = _kill_loop(tmp_path, rounds=24, shard_count=3, plan_for=_random_plan, split=False)
    assert ledger.kills == 24
    assert ledger.kills_while_writing >= 12
    assert len(ledger.acks) > 0


@pytest.mark.slow
def test_sigkill_during_resharding_keeps_lineage(tmp_path: Path) -> None:
    ledger = _kill_loop(tmp_path, rounds=10, shard_count=2, plan_for=_split_plan, split=True)
    assert ledger.kills == 10
    assert ledger.splits, "no SplitShard was acknowledged before a kill"
    assert len(ledger.snapshot) > 2


# ---------------------------------------------------------------------------------------------- damaged segment

_FRAME_HEAD = struct.Struct(">QIBII")  # base offset, length after the first 12 bytes, magic, crc, record count
_FRAME_HEADER_BYTES = 37


def _frames(raw: bytes) -> list[tuple[int, int, int, int]]:
    """(position, size, base offset, record count) of each frame of a segment file, from the documented layout."""
    out = []
    pos = 0
    while pos < len(raw):
        base, length, _magic, _crc, count = _FRAME_HEAD.unpack_from(raw, pos)
        out.append((pos, 12 + length, base, count))
        pos += 12 + length
    assert pos == len(raw)
    return out


async def _put_small_batches(engine: Engine, rng: random.Random, batches: int) -> dict[str, tuple[bytes, str]]:
    acked: dict[str, tuple[bytes, str]] = {}
    counter = 0
    for _ in range(batches):
        entries = []
        for _ in range(rng.randrange(1, 4)):
            entries.append(PutRecordsRequestEntry(*cw.make_record(rng, 1, 0, counter, rng.randrange(20, 200))))
            counter += 1
        result = await engine.put_records(entries, stream_name=STREAM)
        assert result.failed_record_count == 0
        for e, r in zip(entries, result.records, strict=True):
            assert r.sequence_number is not None
            acked[r.sequence_number] = (e.data, e.partition_key)
    return acked


@pytest.mark.parametrize("index", ["kept", "removed"])
@pytest.mark.parametrize("damage", ["record bytes", "header base offset"])
def test_flipped_byte_in_sealed_segment_loses_only_its_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, index: str
) -> None:
    data_dir = tmp_path / "data"
    # Small segments and a dense index: with the index kept, the damaged frame lies before the last index entry, so
    # only a read finds it; with the index removed, opening the shard rescans the segment.
    small = {"segment_bytes": 4096, "index_interval_bytes": 256, "journal_staged_bytes": 0}

    async def write() -> dict[str, tuple[bytes, str]]:
        async with _engine(data_dir, CLOCK_START_MS, **small) as engine:
            await engine.create_stream(STREAM, 1)
            return await _put_small_batches(engine, random.Random(11), 120)

    acked = asyncio.run(write())
    segments = sorted(data_dir.glob("streams/*/shards/*/*.log"))
    assert len(segments) >= 4, segments
    target = segments[(len(segments) - 1) // 2]  # a sealed one: the last segment is the active one
    raw = bytearray(target.read_bytes())
    middle = len(raw) // 2
    pos, _size, base, count = next(f for f in _frames(bytes(raw)) if f[0] <= middle < f[0] + f[1])
    if damage == "record bytes":
        flip = max(middle, pos + _FRAME_HEADER_BYTES)  # inside the records, which the frame's CRC covers
    else:
        flip = pos + 7  # the low byte of the frame's base offset, which comes before the CRC field
    raw[flip] ^= 0xFF
    target.write_bytes(bytes(raw))
    if index == "removed":
        target.with_suffix(".index").unlink()
    first_seq = min(int(s) for s in acked)  # offset 0 of a fresh shard
    lost = {str(first_seq + o) for o in range(base, base + count)}
    assert lost <= acked.keys()

    async def read_back(run: int) -> tuple[list[Record], list[Any]]:
        async with _engine(data_dir, CLOCK_START_MS + run * RUN_CLOCK_STEP_MS, **small) as engine:
            shard_id = (await engine.list_shards(STREAM)).shards[0].shard_id
            recs, _ = await _read_shard(engine, shard_id)
            corrupt = [c for r in engine.recovery for c in r.corrupt]
            data, pk, _ = cw.make_record(random.Random(run), run, cw.PARENT_TASK, 0, 100)
            res = await engine.put_record(stream_name=STREAM, data=data, partition_key=pk)
            assert int(res.sequence_number) > max(int(s) for s in acked)
            acked[res.sequence_number] = (data, pk)
            return recs, corrupt

    for run in (1, 2):  # the damage stays contained when the directory is opened again
        expected = {s: v for s, v in acked.items() if s not in lost}
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="shardline"):
            recs, corrupt = asyncio.run(read_back(run))
        seqs = [int(r.sequence_number) for r in recs]
        assert seqs == sorted(set(seqs))
        for r in recs:
            cw.parse_record(r.data, r.partition_key)
        got = {r.sequence_number: (r.data, r.partition_key) for r in recs}
        missing = sorted(int(s) - first_seq for s in expected.keys() - got.keys())
        wrong = sorted(int(s) - first_seq for s in got if got[s] != expected.get(s))
        assert not missing and not wrong, (
            f"frame at offsets {base}..{base + count - 1} damaged; offsets missing: {missing}, read back with other "
            f"records' bytes: {wrong}"
        )
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("shardline")]
        assert errors or corrupt, "the damaged frame went unreported"
        for c in corrupt:
            assert c.segment == target.stem and c.first_offset <= base and base + count <= c.end_offset, c
