"""A source's durable state: where the binary log is read from, and how far the initial snapshot got.

One JSON file per source, replaced atomically (temp, fsync, rename, fsync directory) and written only after every
record it covers was acknowledged by the stream. Fields:

- ``binlog``: ``{file, pos, gtid}``, the end of the last transaction whose records are all on the stream
  (``gtid`` is that transaction's global id where the server logs one: MySQL ``uuid:n``; on MariaDB the GTID
  position, ``domain-server-seq`` of the last transaction of every replication domain seen, comma-separated, as
  ``gtid_slave_pos`` holds it). A MariaDB source with a GTID position resumes by GTID (the server finds the next
  transaction in whichever binary log holds it, so rotated and purged files do not matter as long as that
  transaction is kept); otherwise, and on MySQL, it resumes at ``file``/``pos``.
- ``snapshot``: ``{start, done, tables}``. ``start`` is the binary-log position the first snapshot read was
  consistent with (streaming starts there). Per table: ``done``, ``after`` (the key of the last row put; the
  snapshot goes on after it) and ``segments``: ``[[lower, position], ...]``, saying that the rows with a key above
  ``lower`` (null: every row) were read at ``position``. A snapshot resumed after a crash reads the remaining rows
  in a new consistent read at a later position; changes to those rows logged before that position are already in
  what was read, so the binary-log reader skips them (see mysql.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._fsutil import atomic_write
from .envelope import Position

__all__ = ["Checkpoint", "TableProgress", "is_mariadb_gtid", "merge_gtid"]

_MARIADB_GTID = re.compile(r"^\d+-\d+-\d+$")


def is_mariadb_gtid(position: str | None) -> bool:
    """Whether ``position`` is a MariaDB GTID position (``domain-server-seq`` items, comma-separated)."""
    return bool(position) and all(_MARIADB_GTID.match(g.strip()) for g in str(position).split(","))


def merge_gtid(position: str | None, gtid: str) -> str:
    """The MariaDB GTID position after transaction ``gtid``: its domain's item replaced, the others kept."""
    items = {g.split("-", 1)[0]: g for g in (position or "").split(",") if _MARIADB_GTID.match(g)}
    items[gtid.split("-", 1)[0]] = gtid
    return ",".join(items[d] for d in sorted(items, key=int))


@dataclass
class TableProgress:
    done: bool = False
    after: list[Any] | None = None
    segments: list[tuple[list[Any] | None, Position]] = field(default_factory=list)
    rows: int = 0

    def read_at(self, key: tuple[Any, ...] | None) -> Position | None:
        """The position the snapshot read the row with this key at (None: not read by the snapshot)."""
        found: Position | None = None
        for lower, pos in self.segments:
            if lower is None or key is None or tuple(key) > tuple(lower):
                found = pos
        return found


@dataclass
class Checkpoint:
    path: Path
    binlog: Position | None = None
    gtid: str | None = None
    snapshot_start: Position | None = None
    snapshot_done: bool = False
    tables: dict[str, TableProgress] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        cp = cls(path)
        if not path.exists():
            return cp
        raw = orjson.loads(path.read_bytes())
        if raw.get("binlog"):
            cp.binlog = Position(raw["binlog"]["file"], raw["binlog"]["pos"])
            cp.gtid = raw["binlog"].get("gtid")
        snap = raw.get("snapshot") or {}
        if snap.get("start"):
            cp.snapshot_start = Position(snap["start"]["file"], snap["start"]["pos"])
        cp.snapshot_done = bool(snap.get("done"))
        for name, t in (snap.get("tables") or {}).items():
            cp.tables[name] = TableProgress(
                t["done"],
                t.get("after"),
                [(lo, Position(p["file"], p["pos"])) for lo, p in t.get("segments", [])],
                t.get("rows", 0),
            )
        return cp

    def save(self) -> None:
        def pos(p: Position | None) -> dict[str, Any] | None:
            return None if p is None else {"file": p.file, "pos": p.pos}

        data = {
            "version": 1,
            "binlog": None if self.binlog is None else {**(pos(self.binlog) or {}), "gtid": self.gtid},
            "snapshot": {
                "start": pos(self.snapshot_start),
                "done": self.snapshot_done,
                "tables": {
                    name: {
                        "done": t.done,
                        "after": t.after,
                        "segments": [[lo, pos(p)] for lo, p in t.segments],
                        "rows": t.rows,
                    }
                    for name, t in self.tables.items()
                },
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
