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

Both metadata files are sealed with a checksum of their exact bytes, and stay plain JSON:

```
{"crc32":"<8 hex digits>","meta":<the metadata, compact JSON with sorted keys>}
crc32 = zlib CRC-32 of the bytes of <the metadata> as they stand in the file
```
A file without the seal (written before it existed) is read as before; every write seals.

A damaged stream.json does not stop the directory from opening: the stream is reported (``damaged``) and its files
are left untouched for a repair. A damaged shardline.json is set aside as ``shardline.json.damaged`` and replaced:
it holds only the secret that signs shard iterators, which expire after five minutes anyway.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fsutil import atomic_write, fsync_dir, remove_tree

__all__ = ["Catalog", "DamagedMetadata", "DamagedStream", "DataDirLocked", "read_sealed", "seal"]

log = logging.getLogger("shardline.storage")

FORMAT_VERSION = 1
_SEALED = re.compile(rb'\{"crc32":"([0-9a-f]{8})","meta":(.*)\}', re.DOTALL)


class DamagedMetadata(ValueError):
    """A metadata file that cannot be trusted; the message says why."""


@dataclass(frozen=True, slots=True)
class DamagedStream:
    """A stream whose metadata could not be loaded. ``name`` is the name the file still shows, if any (a claim
    from a damaged file, used only to answer requests for it clearly)."""

    stream_id: str
    path: Path
    reason: str
    name: str | None = None


def seal(meta: dict[str, Any]) -> bytes:
    """The bytes of a metadata file: ``meta`` with the checksum of its encoding (module docstring)."""
    body = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    return b'{"crc32":"%08x","meta":%b}' % (zlib.crc32(body), body)


def read_sealed(raw: bytes) -> dict[str, Any]:
    """The metadata in ``raw`` (sealed, or unsealed from before seals). Raises DamagedMetadata."""
    sealed = _SEALED.fullmatch(raw)
    body = raw
    if sealed is not None:
        body = sealed.group(2)
        if zlib.crc32(body) != int(sealed.group(1), 16):
            raise DamagedMetadata("checksum mismatch")
    try:
        meta = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DamagedMetadata(f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DamagedMetadata("not a JSON object")
    if sealed is None and ("crc32" in meta or "meta" in meta):
        raise DamagedMetadata("damaged checksum header")
    return meta


def _claimed_name(raw: bytes) -> str | None:
    """The stream name a damaged file still shows, if it shows one."""
    sealed = _SEALED.fullmatch(raw)
    try:
        meta = json.loads(sealed.group(2) if sealed is not None else raw)
    except (UnicodeDecodeError, ValueError):
        return None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and name else None


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
        self.damaged_streams: list[DamagedStream] = []  # what the last load_streams could not load

    def open(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(self.root, 0o700)
        self._lock_fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
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
        self._open_identity(self.root / "shardline.json")
        clean = self.root / "CLEAN"
        self.was_clean = clean.exists()
        if self.was_clean:
            clean.unlink()
            fsync_dir(self.root)
        for leftover in self.trash_dir.iterdir():
            remove_tree(leftover)

    def _open_identity(self, ident: Path) -> None:
        if ident.exists():
            try:
                meta = read_sealed(ident.read_bytes())
                fmt = meta.get("format")
                if fmt == FORMAT_VERSION:
                    self.secret = bytes.fromhex(meta["secret"])
                    if len(self.secret) != 32:
                        raise DamagedMetadata(f"a secret of {len(self.secret)} bytes")
                    _owner_only(ident, 0o600)
                    return
            except (DamagedMetadata, KeyError, TypeError, ValueError) as exc:
                # Only the iterator-signing secret is lost: iterators handed out before stop working (they expire
                # after five minutes anyway). The damaged file stays beside the new one for inspection.
                aside = ident.with_name(ident.name + ".damaged")
                log.error(
                    "%s is damaged (%s): moved to %s and replaced with a new secret; shard iterators handed out "
                    "before are no longer valid",
                    ident,
                    exc,
                    aside.name,
                )
                os.replace(ident, aside)
            else:
                raise RuntimeError(f"{ident}: unsupported data format {fmt!r}")
        self.secret = secrets.token_bytes(32)
        atomic_write(ident, seal({"format": FORMAT_VERSION, "secret": self.secret.hex()}))

    def salvage_journal(self, now_ms: int) -> Path:
        """A durable copy of the journal files in ``salvage/journal-<now_ms>/``, made before a checkpoint may drop
        records that no loaded stream claims (see Engine._salvage_journal); returns the copy's directory."""
        target = self.root / "salvage" / f"journal-{now_ms}"
        target.mkdir(parents=True, mode=0o700)
        for path in sorted(self.journal_dir.iterdir()):
            if path.is_file():
                shutil.copyfile(path, target / path.name)
                fd = os.open(target / path.name, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(target)
        fsync_dir(target.parent)
        return target

    def close(self, *, clean: bool = True) -> None:
        if clean and self._lock_fd >= 0:
            try:
                atomic_write(self.root / "CLEAN", b"")
            except OSError as exc:  # (a full disk) the next open recovers as after a crash, which is always safe
                log.error("%s: cannot mark a clean close: %s", self.root, exc)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def load_streams(self) -> list[tuple[str, dict[str, Any]]]:
        """Every stream's metadata by stream id. A stream whose file is damaged is left out, logged and listed in
        ``damaged_streams``; its directory is kept as it is."""
        out: list[tuple[str, dict[str, Any]]] = []
        self.damaged_streams = []
        for d in sorted(self.streams_dir.iterdir()):
            meta = d / "stream.json"
            if not meta.exists():
                # CreateStream stopped before its metadata landed: nothing was acknowledged.
                remove_tree(d)
                continue
            raw = meta.read_bytes()
            try:
                out.append((d.name, read_sealed(raw)))
            except DamagedMetadata as exc:
                self.report_damaged(DamagedStream(d.name, meta, str(exc), _claimed_name(raw)))
        return out

    def report_damaged(self, damage: DamagedStream) -> None:
        """Log a stream that cannot be served and keep it in ``damaged_streams``."""
        self.damaged_streams.append(damage)
        log.error(
            "stream %s: metadata file %s is damaged (%s); the stream is not served, its files are kept",
            damage.name if damage.name is not None else "(name unreadable)",
            damage.path,
            damage.reason,
        )

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
        atomic_write(d / "stream.json", seal(meta))

    def delete_stream(self, stream_id: str) -> None:
        d = self.stream_dir(stream_id)
        if d.exists():
            target = self.trash_dir / stream_id
            os.replace(d, target)
            fsync_dir(self.streams_dir)
            remove_tree(target)

    def delete_shard(self, stream_id: str, shard_index: int) -> None:
        remove_tree(self.shard_dir(stream_id, shard_index))


def _owner_only(path: Path, mode: int) -> None:
    """The data directory holds every record and the secret that signs shard iterators: nobody but its owner may
    read it. One made by an older version (world-readable under the usual umask) is tightened, and the log says so."""
    current = path.stat().st_mode & 0o777
    if current & 0o077:
        os.chmod(path, mode)
        log.warning("%s was readable by others (mode %o): now %o, owner only", path, current, mode)
