"""The data directory and the secret that signs shard iterators are readable by their owner only, whatever the umask,
and a directory made world-readable by an older version is tightened when opened."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from shardline import Engine, Settings
from shardline.storage.catalog import Catalog


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        root = tmp_path / "data"

        async def go() -> None:
            async with Engine(Settings(data_dir=root, fsync="never")) as engine:
                await engine.create_stream("s", 1)

        asyncio.run(go())
    finally:
        os.umask(old)
    assert mode(root) == 0o700
    assert mode(root / "shardline.json") == 0o600
    assert mode(root / "LOCK") == 0o600
    metadata = list((root / "streams").rglob("stream.json"))
    assert metadata and all(mode(p) == 0o600 for p in metadata)


def test_a_world_readable_data_directory_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "data"
    cat = Catalog(root)
    cat.open()
    cat.close()
    os.chmod(root, 0o755)
    os.chmod(root / "shardline.json", 0o644)
    cat = Catalog(root)
    cat.open()
    try:
        assert mode(root) == 0o700
        assert mode(root / "shardline.json") == 0o600
        assert "readable by others" in caplog.text
    finally:
        cat.close()
