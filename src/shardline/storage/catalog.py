"""The data directory: identity, lock, clean-shutdown marker and per-stream metadata files.

```
<data dir>/
  shardline.json                 format version and the iterator-signing secret (written once, atomically)
  LOCK                           flock held while an engine has the directory open
  CLEAN                          present only after a clean close; removed when an engine opens the directory
  streams/<stream id>/stream.json   metadata of one stream (atomic replace, fsynced)
  streams/<stream id>/shards/<shard index>/   one ShardLog per shard
  journal/                       the write-ahead journal of put requests (journal.py)
  trash/                         deleted streams are renamed here first, then removed
```
A stream id is generated (never the user's stream name), so no name can reach the file system as a path.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .._fsutil import atomic_write, fsync_dir, remove_tree

__all__ = ["Catalog", "DataDirLocked"]

FORMAT_VERSION = 1


class DataDirLocked(RuntimeError):
    """Another process has this data directory open."""


class Catalog:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.streams_dir = root / "streams"
        self.trash_dir = root / "trash"
        self.journal_dir = root / "journal"
        self._lock_fd = -1
        self.secret = b""
        self.was_clean = False

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise DataDirLocked(f"data directory {self.root} is in use by another shardline process") from None
        try:
            self._open_locked()
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise

    def _open_locked(self) -> None:
        self.streams_dir.mkdir(exist_ok=True)
        self.trash_dir.mkdir(exist_ok=True)
        ident = self.root / "shardline.json"
        if ident.exists():
            meta = json.loads(ident.read_bytes())
            if meta.get("format") != FORMAT_VERSION:
                raise RuntimeError(f"{ident}: unsupported data format {meta.get('format')!r}")
            self.secret = bytes.fromhex(meta["secret"])
        else:
            self.secret = secrets.token_bytes(32)
            atomic_write(ident, json.dumps({"format": FORMAT_VERSION, "secret": self.secret.hex()}).encode())
        clean = self.root / "CLEAN"
        self.was_clean = clean.exists()
        if self.was_clean:
            clean.unlink()
            fsync_dir(self.root)
        for leftover in self.trash_dir.iterdir():
            remove_tree(leftover)

    def close(self, *, clean: bool = True) -> None:
        if clean and self._lock_fd >= 0:
            atomic_write(self.root / "CLEAN", b"")
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def load_streams(self) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for d in sorted(self.streams_dir.iterdir()):
            meta = d / "stream.json"
            if not meta.exists():
                # CreateStream stopped before its metadata landed: nothing was acknowledged.
                remove_tree(d)
                continue
            out.append((d.name, json.loads(meta.read_bytes())))
        return out

    def new_stream_id(self, created_ms: int) -> str:
        return f"{created_ms:013d}-{secrets.token_hex(4)}"

    def stream_dir(self, stream_id: str) -> Path:
        return self.streams_dir / stream_id

    def shard_dir(self, stream_id: str, shard_index: int) -> Path:
        return self.streams_dir / stream_id / "shards" / f"{shard_index:012d}"

    def save_stream(self, stream_id: str, meta: dict[str, Any]) -> None:
        d = self.stream_dir(stream_id)
        if not d.exists():
            d.mkdir(parents=True)
            fsync_dir(self.streams_dir)
        atomic_write(d / "stream.json", json.dumps(meta, separators=(",", ":"), sort_keys=True).encode())

    def delete_stream(self, stream_id: str) -> None:
        d = self.stream_dir(stream_id)
        if d.exists():
            target = self.trash_dir / stream_id
            os.replace(d, target)
            fsync_dir(self.streams_dir)
            remove_tree(target)

    def delete_shard(self, stream_id: str, shard_index: int) -> None:
        remove_tree(self.shard_dir(stream_id, shard_index))
