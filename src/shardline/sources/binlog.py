"""Reading the binary log: row events grouped by transaction, from a file/position, in a thread of its own.

mysql-replication's ``BinLogStreamReader`` is blocking, so one thread owns it and hands ``Batch``es (the changes
of one transaction, or of a part of a large one) to the source through a bounded queue; the source takes whatever
is queued at once, which batches many small transactions into one put when the stream is the slower side. The
server sends a heartbeat every second while idle, so the thread notices a stop request within about a second.

Column names come from the row events' own metadata (``binlog_row_metadata=FULL``), so a row logged before an
ALTER TABLE is decoded with the columns it had then. The reader is started with ``is_mariadb=False`` on both
servers when it starts at a file/position: that is the mode that honours one (see the library's MariaDB notes).
Given a MariaDB GTID position instead, it connects with ``is_mariadb=True`` and ``auto_position`` (the server's
``@slave_connect_state``), and the server starts after that position in whichever file holds it; a position the
server no longer has is a SourceSetupError (error 1236), since starting again cannot help.

Values are decoded from the row events' column types into the ones the snapshot gives (envelope.py): the library
reads a TIMESTAMP's epoch seconds with ``utcfromtimestamp`` (a naive UTC datetime, whatever the process's zone),
which becomes an aware UTC ``Timestamp``; a BIT's text of bits becomes a boolean or its bytes; a SET's members
become the server's text in definition order (the library gives an empty SET as None: it is ``""``); a spatial
value (the server's SRID + WKB) becomes a ``Geometry``. A DATE or DATETIME that is no calendar date (the zero date, a
zero month or day) comes as None too, told from NULL by the reason the library records in ``none_sources``: it
becomes null or the epoch by the column's nullability (``zero_date``), which the table map event preceding the row
events states (so the reader asks for those events too, and keeps the latest one's per table). An invalid date the
server stores under ALLOW_INVALID_DATES (``2024-02-30``) is treated alike: the library gives it as None in a
DATETIME2 column, but raises ValueError reading it from a DATE (or an old-format DATETIME) column, which would stop
the source for good, so those two readers are wrapped to give None (``_lenient``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.event import GtidEvent, HeartbeatLogEvent, MariadbGtidEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from .checkpoint import is_mariadb_gtid, merge_gtid
from .config import SourceConfig
from .envelope import Change, Position, bit_value, geometry_value, timestamp_value, zero_date
from .server import SourceSetupError

__all__ = ["Batch", "BinlogReader"]

log = logging.getLogger("shardline.sources")

MAX_BATCH_ROWS = 1000


@dataclass
class Batch:
    changes: list[Change] = field(default_factory=list)
    end: Position | None = None  # set on a transaction's last batch: where the next transaction starts
    gtid: str | None = None
    event_ts_ms: int = 0  # the newest event's timestamp (for lag)


class _Stop(Exception):
    pass


class BinlogReader:
    def __init__(self, cfg: SourceConfig, start: Position, *, gtid: str | None = None, max_queued: int = 64) -> None:
        self.cfg = cfg
        self.start = start
        self.gtid = gtid  # a MariaDB GTID position to start after (instead of ``start``)
        self.queue: queue.Queue[Batch | BaseException] = queue.Queue(max_queued)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"cdc-binlog-{cfg.name}", daemon=True)
        self.position = start  # the reader's own position (ahead of the checkpoint)
        self.nullable: dict[tuple[str, str], tuple[bool, ...]] = {}  # per table, its columns' nullability

    def begin(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _put(self, item: Batch | BaseException) -> None:
        while True:
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.stopping.is_set():
                    raise _Stop from None

    def _run(self) -> None:
        try:
            self._read()
        except _Stop:
            pass
        except pymysql.err.OperationalError as exc:
            err: BaseException = exc
            if exc.args and exc.args[0] == 1236 and self.gtid is not None:
                err = SourceSetupError(
                    f"source {self.cfg.name}: the server cannot resume after GTID {self.gtid}: {exc.args[-1]} "
                    "(the binary log holding the next transaction was purged); remove the source's checkpoint "
                    "file to start over with a snapshot"
                )
            with contextlib.suppress(_Stop):
                self._put(err)
        except BaseException as exc:
            with contextlib.suppress(_Stop):
                self._put(exc)

    def _stream(self) -> Any:

        cfg = self.cfg
        start: dict[str, Any] = (
            {"is_mariadb": True, "auto_position": self.gtid}
            if self.gtid is not None
            else {"log_file": self.start.file, "log_pos": self.start.pos, "resume_stream": True}
        )
        return BinLogStreamReader(
            connection_settings={
                "host": cfg.host, "port": cfg.port, "user": cfg.user, "password": cfg.password(), "charset": "utf8mb4",
            },
            server_id=cfg.server_id,
            **start,
            blocking=True,
            slave_heartbeat=1.0,
            only_events=[
                WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, QueryEvent, GtidEvent, MariadbGtidEvent,
                RotateEvent, HeartbeatLogEvent, TableMapEvent,
            ],
            enable_logging=False,
        )  # fmt: skip

    def _read(self) -> None:

        stream = self._stream()
        try:
            batch = Batch()
            gtid: str | None = None
            for event in stream:
                if self.stopping.is_set():
                    return
                if isinstance(event, HeartbeatLogEvent):
                    continue
                if isinstance(event, TableMapEvent):
                    self.nullable[str(event.schema), str(event.table)] = _nullable(event)
                    continue
                file = str(stream.log_file)
                start = int(event.packet.log_pos) - int(event.event_size)
                batch.event_ts_ms = int(event.timestamp) * 1000
                if isinstance(event, GtidEvent | MariadbGtidEvent):
                    gtid = str(event.gtid)
                    if self.gtid is not None and batch.changes:
                        # The library reconnected mid-transaction and the server started that transaction again
                        # (after ``auto_position``): its rows read so far come again.
                        batch = Batch()
                elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                    if not self.cfg.tables(event.schema, event.table):
                        continue
                    batch.changes += self._changes(event, file, start, gtid)
                    if len(batch.changes) >= MAX_BATCH_ROWS:
                        self._put(batch)
                        batch = Batch()
                    continue
                elif isinstance(event, XidEvent) or (
                    isinstance(event, QueryEvent) and _query(event) not in ("BEGIN", "")
                ):
                    if isinstance(event, QueryEvent) and _query(event) != "COMMIT":
                        # (only the statement's first words: a statement's text can hold secrets)
                        words = " ".join(_query(event).split()[:3])
                        log.info("source %s: %s ... at %s:%d", self.cfg.name, words, file, start)
                    self.position = Position(file, int(stream.log_pos))
                    batch.end, batch.gtid = self.position, gtid
                    if self.gtid is not None and gtid is not None and is_mariadb_gtid(gtid):
                        # (the library reconnects by itself after a lost connection, from ``auto_position``: keep it
                        # at the last transaction read, or a reconnect would read everything since the start again)
                        self.gtid = stream.auto_position = merge_gtid(self.gtid, gtid)
                    self._put(batch)
                    batch = Batch()
        finally:
            stream.close()

    def _changes(self, event: Any, file: str, pos: int, gtid: str | None) -> list[Change]:

        pk = event.primary_key
        key = (pk,) if isinstance(pk, str) and pk else tuple(pk or ())
        if not key and self.cfg.keyless != "table":
            raise RuntimeError(
                f"table {event.schema}.{event.table} has no primary key, so its rows cannot be keyed: add one, "
                "exclude the table, or set keyless: table"
            )
        ts_ms = int(event.timestamp) * 1000
        out: list[Change] = []
        decode = _decoder(event.columns, self.nullable.get((str(event.schema), str(event.table)), ()))

        def add(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
            out.append(Change(op, event.schema, event.table, key, before, after, ts_ms, file, pos, len(out), gtid))

        for row in event.rows:
            if isinstance(event, WriteRowsEvent):
                add("c", None, decode(row["values"], row.get("none_sources")))
            elif isinstance(event, DeleteRowsEvent):
                add("d", decode(row["values"], row.get("none_sources")), None)
            else:
                before = decode(row["before_values"], row.get("before_none_sources"))
                after = decode(row["after_values"], row.get("after_none_sources"))
                if key and any(before[k] != after[k] for k in key):
                    add("d", before, None)  # a primary-key change: the old row goes, a new one comes
                    add("c", None, after)
                else:
                    add("u", before, after)
        return out


_TIMESTAMPS = (FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2)
_DATES = {FIELD_TYPE.DATE: "date", FIELD_TYPE.DATETIME: "datetime", FIELD_TYPE.DATETIME2: "datetime"}
_DECODED = (*_TIMESTAMPS, *_DATES, FIELD_TYPE.BIT, FIELD_TYPE.SET, FIELD_TYPE.GEOMETRY)
# (why the library gives a DATE or DATETIME as None when it is not NULL: it is no calendar date)
_NOT_A_DATE = frozenset({"out of date range", "out of datetime range", "out of datetime2 range"})


def _lenient(read: Any) -> Any:
    """The library's reader of a DATE or old-format DATETIME value, giving None for an invalid date (as its DATETIME2
    reader does; the value's bytes are read before the date is built), which it then records as out of range."""

    def read_or_none(self: Any) -> Any:
        try:
            return read(self)
        except ValueError:
            return None

    return read_or_none


for _name in ("_RowsEvent__read_date", "_RowsEvent__read_datetime"):  # (mysql-replication 1.0's private readers)
    if hasattr(RowsEvent, _name):
        setattr(RowsEvent, _name, _lenient(getattr(RowsEvent, _name)))


def _nullable(event: Any) -> tuple[bool, ...]:
    """Each column's nullability, from a table map event's bitmap (bit i, least significant first, for column i)."""
    bits = bytes(event.null_bitmask)
    return tuple(bool(bits[i // 8] >> (i % 8) & 1) for i in range(int(event.column_count)))


def _decoder(columns: Any, nullable: tuple[bool, ...]) -> Any:
    """A function decoding one row image of a row event with these columns (the identity when none needs it);
    ``nullable``: the columns' nullability, by position (a column it does not cover is taken as nullable)."""
    special = [(i, c) for i, c in enumerate(columns) if c.type in _DECODED]
    if not special:
        return lambda values, _none_sources: values

    def decode(values: dict[str, Any], none_sources: dict[str, str] | None) -> dict[str, Any]:
        out = dict(values)
        for i, column in special:
            name = column.name
            value = out.get(name)
            if column.type in _DATES:
                if value is None and none_sources is not None and none_sources.get(name) in _NOT_A_DATE:
                    out[name] = zero_date(_DATES[column.type], nullable[i] if i < len(nullable) else True)
            elif column.type == FIELD_TYPE.SET:
                if value is not None:  # (members come with binlog_row_metadata = FULL, which check_server needs)
                    out[name] = ",".join(m for m in column.set_values if m in value)
                elif none_sources is not None and none_sources.get(name) == "empty set":
                    out[name] = ""  # (the library gives an empty SET as None, told from NULL only here)
            elif value is None:
                continue
            elif column.type in _TIMESTAMPS:  # (the zero TIMESTAMP comes as the epoch: null if nullable)
                fsp = int(getattr(column, "fsp", 0) or 0)
                out[name] = timestamp_value(value, fsp, nullable[i] if i < len(nullable) else True)
            elif column.type == FIELD_TYPE.BIT:
                out[name] = bit_value(int(value, 2) if value else 0, int(column.bits))
            else:
                out[name] = geometry_value(value)
        return out

    return decode


def _query(event: Any) -> str:
    q = event.query
    return (q.decode(errors="replace") if isinstance(q, bytes) else str(q)).strip().upper() if q else ""
