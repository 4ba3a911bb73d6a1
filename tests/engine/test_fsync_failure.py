"""A failed fsync of a data file (the journal, a shard segment), injected at the OS-call seam: after it, Linux may
have dropped the pages it could not write and a later fsync of the same file may succeed, so the engine refuses
every write until a restart, records no journal checkpoint past the last good one, and keeps serving reads. The
restart replays the journal: every acknowledged record is back with its sequence number."""

from __future__ import annotations

import asyncio
import errno
import logging
import os

import pytest

from _faults import Fsync, journal_files, segment_files
from shardline import Engine
from shardline.errors import ServiceUnavailable
from shardline.storage.journal_checkpoint import read_checkpoint

from ._kit import Kit

MESSAGE = (
    "The data directory had a write error (fsync failed: {error}): writes are refused, reads go on; restart the "
    "server to recover."
)


def _recorded(engine: Engine) -> int:
    return read_checkpoint(engine.catalog.journal_dir)[0]


async def _assert_refused(engine: Engine, error: str) -> None:
    with pytest.raises(ServiceUnavailable) as exc:
        await engine.put_record(stream_name="s", data=b"refused", partition_key="k")
    assert exc.value.http_status == 503
    assert exc.value.message == MESSAGE.format(error=error)
    with pytest.raises(ServiceUnavailable):
        await engine.put_records([(b"a", "k1"), (b"b", "k2")], stream_name="s")
    with pytest.raises(ServiceUnavailable, match="write error"):
        await engine.add_tags_to_stream({"t": "v"}, stream_name="s")
    with pytest.raises(ServiceUnavailable, match="write error"):
        await engine.create_stream("other", 1)
    assert "other" not in engine.streams


async def _refused_until_restart(kit: Kit, engine: Engine, before: int, acked: list[tuple[str, str, bytes]]) -> None:
    """After a failed fsync, once fsyncs work again: writes and checkpoints stay refused, the recorded checkpoint
    stays where it was, reads answer every acknowledged record, and a restart brings everything back."""
    await _assert_refused(engine, "Input/output error")
    with pytest.raises(ServiceUnavailable):
        await engine.checkpoint()
    assert _recorded(engine) == before
    assert await Kit.stored(engine) == sorted(acked)
    await _reopen_holds(kit, engine, acked)


async def _reopen_holds(
    kit: Kit, engine: Engine, acked: list[tuple[str, str, bytes]], unacknowledged: bytes | None = None
) -> Engine:
    """Close and open again: every acknowledged record is back, numbered as acknowledged; writes work again. The
    put that failed was not acknowledged: it may come back or not, as after a crash."""

    def kept(stored: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
        return [r for r in stored if r[2] != unacknowledged] if unacknowledged is not None else stored

    engine = await kit.reopen(engine)
    assert engine.storage_failed is None
    assert kept(await Kit.stored(engine)) == sorted(acked)
    acked += await Kit.put_numbered(engine, 3, start=1000)
    assert kept(await Kit.stored(engine)) == sorted(acked)
    return engine


async def test_a_failed_journal_fsync_fails_the_put_and_refuses_writes_until_a_restart(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fsync = Fsync(journal_files(kit.data_dir), monkeypatch)
    engine = await kit.open(fsync="always", journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 2)
    await engine.checkpoint()
    acked = await Kit.put_numbered(engine, 10)
    assert fsync.calls
    before = _recorded(engine)
    fsync.failing = True
    with caplog.at_level(logging.ERROR, logger="shardline.engine"):
        with pytest.raises(ServiceUnavailable) as exc:
            await engine.put_record(stream_name="s", data=b"not acknowledged", partition_key="k")
        assert exc.value.message == MESSAGE.format(error="Input/output error")
        fsync.failing = False  # a later fsync would succeed: the state stays all the same
        await _assert_refused(engine, "Input/output error")
        with pytest.raises(ServiceUnavailable):
            await engine.checkpoint()
        assert caplog.text.count("fsync of the journal") == 1  # logged once, not per request
    assert _recorded(engine) == before
    assert await Kit.stored(engine) == sorted(acked)  # reads go on
    await _reopen_holds(kit, engine, acked, b"not acknowledged")


async def test_a_failed_segment_fsync_keeps_the_journal_for_the_restart(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fsync = Fsync(segment_files(kit.data_dir), monkeypatch)
    engine = await kit.open(fsync="always", journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 2)
    acked = await Kit.put_numbered(engine, 10)
    await engine.checkpoint()
    before = _recorded(engine)
    segments = {p: p.stat().st_size for p in engine.catalog.streams_dir.rglob("*.log")}
    acked += await Kit.put_numbered(engine, 10, start=10)
    fsync.failing = True
    with caplog.at_level(logging.ERROR, logger="shardline.engine"):
        with pytest.raises(ServiceUnavailable) as exc:
            await engine.checkpoint()
        assert exc.value.message == MESSAGE.format(error="Input/output error")
        assert "fsync of a shard segment" in caplog.text
    assert fsync.failed
    fsync.failing = False  # the retried checkpoint's fsync would succeed although the bytes were lost
    with pytest.raises(ServiceUnavailable):
        await engine.checkpoint()
    assert _recorded(engine) == before
    await _assert_refused(engine, "Input/output error")
    assert await Kit.stored(engine) == sorted(acked)
    await engine.close()
    # What the failed fsync may have lost: the segment bytes written since the last good checkpoint.
    assert segments
    for path, size in segments.items():
        os.truncate(path, size)
    await _reopen_holds(kit, engine, acked)


async def test_a_segment_fsync_failed_on_a_read_s_roll_refuses_writes_too(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read writes the staged records it covers first; past the segment size that write rolls, and the roll fsyncs
    # the full segment. The read answers from memory when that fails (storage/unwritten.py), so the failure must reach
    # the engine by itself: no later checkpoint may trust the segment.
    fsync = Fsync(segment_files(kit.data_dir), monkeypatch)
    engine = await kit.open(
        fsync="always", segment_bytes=4096, journal_staged_bytes=1 << 30, journal_checkpoint_ms=3_600_000
    )
    await engine.create_stream("s", 1)
    await engine.checkpoint()
    before = _recorded(engine)
    acked = []
    for i in range(60):
        res = await engine.put_record(stream_name="s", data=bytes([i]) * 200, partition_key=f"k{i}")
        acked.append((res.shard_id, res.sequence_number, bytes([i]) * 200))
        if i == 29:  # the first half fills the active segment past its size: the second half's write rolls
            assert await Kit.stored(engine) == sorted(acked)
    fsync.failing = True
    assert await Kit.stored(engine) == sorted(acked)  # (answered although the roll failed)
    assert fsync.failed
    assert engine.storage_failed == "Input/output error"
    fsync.failing = False
    await _assert_refused(engine, "Input/output error")
    with pytest.raises(ServiceUnavailable):
        await engine.checkpoint()
    assert _recorded(engine) == before
    await engine.close()
    await _reopen_holds(kit, engine, acked)


async def test_a_full_disk_at_fsync_time_is_a_failed_fsync(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync = Fsync(segment_files(kit.data_dir), monkeypatch)
    fsync.err = errno.ENOSPC
    engine = await kit.open(fsync="always", journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 1)
    acked = await Kit.put_numbered(engine, 5)
    fsync.failing = True
    with pytest.raises(ServiceUnavailable):
        await engine.checkpoint()
    assert engine.storage_failed is not None and not engine.disk_full
    fsync.failing = False
    await _assert_refused(engine, "No space left on device")
    await _reopen_holds(kit, engine, acked)


async def test_a_failed_interval_fsync_refuses_writes_until_a_restart(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsync = Fsync(journal_files(kit.data_dir), monkeypatch)
    engine = await kit.open(fsync="interval", fsync_interval_ms=5, journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 2)
    await engine.checkpoint()
    before = _recorded(engine)
    fsync.failing = True
    acked = await Kit.put_numbered(engine, 10)  # acknowledged before the (background) fsync
    deadline = asyncio.get_running_loop().time() + 60
    while engine.storage_failed is None:
        assert asyncio.get_running_loop().time() < deadline, "the interval fsync never ran"
        await asyncio.sleep(0.01)
    fsync.failing = False
    await _refused_until_restart(kit, engine, before, acked)


async def test_fsync_never_fsyncs_no_data_file(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(kit.data_dir.resolve())
    fsync = Fsync(lambda path: path.startswith(root) and path.endswith((".wal", ".log")), monkeypatch)
    fsync.failing = True
    engine = await kit.open(fsync="never", journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 2)
    acked = await Kit.put_numbered(engine, 10)
    await engine.checkpoint()
    acked += await Kit.put_numbered(engine, 5, start=10)
    assert engine.storage_failed is None
    assert fsync.calls == 0
    fsync.failing = False  # (a clean close fsyncs the active segments, under never too)
    engine = await _reopen_holds(kit, engine, acked)
    assert engine.was_clean


async def test_a_failed_fsync_of_a_journal_file_ending_at_a_roll(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync = Fsync(journal_files(kit.data_dir), monkeypatch)
    engine = await kit.open(
        fsync="interval", fsync_interval_ms=3_600_000, journal_file_bytes=4096, journal_checkpoint_ms=3_600_000
    )
    await engine.create_stream("s", 2)
    await engine.checkpoint()
    before = _recorded(engine)
    fsync.failing = True
    acked: list[tuple[str, str, bytes]] = []
    with pytest.raises(ServiceUnavailable) as exc:  # (a put that starts a new journal file fsyncs the old one)
        for i in range(1000):
            acked += await Kit.put_numbered(engine, 1, start=i)
    assert exc.value.message == MESSAGE.format(error="Input/output error")
    assert acked and fsync.failed == 1
    fsync.failing = False
    await _refused_until_restart(kit, engine, before, acked)
