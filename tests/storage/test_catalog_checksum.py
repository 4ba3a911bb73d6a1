"""Metadata files carry a checksum: a damaged stream.json is reported by name and left out, a damaged shardline.json
is set aside and rebuilt, and files written before the checksum still load."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardline.storage.catalog import Catalog, DamagedMetadata, read_sealed, seal

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _json, max_size=6))
def test_sealed_metadata_round_trips(meta: dict[str, object]) -> None:
    raw = seal(meta)
    assert read_sealed(raw) == meta
    assert json.loads(raw)["meta"] == meta  # still plain JSON


@given(st.data())
def test_any_changed_byte_of_a_sealed_file_is_caught(data: st.DataObject) -> None:
    raw = seal({"name": "orders", "shards": [{"start_key": "0", "end_key": str((1 << 128) - 1)}]})
    i = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    damaged = raw[:i] + bytes([new]) + raw[i + 1 :]
    with pytest.raises(DamagedMetadata):
        read_sealed(damaged)


def test_files_without_a_checksum_still_load_and_new_writes_seal(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "data")
    cat.open()
    old = {"version": 1, "name": "orders", "retention_hours": 24}
    d = cat.stream_dir("0000000000001-00000001")
    d.mkdir(parents=True)
    (d / "stream.json").write_text(json.dumps(old))
    assert cat.load_streams() == [("0000000000001-00000001", old)]
    cat.save_stream("0000000000001-00000001", old)
    raw = (d / "stream.json").read_bytes()
    assert raw.startswith(b'{"crc32":"')
    assert cat.load_streams() == [("0000000000001-00000001", old)]
    cat.close()


def test_a_damaged_stream_file_is_reported_by_name_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cat = Catalog(tmp_path / "data")
    cat.open()
    good = {"version": 1, "name": "good"}
    cat.save_stream("0000000000001-0000000a", good)
    cat.save_stream("0000000000001-0000000b", {"version": 1, "name": "bad", "retention_hours": 24})
    bad = cat.stream_dir("0000000000001-0000000b") / "stream.json"
    bad.write_bytes(bad.read_bytes().replace(b'"retention_hours":24', b'"retention_hours":25'))
    (cat.stream_dir("0000000000001-0000000c")).mkdir()
    garbage = cat.stream_dir("0000000000001-0000000c") / "stream.json"
    garbage.write_bytes(b"\x00\x01not json")
    with caplog.at_level(logging.ERROR, logger="shardline.storage"):
        assert cat.load_streams() == [("0000000000001-0000000a", good)]
    first, second = cat.damaged_streams
    assert (first.stream_id, first.name, first.path, first.reason) == (
        "0000000000001-0000000b",
        "bad",
        bad,
        "checksum mismatch",
    )
    assert (second.stream_id, second.name, second.path) == ("0000000000001-0000000c", None, garbage)
    assert second.reason.startswith("not valid JSON")
    assert f"stream bad: metadata file {bad} is damaged (checksum mismatch)" in caplog.text
    assert f"metadata file {garbage} is damaged (not valid JSON" in caplog.text
    assert bad.exists() and garbage.exists()  # left for a repair
    cat.close()


def test_a_damaged_identity_file_is_set_aside_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "data"
    cat = Catalog(root)
    cat.open()
    cat.close()
    ident = root / "shardline.json"
    damaged = ident.read_bytes().replace(b'"format":1', b'"format":2')
    ident.write_bytes(damaged)
    cat = Catalog(root)
    with caplog.at_level(logging.ERROR, logger="shardline.storage"):
        cat.open()
    assert f"{ident} is damaged (checksum mismatch)" in caplog.text
    assert (root / "shardline.json.damaged").read_bytes() == damaged
    assert len(cat.secret) == 32
    secret = cat.secret
    cat.close()
    cat = Catalog(root)
    cat.open()
    assert cat.secret == secret  # the rebuilt file is sealed and kept
    cat.close()


def test_an_identity_file_from_before_checksums_keeps_its_secret(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "shardline.json").write_text(json.dumps({"format": 1, "secret": "ab" * 32}))
    cat = Catalog(root)
    cat.open()
    assert cat.secret == bytes.fromhex("ab" * 32)
    cat.close()
