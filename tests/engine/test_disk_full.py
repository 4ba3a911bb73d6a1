"""A full disk, injected at the OS-call seam (every write to a file of the data directory fails with ENOSPC): reads
of acknowledged records go on, writes are refused with ServiceUnavailable and work again once space is freed, and
the engine opens read-only. tests/serve/test_full_disk.py does the same on a real full file system."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from _faults import Disk
from shardline.errors import ServiceUnavailable

from ._kit import Kit


@pytest.fixture
def disk(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    yield Disk(kit.data_dir, monkeypatch)


@pytest.mark.parametrize("fsync", ["always", "never"])
async def test_reads_of_acknowledged_records_go_on_when_the_disk_is_full(kit: Kit, disk: Disk, fsync: str) -> None:
    engine = await kit.open(fsync=fsync, journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 2)
    acked = await Kit.put_numbered(engine, 20)
    disk.full = True
    # The records are in the journal but not yet in the segment files; a read used to write them first, and fail.
    assert await Kit.stored(engine) == sorted(acked)
    assert disk.refused
    shard = acked[0][0]
    first = await engine.get_shard_iterator(stream_name="s", shard_id=shard, shard_iterator_type="TRIM_HORIZON")
    page = await engine.get_records(first, limit=1)
    assert page.millis_behind_latest == 0  # (ManualClock: every record arrived now)
    assert len(page.records) == 1
    at = await engine.get_shard_iterator(
        stream_name="s", shard_id=shard, shard_iterator_type="AT_TIMESTAMP", timestamp_ms=kit.clock.now_ms()
    )
    assert [r.sequence_number for r in await kit.drain(engine, at)] == [s for sh, s, _ in sorted(acked) if sh == shard]


async def test_writes_are_refused_while_the_disk_is_full_and_work_again_after(
    kit: Kit, disk: Disk, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await kit.open(fsync="always")
    await engine.create_stream("s", 2)
    acked = await Kit.put_numbered(engine, 5)
    disk.full = True
    with caplog.at_level(logging.WARNING, logger="shardline.engine"):
        with pytest.raises(ServiceUnavailable) as exc:
            await engine.put_record(stream_name="s", data=b"no room", partition_key="k")
        assert exc.value.http_status == 503 and exc.value.retryable
        assert exc.value.message == (
            "No space left on the device of the data directory: writes are refused until space is freed (No space "
            "left on device)."
        )
        batch = await engine.put_records([(b"a", "k1"), (b"b", "k2")], stream_name="s")
        assert batch.failed_record_count == 2
        assert {(r.error_code, r.error_message) for r in batch.records} == {("InternalFailure", exc.value.message)}
        with pytest.raises(ServiceUnavailable):
            await engine.add_tags_to_stream({"t": "v"}, stream_name="s")
        with pytest.raises(ServiceUnavailable):
            await engine.create_stream("other", 1)
        assert "other" not in engine.streams
        assert not any(p.name != engine.streams["s"].stream_id for p in engine.catalog.streams_dir.iterdir())
        assert caplog.text.count("no space left for the data directory") == 1  # logged once, not per request
        disk.full = False
        acked += await Kit.put_numbered(engine, 5, start=5)  # no restart
        assert "space available again" in caplog.text
    stored = await Kit.stored(engine)
    assert stored == sorted(acked)
    # Nothing was renumbered: each shard's sequence numbers are dense and in put order.
    for shard in {sh for sh, _, _ in acked}:
        seqs = [int(s) for sh, s, _ in acked if sh == shard]
        assert seqs == sorted(seqs) and seqs[-1] - seqs[0] == len(seqs) - 1
    engine = await kit.reopen(engine)
    assert await Kit.stored(engine) == sorted(acked)


async def test_the_engine_opens_read_only_on_a_full_disk(
    kit: Kit, disk: Disk, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await kit.open(fsync="always", journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 3)
    acked = await Kit.put_numbered(engine, 30)
    disk.full = True
    await engine.close()  # what is staged cannot be written: the journal keeps it, as after a crash
    assert not (kit.data_dir / "CLEAN").exists()
    with caplog.at_level(logging.ERROR, logger="shardline.engine"):
        engine = await kit.open(fsync="always", journal_checkpoint_ms=3_600_000)
    assert "starting read-only" in caplog.text
    assert engine.disk_full
    assert await Kit.stored(engine) == sorted(acked)
    with pytest.raises(ServiceUnavailable):
        await engine.put_record(stream_name="s", data=b"no room", partition_key="k")
    disk.full = False
    await engine.checkpoint()  # (the background checkpoint, run now)
    acked += await Kit.put_numbered(engine, 3, start=30)
    assert not engine.disk_full
    engine = await kit.reopen(engine)
    assert engine.was_clean
    assert await Kit.stored(engine) == sorted(acked)
