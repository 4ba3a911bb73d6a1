"""A stream whose metadata is damaged does not stop the engine: it is reported by name, answers a clear error, keeps
its name and files, and the other streams keep serving. Files from before checksums are checked by their
invariants (hash ranges without a hole or an overlap)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock
from shardline.engine.hashing import hash_key
from shardline.errors import ResourceInUseException, ResourceNotFoundException

from ._kit import Kit

MAX_KEY = (1 << 128) - 1


def _meta_file(engine: Engine, name: str) -> Path:
    return engine.catalog.stream_dir(engine.streams[name].stream_id) / "stream.json"


async def _two_streams(kit: Kit, engine: Engine) -> tuple[Path, Path]:
    for name in ("good", "bad"):
        await engine.create_stream(name, 2)
        await engine.put_record(stream_name=name, data=b"kept", partition_key="p")
    return _meta_file(engine, "good"), _meta_file(engine, "bad")


async def test_a_changed_digit_leaves_one_stream_out_and_the_others_serving(
    kit: Kit, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _, bad = await _two_streams(kit, engine)
    await engine.close()
    raw = bad.read_bytes()
    end_key = str(MAX_KEY // 2).encode()
    assert raw.count(end_key) == 1
    changed = end_key[:-1] + (b"0" if end_key[-1:] != b"0" else b"1")
    bad.write_bytes(raw.replace(end_key, changed))
    with caplog.at_level(logging.ERROR):
        engine = await kit.open()
    assert f"stream bad: metadata file {bad} is damaged (checksum mismatch)" in caplog.text
    assert set(engine.streams) == {"good"}
    assert [r.data for r in await kit.read_all(engine, "good", _shard_of(engine, "good"))] == [b"kept"]
    await engine.put_record(stream_name="good", data=b"more", partition_key="p")
    relative = bad.relative_to(engine.catalog.root)
    message = (
        f"Stream bad under account 000000000000 is unavailable: its metadata file {relative} is damaged (checksum "
        "mismatch). Its data is kept; the stream is served again once the file is repaired."
    )
    with pytest.raises(ResourceInUseException) as exc:
        await engine.describe_stream("bad")
    assert exc.value.message == message
    with pytest.raises(ResourceInUseException, match="is damaged"):
        await engine.put_record(stream_name="bad", data=b"x", partition_key="p")
    with pytest.raises(ResourceInUseException, match="is damaged"):
        await engine.create_stream("bad", 1)  # the name stays taken while its data is kept
    assert (await engine.list_streams()).stream_names == ["good"]
    assert bad.read_bytes() != raw and any(bad.parent.joinpath("shards").iterdir())  # nothing was removed


async def test_a_file_from_before_checksums_is_checked_by_its_hash_ranges(
    kit: Kit, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = await _two_streams(kit, engine)
    await engine.close()
    for path in (good, bad):  # as written before checksums
        path.write_text(json.dumps(json.loads(path.read_bytes())["meta"]))
    meta = json.loads(bad.read_bytes())
    meta["shards"][0]["end_key"] = str(int(meta["shards"][0]["end_key"]) - 10)  # a changed digit
    bad.write_text(json.dumps(meta))
    with caplog.at_level(logging.ERROR):
        engine = await kit.open()
    hole = int(meta["shards"][0]["end_key"]) + 1
    assert f"metadata file {bad} is damaged (open shards leave a hole in the hash key range at {hole})" in caplog.text
    assert set(engine.streams) == {"good"}
    assert [r.data for r in await kit.read_all(engine, "good", _shard_of(engine, "good"))] == [b"kept"]
    with pytest.raises(ResourceInUseException, match="hole in the hash key range"):
        await engine.describe_stream_summary("bad")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m["shards"][1].update(start_key=str(int(m["shards"][1]["start_key"]) - 1)), "overlap"),
        (lambda m: m["shards"][1].update(index=5), "shard 1 has index 5"),
        (lambda m: m["shards"][1].update(parent=1), "impossible parent 1"),
        (lambda m: m.pop("shards"), "missing field 'shards'"),
        (lambda m: m.update(version=7), "unsupported metadata version 7"),
    ],
)
async def test_impossible_metadata_is_reported(kit: Kit, engine: Engine, change: Any, reason: str) -> None:
    _, bad = await _two_streams(kit, engine)
    await engine.close()
    meta = json.loads(bad.read_bytes())["meta"]
    change(meta)
    bad.write_text(json.dumps(meta))
    engine = await kit.open()
    assert set(engine.streams) == {"good"}
    (damage,) = engine.damaged_streams.values()
    assert (damage.name, damage.path) == ("bad", bad)
    assert reason in damage.reason


async def test_an_unreadable_name_is_reported_by_file(
    kit: Kit, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _, bad = await _two_streams(kit, engine)
    await engine.close()
    bad.write_bytes(b"\xff" * 40)
    with caplog.at_level(logging.ERROR):
        engine = await kit.open()
    assert f"stream (name unreadable): metadata file {bad} is damaged (not valid JSON" in caplog.text
    assert set(engine.streams) == {"good"}
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_stream("bad")


def _shard_of(engine: Engine, name: str) -> str:
    """The shard of partition key 'p'."""
    st = engine.streams[name]
    assert st.router is not None
    return st.shards[st.router.route(hash_key(b"p"))].shard_id


async def test_journal_records_of_a_damaged_stream_are_kept_aside_before_the_checkpoint(
    kit: Kit, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Records acknowledged just before a crash exist only in the journal; if their stream's metadata is damaged at
    # the restart, no shard takes them, and the first checkpoint would drop the journal files that hold them.
    engine = await kit.open(fsync="always")
    _, bad = await _two_streams(kit, engine)
    payloads = [f"only-in-the-journal-{i}".encode() for i in range(20)]
    for data in payloads:
        await engine.put_record(stream_name="bad", data=data, partition_key=data.decode())
    crashed = kit.data_dir.parent / "crashed"
    shutil.copytree(kit.data_dir, crashed)  # what a kill of the open engine leaves
    damaged = crashed / bad.relative_to(kit.data_dir)
    segments = b"".join(p.read_bytes() for p in damaged.parent.rglob("*.log"))
    assert not any(data in segments for data in payloads)  # the premise: they were never written to a segment
    damaged.write_bytes(damaged.read_bytes().replace(b'"bad"', b'"bad!"', 1))
    after = type(kit)(crashed, clock)  # a second kit over the crashed copy
    try:
        with caplog.at_level(logging.ERROR):
            reopened = await after.open(fsync="always")
        assert set(reopened.streams) == {"good"}
        copies = list((crashed / "salvage").glob("journal-*"))
        assert len(copies) == 1
        kept = b"".join(p.read_bytes() for p in sorted(copies[0].iterdir()))
        assert all(data in kept for data in payloads)
        assert f"the journal is kept in {copies[0]}" in caplog.text
        await reopened.put_record(stream_name="good", data=b"more", partition_key="p")
    finally:
        await after.close_all()
