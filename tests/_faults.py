"""Storage faults injected at the OS-call seam, for tests at any layer: a full disk (every write to a file of the data
directory fails with ENOSPC) and a failed fsync of the files a test picks (the journal's, the shard segments')."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class Disk:
    """Makes writes to the files under ``root`` fail as on a full disk while ``full``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root.resolve())
        self.full = False
        self.refused = 0
        for name in ("write", "writev", "pwrite"):
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, real: Any) -> Any:
        def call(fd: int, *args: Any) -> Any:
            if self.full and os.readlink(f"/proc/self/fd/{fd}").startswith(self.root):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, *args)

        return call


class Fsync:
    """Makes ``os.fsync`` of the files ``picked`` chooses (by path) fail with ``err`` while ``failing``."""

    def __init__(self, picked: Callable[[str], bool], monkeypatch: pytest.MonkeyPatch) -> None:
        self.picked = picked
        self.failing = False
        self.err = errno.EIO
        self.calls = 0  # fsyncs of picked files, failed or not
        self.failed = 0
        real = os.fsync

        def fsync(fd: int) -> None:
            if self.picked(os.readlink(f"/proc/self/fd/{fd}")):
                self.calls += 1
                if self.failing:
                    self.failed += 1
                    raise OSError(self.err, os.strerror(self.err))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def journal_files(data_dir: Path) -> Callable[[str], bool]:
    """Picks the write-ahead journal's files of ``data_dir`` (for Fsync)."""
    root = str((data_dir / "journal").resolve())
    return lambda path: path.startswith(root) and path.endswith(".wal")


def segment_files(data_dir: Path) -> Callable[[str], bool]:
    """Picks the shard segment files of ``data_dir`` (for Fsync)."""
    root = str(data_dir.resolve())
    return lambda path: path.startswith(root) and path.endswith(".log")
