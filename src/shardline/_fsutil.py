"""The only place that replaces metadata files or fsyncs directories, and the one way to append to a log file.

Metadata is written temp -> fsync -> rename -> fsync(directory), so a reader after any crash sees either the old
file or the new one, never a mix. An append that fails is cut back off the file, so the next one still starts where
the failed one would have.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CutBackFailed", "append_all", "atomic_write", "cut_file", "fsync_dir", "remove_tree"]


class CutBackFailed(OSError):
    """A failed append could not be cut back off its file, which now ends in a partial write. ``errno`` is the cut's
    error, ``write_errno`` the write's."""

    write_errno: int

    @classmethod
    def of(cls, write_errno: int, cut_errno: int) -> CutBackFailed:
        exc = cls(cut_errno, f"cannot cut a failed write back off: {os.strerror(cut_errno)}")
        exc.write_errno = write_errno
        return exc


def append_all(fd: int, data: bytes | Sequence[bytes | memoryview], size: int, total: int | None = None) -> None:
    """Write all of ``data`` (bytes, or buffers written back to back in one call, none of them copied; ``total``
    bytes in all when given) to ``fd`` (opened for appending, ``size`` bytes long before). On an error cut the file
    back to ``size`` and re-raise; raise CutBackFailed when the cut fails too."""
    try:
        if isinstance(data, bytes):
            n, total = os.write(fd, data), len(data)
        else:
            n = os.writev(fd, data)
            if total is None:
                total = sum(memoryview(part).nbytes for part in data)
        if n < total:
            view = memoryview(data if isinstance(data, bytes) else b"".join(data))[n:]
            while view:
                view = view[os.write(fd, view) :]
    except OSError as exc:
        try:
            os.ftruncate(fd, size)
        except OSError as cut:
            raise CutBackFailed.of(exc.errno or errno.EIO, cut.errno or errno.EIO) from cut
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only, like the data directory
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        # A half-written temp file would hold space a full disk needs back (and the old file is intact).
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def cut_file(path: Path, size: int) -> None:
    """Truncate ``path`` to ``size`` bytes durably (recovery cutting a torn tail)."""
    with open(path, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


def remove_tree(path: Path) -> None:
    """Remove a directory tree; files first, so a crash leaves a directory recovery can finish deleting."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        path.unlink()
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()
