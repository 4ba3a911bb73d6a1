"""Row changes, their partition keys, and the two record formats (Debezium without the schema wrapper, AWS DMS).

Partition key: ``db.table.<pk>``. A single-column key is the value as text; a composite key is the JSON array of
the values in key-column order (compact, so equal keys give equal text); a key over 256 characters (the Kinesis
limit) becomes the SHA-256 hex digest of the whole key. A table without a primary key (allowed only with
``keyless: table``) uses ``db.table``: the whole table on one shard.

Column values are encoded the same way whether they come from the snapshot or the binary log, whatever the time
zone of the shardline process and of the server or session (the snapshot reads with ``time_zone = '+00:00'``; the
binary log holds a TIMESTAMP as seconds since the epoch, which the reader decodes as UTC):

| column type                     | JSON value                                                                 |
|---------------------------------|----------------------------------------------------------------------------|
| integers, FLOAT, DOUBLE         | number                                                                     |
| DECIMAL                         | string, exact (Debezium's ``decimal.handling.mode=string``)                |
| DATETIME                        | ISO-8601 string without zone, microseconds when non-zero                   |
| TIMESTAMP(n)                    | ISO-8601 UTC string ending in ``Z``, with exactly n fractional digits      |
|                                 | (Debezium's ZonedTimestamp): ``2024-02-29T23:59:58Z``, for TIMESTAMP(6)    |
|                                 | ``2024-02-29T23:59:58.120000Z``                                            |
| DATE / TIME                     | ``YYYY-MM-DD`` / ``[-]HH:MM:SS[.ffffff]``                                 |
| zero DATETIME / DATE            | a value that is no calendar date (``0000-00-00``, a zero month or day,     |
|                                 | year 0, an invalid date such as ``2024-02-30``): null in a nullable column,|
|                                 | the epoch (``1970-01-01T00:00:00`` / ``1970-01-01``) in a NOT NULL one     |
|                                 | (Debezium's rule for zero dates; see ``zero_date``)                        |
| zero TIMESTAMP(n)               | ``0000-00-00 00:00:00``: null in a nullable column, the epoch              |
|                                 | (``1970-01-01T00:00:00Z``, n fractional digits) in a NOT NULL one (the same|
|                                 | rule; see ``timestamp_value``)                                             |
| CHAR, VARCHAR, TEXT, ENUM, JSON | string (JSON as the text the server stores)                                |
| SET                             | string: the members in definition order, comma-joined (``""``: empty)      |
| BIT(1)                          | boolean                                                                    |
| BIT(n > 1)                      | base64 of the value's ceil(n/8) bytes, least significant byte first        |
|                                 | (Debezium's ``io.debezium.data.Bits``): BIT(12) ``b'000100000010'`` is     |
|                                 | bytes ``02 01``, ``"AgE="``                                                |
| BINARY, VARBINARY, BLOB         | base64 string (Debezium's ``binary.handling.mode=base64``)                 |
| GEOMETRY, POINT, other spatial  | ``{"wkb": <base64 of the WKB>, "srid": <int>}`` (Debezium's Geometry)      |
| NULL                            | null                                                                       |
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "Change", "Geometry", "Position", "Timestamp", "bit_value", "debezium", "dms", "encode_row", "encode_value",
    "geometry_value", "partition_key", "record", "timestamp_value", "zero_date",
]  # fmt: skip

MAX_KEY_CHARS = 256
VERSION = "shardline-cdc-1"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the binary log; orders across files by the file's numeric suffix."""

    file: str
    pos: int

    def key(self) -> tuple[str, int, int]:
        stem, _, suffix = self.file.rpartition(".")
        return (stem, int(suffix) if suffix.isdigit() else 0, self.pos)

    def before(self, other: Position) -> bool:
        return self.key() < other.key()


@dataclass(frozen=True, slots=True)
class Change:
    """One row change: op is c (create), u (update), d (delete) or r (snapshot read)."""

    op: str
    db: str
    table: str
    key_columns: tuple[str, ...]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ts_ms: int  # when the change happened in the database (the event's timestamp; the read time for snapshots)
    file: str
    pos: int
    row: int
    gtid: str | None = None
    xid: int | None = None
    snapshot: str = "false"  # "true", "last" for a table's last snapshot row, "false" from the binary log

    def key_values(self) -> tuple[Any, ...] | None:
        image = self.after if self.after is not None else self.before
        if not self.key_columns or image is None:
            return None
        return tuple(image[c] for c in self.key_columns)


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A TIMESTAMP column's value: an instant (timezone-aware, UTC) and the column's fractional-second digits."""

    at: dt.datetime
    fsp: int = 0

    def text(self) -> str:
        at = self.at.astimezone(dt.UTC)
        fraction = f".{at.microsecond:06d}"[: self.fsp + 1] if self.fsp > 0 else ""
        return f"{at:%Y-%m-%dT%H:%M:%S}{fraction}Z"


@dataclass(frozen=True, slots=True)
class Geometry:
    """A spatial value: its SRID and its Well-Known Binary."""

    srid: int
    wkb: bytes


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timestamp_value(value: dt.datetime | str, fsp: int, nullable: bool) -> Timestamp | None:
    """A TIMESTAMP read as a naive UTC datetime (the snapshot reads with ``time_zone = '+00:00'``; the binary-log
    reader decodes its epoch seconds with ``utcfromtimestamp``), or the zero TIMESTAMP: the client library cannot
    parse it and hands over the text ``0000-00-00 00:00:00[.000000]``; the binary log stores it as 0 seconds, which
    the reader hands over as exactly the epoch (no real TIMESTAMP is: their range starts at 1970-01-01 00:00:01 UTC).
    Both become what Debezium's MySQL connector gives for a zero value: null in a nullable column (``nullable``), the
    epoch in a NOT NULL one."""
    if isinstance(value, str):
        if not value.startswith("0000-00-00"):
            raise ValueError(f"not a TIMESTAMP value: {value!r}")
        at = _EPOCH
    elif value.tzinfo is not None:
        raise ValueError(f"a TIMESTAMP value must be naive UTC, not {value!r}")
    else:
        at = value.replace(tzinfo=dt.UTC)
    if at == _EPOCH and nullable:
        return None
    return Timestamp(at, fsp)


_EPOCH_DATES: dict[str, dt.date] = {"date": dt.date(1970, 1, 1), "datetime": dt.datetime(1970, 1, 1)}


def zero_date(data_type: str, nullable: bool) -> dt.date | None:
    """The value of a DATE or DATETIME (``data_type``) that is no calendar date: the zero date, a zero month or day
    (allowed without NO_ZERO_DATE / NO_ZERO_IN_DATE), year 0, an invalid date (allowed by ALLOW_INVALID_DATES). The
    client library hands such a value over as text, the binary-log reader as None with the reason in
    ``none_sources``; both become what Debezium's MySQL connector gives for a zero date: null in a nullable column,
    the epoch in a NOT NULL one."""
    return None if nullable else _EPOCH_DATES[data_type]


def bit_value(value: int, width: int) -> bool | bytes:
    """A BIT(width) value: a boolean for BIT(1), else its bytes least significant first (Debezium's Bits)."""
    if width <= 1:
        return bool(value)
    return value.to_bytes((width + 7) // 8, "little")


def geometry_value(value: bytes) -> Geometry:
    """A spatial value in the server's own format: the SRID (4 bytes, little-endian), then the WKB."""
    if len(value) < 4:
        raise ValueError(f"not a spatial value: {len(value)} bytes")
    return Geometry(int.from_bytes(value[:4], "little"), bytes(value[4:]))


def encode_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Timestamp):
        return value.text()
    if isinstance(value, Geometry):
        return {"wkb": base64.b64encode(value.wkb).decode("ascii"), "srid": value.srid}
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.isoformat() if value.microsecond else value.replace(microsecond=0).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        total_us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        sign, total_us = ("-", -total_us) if total_us < 0 else ("", total_us)
        secs, us = divmod(total_us, 1_000_000)
        text = f"{sign}{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        return f"{text}.{us:06d}" if us else text
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()  # MySQL's binary JSON, decoded by the reader: back to its text
    return str(value)


def encode_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: encode_value(v) for k, v in row.items()}


def partition_key(db: str, table: str, key_values: tuple[Any, ...] | None) -> str:
    if key_values is None:
        return f"{db}.{table}"
    encoded = [encode_value(v) for v in key_values]
    if len(encoded) == 1:
        text = encoded[0] if isinstance(encoded[0], str) else orjson.dumps(encoded[0]).decode()
    else:
        text = orjson.dumps(encoded).decode()
    key = f"{db}.{table}.{text}"
    return key if len(key) <= MAX_KEY_CHARS else hashlib.sha256(key.encode()).hexdigest()


def debezium(change: Change, *, source_name: str, connector: str, server_id: int, now_ms: int) -> dict[str, Any]:
    return {
        "before": encode_row(change.before),
        "after": encode_row(change.after),
        "source": {
            "version": VERSION,
            "connector": connector,
            "name": source_name,
            "ts_ms": change.ts_ms,
            "snapshot": change.snapshot,
            "db": change.db,
            "sequence": None,
            "table": change.table,
            "server_id": server_id,
            "gtid": change.gtid,
            "file": change.file,
            "pos": change.pos,
            "row": change.row,
            "thread": None,
            "query": None,
        },
        "op": change.op,
        "ts_ms": now_ms,
        "transaction": None,
    }


_DMS_OPERATION = {"r": "load", "c": "insert", "u": "update", "d": "delete"}


def dms(change: Change, *, key: str, now_ms: int) -> dict[str, Any]:
    """AWS DMS's Kinesis record: the row image (the before image for a delete) and its metadata."""
    when = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    metadata: dict[str, Any] = {
        "timestamp": when,
        "record-type": "data",
        "operation": _DMS_OPERATION[change.op],
        "partition-key-type": "primary-key" if change.key_columns else "schema-table",
        "partition-key-value": key,
        "schema-name": change.db,
        "table-name": change.table,
    }
    if change.op != "r":
        metadata["transaction-id"] = change.xid if change.xid is not None else change.gtid
        metadata["commit-timestamp"] = dt.datetime.fromtimestamp(change.ts_ms / 1000, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        metadata["stream-position"] = f"{change.file}:{change.pos}:{change.row}"
    data = encode_row(change.after if change.after is not None else change.before)
    out: dict[str, Any] = {"data": data, "metadata": metadata}
    if change.op == "u":
        out["before-image"] = encode_row(change.before)
    return out


def record(
    change: Change, *, fmt: str, source_name: str, connector: str, server_id: int, now_ms: int
) -> tuple[bytes, str]:
    """The record (data, partition key) for one change."""
    key = partition_key(change.db, change.table, change.key_values())
    if fmt == "dms":
        body = dms(change, key=key, now_ms=now_ms)
    else:
        body = debezium(change, source_name=source_name, connector=connector, server_id=server_id, now_ms=now_ms)
    return orjson.dumps(body), key
