"""The writer process of the crash tests, and the record format both sides of the test share.

Run as a script, it opens an Engine with fsync="always" on a data directory and has several asyncio tasks call
PutRecords without pause until the test kills it. After each PutRecords returns, the task appends one line to the
ack file: a JSON list with, per record, [shard id, sequence number, partition key, data length, data digest]. A
line is written with one O_APPEND write, so the parent sees whole lines (it ignores a final line without newline).

Every payload describes itself, so the reader can tell a record some put wrote from a torn or damaged one:

```
 0      4      8      10        14   15                 31          35          35+n
 +------+------+------+---------+----+------------------+-----------+-----------+-----------------+
 | SLCW | run  | task | counter | E? | explicit hash    | body len  | body      | blake2b-128 of  |
 |      | u32  | u16  | u32     | u8 | key u128 (or 0)  | n u32     | (random)  | bytes 0..35+n   |
 +------+------+------+---------+----+------------------+-----------+-----------+-----------------+
```
The partition key ends with ``-<run>-<task>-<counter>``; run, task and counter name the put that wrote it.

Lines on stdout tell the parent where the writer is: ``ready`` (engine open, puts start), ``split-start`` (a
SplitShard is about to be issued), ``split-done``, ``split-skip``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from shardline import Engine, ManualClock, PutRecordsRequestEntry

STREAM = "crash"
MAGIC = b"SLCW"
PARENT_TASK = 0xFFFF  # records the test process writes itself between kills
MAX_HASH_KEY = (1 << 128) - 1
MAX_BATCH_BYTES = 4 * 1024 * 1024
_HEAD = struct.Struct(">4sIHIB16sI")
_SUM_BYTES = 16
_KEY_PREFIXES = ("k", "ключ", "κλειδί", "🔑", "user/", "")


@dataclass(frozen=True, slots=True)
class Origin:
    """Which put wrote a record."""

    run: int
    task: int
    counter: int
    explicit_hash_key: int | None

    @property
    def writer(self) -> tuple[int, int]:
        return self.run, self.task


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_SUM_BYTES).digest()


def digest(data: bytes) -> str:
    """What an ack line carries instead of the data itself."""
    return hashlib.blake2b(data, digest_size=16, person=b"shardline-ack").hexdigest()


def make_record(
    rng: random.Random, run: int, task: int, counter: int, body_len: int | None = None
) -> tuple[bytes, str, str | None]:
    """(data, partition key, explicit hash key or None) of one self-describing record of a random size."""
    if body_len is None:
        r = rng.random()
        if r < 0.6:
            body_len = rng.randrange(0, 200)
        elif r < 0.95:
            body_len = rng.randrange(200, 2000)
        elif r < 0.995:
            body_len = rng.randrange(2000, 16_000)
        else:
            # Frames of many pages: a kill can land between two of their pages.
            body_len = rng.randrange(16_000, 120_000)
    explicit: int | None = None
    r = rng.random()
    if r < 0.02:
        explicit = rng.choice((0, MAX_HASH_KEY))
    elif r < 0.15:
        explicit = rng.getrandbits(128)
    return encode_record(rng, run, task, counter, body_len=body_len, explicit=explicit)


def encode_record(
    rng: random.Random, run: int, task: int, counter: int, *, body_len: int, explicit: int | None
) -> tuple[bytes, str, str | None]:
    head = _HEAD.pack(MAGIC, run, task, counter, explicit is not None, (explicit or 0).to_bytes(16, "big"), body_len)
    payload = head + rng.randbytes(body_len)
    suffix = f"-{run}-{task}-{counter}"
    prefix = rng.choice(_KEY_PREFIXES) + "x" * rng.choice((0, 0, 0, 7, 64, 200))
    pk = (prefix + suffix)[-256:]
    return payload + _checksum(payload), pk, None if explicit is None else str(explicit)


def parse_record(data: bytes, partition_key: str) -> Origin:
    """The origin of a record read back; ValueError when it is not exactly what some put wrote."""
    if len(data) < _HEAD.size + _SUM_BYTES:
        raise ValueError(f"record of {len(data)} bytes is shorter than any record the writer makes")
    magic, run, task, counter, has_key, key, body_len = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if _HEAD.size + body_len + _SUM_BYTES != len(data):
        raise ValueError(f"record of {len(data)} bytes says its body is {body_len} bytes")
    if _checksum(data[:-_SUM_BYTES]) != data[-_SUM_BYTES:]:
        raise ValueError("checksum mismatch")
    if not partition_key.endswith(f"-{run}-{task}-{counter}"):
        raise ValueError(f"partition key {partition_key!r} does not belong to {run}/{task}/{counter}")
    return Origin(run, task, counter, int.from_bytes(key, "big") if has_key else None)


def routing_key(partition_key: str, origin: Origin) -> int:
    """The hash key that chose the record's shard."""
    if origin.explicit_hash_key is not None:
        return origin.explicit_hash_key
    return int.from_bytes(hashlib.md5(partition_key.encode(), usedforsecurity=False).digest(), "big")


def ack_entry(shard_id: str, sequence_number: str, data: bytes, partition_key: str) -> list[object]:
    return [shard_id, sequence_number, partition_key, len(data), digest(data)]


# ---------------------------------------------------------------------------------------------- the process


def _say(word: str) -> None:
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


def _write_line(fd: int, obj: object) -> None:
    os.write(fd, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


def _batch_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.15:
        return 1
    if r < 0.6:
        return rng.randrange(2, 12)
    if r < 0.95:
        return rng.randrange(12, 100)
    return rng.randrange(100, 501)


class _Writer:
    def __init__(self, engine: Engine, ack_fd: int, run: int) -> None:
        self.engine = engine
        self.ack_fd = ack_fd
        self.run = run
        self.batches = 0
        self.batch_done = asyncio.Event()

    async def put_loop(self, task: int, rng: random.Random) -> None:
        counter = 0
        while True:
            entries: list[PutRecordsRequestEntry] = []
            total = 0
            for _ in range(_batch_size(rng)):
                data, pk, ehk = make_record(rng, self.run, task, counter)
                if entries and total + len(data) + len(pk.encode()) > MAX_BATCH_BYTES:
                    break
                counter += 1
                total += len(data) + len(pk.encode())
                entries.append(PutRecordsRequestEntry(data, pk, ehk))
            result = await self.engine.put_records(entries, stream_name=STREAM)
            if result.failed_record_count:
                failed = [r for r in result.records if r.error_code is not None]
                sys.stderr.write(f"unexpected PutRecords failures: {failed[:3]}\n")
                sys.stderr.flush()
                os._exit(2)
            acks = []
            for entry, res in zip(entries, result.records, strict=True):
                assert res.shard_id is not None and res.sequence_number is not None
                acks.append(ack_entry(res.shard_id, res.sequence_number, entry.data, entry.partition_key))
            _write_line(self.ack_fd, acks)
            self.batches += 1
            self.batch_done.set()
            self.batch_done = asyncio.Event()

    async def split_once(self, after_batches: int, max_open_shards: int) -> None:
        while self.batches < after_batches:
            await self.batch_done.wait()
        listed = await self.engine.list_shards(STREAM, shard_filter_type="AT_LATEST")
        opened = listed.shards
        if len(opened) >= max_open_shards:
            _say("split-skip")
            return
        widest = max(opened, key=lambda s: s.hash_key_range.ending_hash_key - s.hash_key_range.starting_hash_key)
        lo, hi = widest.hash_key_range.starting_hash_key, widest.hash_key_range.ending_hash_key
        _say("split-start")
        await self.engine.split_shard(
            stream_name=STREAM, shard_to_split=widest.shard_id, new_starting_hash_key=str((lo + hi + 1) // 2)
        )
        _write_line(self.ack_fd, {"split": widest.shard_id})
        _say("split-done")


async def _watch_parent(max_life_s: float) -> None:
    # A writer whose test died must not outlive it.
    parent = os.getppid()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_life_s
    while os.getppid() == parent and loop.time() < deadline:
        await asyncio.sleep(0.2)
    os._exit(3)


async def _main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    ack_fd = os.open(args.acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    engine = Engine(
        data_dir=Path(args.data_dir),
        fsync="always",
        segment_bytes=args.segment_bytes,
        index_interval_bytes=args.index_interval_bytes,
        clock=ManualClock(args.clock_ms),
    )
    async with engine:
        _say("ready")
        writer = _Writer(engine, ack_fd, args.run)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_watch_parent(args.max_life_s))
            for task in range(args.tasks):
                tg.create_task(writer.put_loop(task, random.Random(rng.getrandbits(64))))
            if args.split_after >= 0:
                tg.create_task(writer.split_once(args.split_after, args.max_open_shards))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir")
    p.add_argument("acks")
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--clock-ms", type=int, required=True)
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--segment-bytes", type=int, required=True)
    p.add_argument("--index-interval-bytes", type=int, required=True)
    p.add_argument("--split-after", type=int, default=-1, help="issue one SplitShard after this many batches")
    p.add_argument("--max-open-shards", type=int, default=16)
    p.add_argument("--max-life-s", type=float, default=120.0)
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()
