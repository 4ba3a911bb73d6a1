"""Shared helpers: a reference model of what a shard log must hand back, and small file surgery tools."""

from __future__ import annotations

import contextlib
import random
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

from shardline.storage.framing import StoredRecord, parse_header
from shardline.storage.log import FileCache, LogTable, RecoveryReport, ShardLog

Triple = tuple[bytes, bytes, bytes]


def open_log(
    directory: Path,
    files: FileCache,
    *,
    segment_bytes: int = 2048,
    index_interval: int = 200,
    segment_max_age_ms: int = 10**12,
    visible_on_write: bool = True,
    sealed: bool = False,
    table: LogTable | None = None,
    slot: int = 0,
) -> tuple[ShardLog, RecoveryReport]:
    return ShardLog.open(
        directory,
        files,
        segment_bytes=segment_bytes,
        index_interval=index_interval,
        segment_max_age_ms=segment_max_age_ms,
        visible_on_write=visible_on_write,
        sealed=sealed,
        table=table,
        slot=slot,
    )


def make_batch(rng: random.Random, n: int, tag: str = "") -> list[Triple]:
    out: list[Triple] = []
    for _ in range(n):
        pk = f"pk{tag}-{rng.randrange(10**6)}".encode()
        ehk = str(rng.randrange(2**128)).encode() if rng.random() < 0.3 else b""
        data = rng.randbytes(rng.randrange(0, 120))
        out.append((pk, ehk, data))
    return out


def expected(base: int, arrival_ms: int, batch: list[Triple]) -> list[StoredRecord]:
    return [
        StoredRecord(base + i, arrival_ms, pk.decode(), ehk.decode() if ehk else None, data)
        for i, (pk, ehk, data) in enumerate(batch)
    ]


class Model:
    """Appends to a log and remembers what every offset must read back as, and which frame holds it."""

    def __init__(self, log: ShardLog, seed: int = 1) -> None:
        self.log = log
        self.rng = random.Random(seed)
        self.records: list[StoredRecord] = []
        self.frames: list[tuple[int, int]] = []  # (base offset, end offset) of each appended frame
        self.next_ms = 1_000

    def append(self, n: int, arrival_ms: int) -> int:
        batch = make_batch(self.rng, n)
        base = self.log.append(batch, arrival_ms)
        assert base == len(self.records)
        self.records.extend(expected(base, arrival_ms, batch))
        self.frames.append((base, base + n))
        return base

    def fill(self, frames: int, *, start_ms: int | None = None, step_ms: int = 10, max_batch: int = 5) -> None:
        """Append ``frames`` frames, one every ``step_ms``, from ``start_ms`` or where the last fill stopped."""
        t = self.next_ms if start_ms is None else start_ms
        for _ in range(frames):
            self.append(self.rng.randint(1, max_batch), t)
            t += step_ms
        self.next_ms = t


def read_all(log: ShardLog, offset: int = 0, *, max_records: int = 7) -> list[StoredRecord]:
    """Every readable record from ``offset``, in pages, checking that each page moves forward."""
    out: list[StoredRecord] = []
    while offset < log.visible_offset:
        recs, nxt = log.read(offset, max_records, 1 << 20)
        assert nxt > offset
        assert all(r.offset < nxt for r in recs)
        out.extend(recs)
        offset = nxt
    return out


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def flip_byte(path: Path, pos: int, mask: int = 0xFF) -> None:
    raw = bytearray(path.read_bytes())
    raw[pos] ^= mask
    path.write_bytes(bytes(raw))


def frame_positions(path: Path) -> list[tuple[int, int, int, int]]:
    """(position, size, base offset, record count) of every frame of a clean segment file."""
    raw = path.read_bytes()
    out = []
    pos = 0
    while pos < len(raw):
        h = parse_header(raw, pos)
        out.append((pos, h.total_size, h.base_offset, h.record_count))
        pos += h.total_size
    return out


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes of a file fail with EFBIG (RLIMIT_FSIZE; SIGXFSZ ignored) until the end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
