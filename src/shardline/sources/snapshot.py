"""The initial snapshot: each table's existing rows, read in primary-key order, in chunks, consistently.

All chunks of one run are read inside one ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (InnoDB serves them from
its read view: no table locks), and the binary-log position that view corresponds to is taken at its start:
MariaDB reports it without any lock (``binlog_snapshot_file``/``binlog_snapshot_position``); MySQL needs a
``FLUSH TABLES WITH READ LOCK`` held only while the view is opened and the position read. Each chunk is the next
``chunk_size`` rows after the last key read (keyset pagination, which the primary-key index serves directly).

The reading session's ``time_zone`` is UTC, so TIMESTAMP values come as UTC whatever the server's or the process's
zone; ``decode_row`` turns the values the client library gives into the ones the binary-log reader gives (see
envelope.py; a DATE or DATETIME that is no calendar date and a zero TIMESTAMP, which the library gives as text,
become null or the epoch by the column's nullability): rows are paginated with the values as read, and decoded only
for their records.
"""

from __future__ import annotations

from typing import Any

import pymysql.cursors

from .envelope import Position, bit_value, geometry_value, timestamp_value, zero_date
from .server import Table

__all__ = ["begin_consistent_read", "current_position", "decode_row", "fetch_rows", "read_chunk", "scan"]

SPATIAL_TYPES = frozenset({
    "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
    "geometrycollection", "geomcollection",
})  # fmt: skip


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def current_position(conn: Any) -> Position:
    with conn.cursor() as cur:
        try:
            cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.4 renamed SHOW MASTER STATUS
        except Exception:
            cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return Position(str(row[0]), int(row[1]))


def begin_consistent_read(conn: Any, flavour: str) -> Position:
    """Open a consistent read view on ``conn`` and return the binary-log position it corresponds to."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")  # (TIMESTAMP values as UTC, whatever the server's zone)
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if flavour == "mariadb":
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
            return Position(status["binlog_snapshot_file"], int(status["binlog_snapshot_position"]))
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            return current_position(conn)
        finally:
            cur.execute("UNLOCK TABLES")


def _select(table: Table) -> str:
    cols = ", ".join(_quote(c) for c in table.columns)
    return f"SELECT {cols} FROM {_quote(table.db)}.{_quote(table.name)}"


def read_chunk(conn: Any, table: Table, after: list[Any] | None, limit: int) -> list[dict[str, Any]]:
    """The next ``limit`` rows of ``table`` (which has a primary key) after the key ``after`` (None: from the
    first), in key order."""
    sql = _select(table)
    args: list[Any] = []
    keys = ", ".join(_quote(k) for k in table.key)
    if after is not None:
        sql += f" WHERE ({keys}) > ({', '.join(['%s'] * len(after))})"
        args = list(after)
    sql += f" ORDER BY {keys} LIMIT {int(limit)}"
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    return [dict(zip(table.columns, r, strict=True)) for r in rows]


def scan(conn: Any, table: Table) -> Any:
    """An unbuffered cursor over a table without a primary key (read once, ``fetch_rows`` at a time: memory stays
    bounded; such a table cannot be resumed in the middle)."""
    cur = conn.cursor(pymysql.cursors.SSCursor)
    cur.execute(_select(table))
    return cur


def fetch_rows(cur: Any, table: Table, limit: int) -> list[dict[str, Any]]:
    return [dict(zip(table.columns, r, strict=True)) for r in cur.fetchmany(limit)]


def decode_row(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row as read (in a UTC session) with its TIMESTAMP, BIT and spatial values decoded as the binary-log reader
    decodes them (SET values are already the server's text), and its zero dates and zero TIMESTAMPs as ``zero_date``
    and ``timestamp_value`` give them."""
    if not table.types:
        return row
    out = dict(row)
    nullable = table.nullable or (True,) * len(table.columns)
    for column, (data_type, size), optional in zip(table.columns, table.types, nullable, strict=True):
        value = out[column]
        if value is None:
            continue
        if data_type in ("date", "datetime"):
            if isinstance(value, str):  # (what the client library gives for a value that is no calendar date)
                out[column] = zero_date(data_type, optional)
        elif data_type == "timestamp":
            out[column] = timestamp_value(value, size, optional)
        elif data_type == "bit":
            out[column] = bit_value(int.from_bytes(value, "big"), size)
        elif data_type in SPATIAL_TYPES:
            out[column] = geometry_value(value)
    return out
