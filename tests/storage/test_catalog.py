"""The data directory catalog (lock, clean marker, stream metadata) and atomic metadata writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardline._fsutil import atomic_write, remove_tree
from shardline.storage.catalog import Catalog, DataDirLocked


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(tmp_path / "data")
    cat.open()
    yield cat
    cat.close(clean=False)


def test_a_second_catalog_on_the_same_directory_is_refused(catalog: Catalog) -> None:
    other = Catalog(catalog.root)
    with pytest.raises(DataDirLocked):
        other.open()
    # The refused catalog left the directory as it was and holds nothing.
    other.close()
    assert not (catalog.root / "CLEAN").exists()
    catalog.close()
    other.open()
    assert other.was_clean
    other.close()


def test_clean_marker_only_after_a_clean_close(tmp_path: Path) -> None:
    root = tmp_path / "data"
    cat = Catalog(root)
    cat.open()
    assert not cat.was_clean  # a new directory has no clean shutdown behind it
    secret = cat.secret
    assert len(secret) == 32
    cat.close()
    assert (root / "CLEAN").exists()
    cat = Catalog(root)
    cat.open()
    assert cat.was_clean
    assert cat.secret == secret  # identity survives restarts
    assert not (root / "CLEAN").exists()  # an open directory is never marked clean
    cat.close(clean=False)  # a crash: no marker
    cat = Catalog(root)
    cat.open()
    assert not cat.was_clean
    cat.close()


def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    cat = Catalog(root)
    cat.open()
    cat.close()
    (root / "shardline.json").write_text(json.dumps({"format": 99, "secret": "00"}))
    cat = Catalog(root)
    with pytest.raises(RuntimeError, match="format"):
        cat.open()
    cat.close(clean=False)


def test_streams_round_trip_and_half_created_streams_are_removed(catalog: Catalog) -> None:
    sid = catalog.new_stream_id(1_700_000_000_000)
    assert catalog.new_stream_id(1_700_000_000_000) != sid
    meta = {"name": "orders", "shards": [{"index": 0}], "retention_hours": 24}
    catalog.save_stream(sid, meta)
    shard = catalog.shard_dir(sid, 0)
    shard.mkdir(parents=True)
    (shard / "00000000000000000000.log").write_bytes(b"x")
    # CreateStream stopped before stream.json landed: a directory with shard data but no metadata.
    half = catalog.stream_dir("0000000000001-deadbeef")
    (half / "shards" / "000000000000").mkdir(parents=True)
    (half / "shards" / "000000000000" / "00000000000000000000.log").write_bytes(b"y")
    assert catalog.load_streams() == [(sid, meta)]
    assert not half.exists()
    assert (shard / "00000000000000000000.log").exists()
    meta["retention_hours"] = 48
    catalog.save_stream(sid, meta)
    assert catalog.load_streams() == [(sid, meta)]
    catalog.delete_shard(sid, 0)
    assert not shard.exists()
    catalog.delete_stream(sid)
    assert catalog.load_streams() == []
    assert list(catalog.trash_dir.iterdir()) == []


def test_trash_is_emptied_on_open(tmp_path: Path) -> None:
    root = tmp_path / "data"
    cat = Catalog(root)
    cat.open()
    cat.close()
    # A stream deletion was interrupted after the rename into the trash.
    leftover = root / "trash" / "0000000000001-cafe0000" / "shards" / "000000000000"
    leftover.mkdir(parents=True)
    (leftover / "00000000000000000000.log").write_bytes(b"z" * 100)
    cat = Catalog(root)
    cat.open()
    assert list((root / "trash").iterdir()) == []
    cat.close()


def test_remove_tree(tmp_path: Path) -> None:
    d = tmp_path / "a"
    (d / "b" / "c").mkdir(parents=True)
    (d / "b" / "c" / "f").write_bytes(b"1")
    (d / "g").write_bytes(b"2")
    (d / "link").symlink_to(tmp_path)
    remove_tree(d)
    assert not d.exists() and tmp_path.exists()
    remove_tree(d)  # already gone


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_replaces_whole_files(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "meta.json"
    atomic_write(target, b"first version", durable=durable)
    assert target.read_bytes() == b"first version"
    atomic_write(target, b"2", durable=durable)
    assert target.read_bytes() == b"2"
    big = bytes(range(256)) * 4096
    atomic_write(target, big, durable=durable)
    assert target.read_bytes() == big
    atomic_write(target, b"", durable=durable)
    assert target.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_atomic_write_that_fails_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    # A leftover temp file from a failed (or crashed) write never shadows the real one, and the next write wins.
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]
