"""Every column type is encoded the same from the snapshot and from the binary log, whatever the time zone of the
process running the source (``TZ``) and of the server and session (``time_zone``): sources in processes under
America/New_York and Asia/Kolkata, against a server whose zone is +09:00, put byte-identical records."""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._mariadb import MariaDB, mariadb_server

CHILD = Path(__file__).with_name("_tz_source.py")
SERVER_ZONE = "+09:00"  # the server's (and so every session's) time_zone; the values below are written in it


@pytest.fixture(scope="module")
def zoned(tmp_path_factory: pytest.TempPathFactory, mariadb_template: Path) -> Iterator[MariaDB]:
    """A private server whose default time zone is not UTC."""
    with mariadb_server(
        tmp_path_factory.mktemp("mariadb-zoned"), mariadb_template, f"--default-time-zone={SERVER_ZONE}"
    ) as db:
        yield db


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def wkb_point(x: float, y: float) -> str:
    return b64(struct.pack("<BIdd", 1, 1, x, y))  # little-endian WKB: byte order, type 1 (point), x, y


ITEMS = """CREATE TABLE items (
    id INT PRIMARY KEY,
    ts0 TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
    tsz TIMESTAMP NOT NULL DEFAULT '0000-00-00 00:00:00',
    b1 BIT(1), b12 BIT(12), st SET('a','b','c','d'), st2 SET('x','y'), p POINT,
    dt DATETIME(6), d DATE, t TIME(6), y YEAR, price DECIMAL(8,2), f DOUBLE, name VARCHAR(20), raw VARBINARY(8),
    e ENUM('x','y'), doc JSON
)"""
FULL = (
    "'2024-03-01 08:59:58', '2024-03-01 08:59:58.12', DEFAULT, b'1', b'101010111100', 'd,a', 'y,x', "
    "ST_GeomFromText('POINT(1 2)', 4326), '2024-03-01 08:59:58.5', '2024-02-29', '-01:02:03.5', 2024, 12.5, 1.5, "
    "'héllo', x'00ff', 'y', '{\"k\": [1, \"v\"]}'"
)
EMPTY = "NULL, NULL, DEFAULT, NULL, NULL, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
FULL_ROW = {
    "ts0": "2024-02-29T23:59:58Z",  # (08:59:58 at +09:00)
    "ts6": "2024-02-29T23:59:58.120000Z",
    "tsz": "1970-01-01T00:00:00Z",  # the zero TIMESTAMP
    "b1": True,
    "b12": b64(bytes([0xBC, 0x0A])),  # 0xABC, least significant byte first
    "st": "a,d",  # definition order
    "st2": "x,y",
    "p": {"wkb": wkb_point(1, 2), "srid": 4326},
    "dt": "2024-03-01T08:59:58.500000",  # DATETIME has no zone: as written
    "d": "2024-02-29",
    "t": "-01:02:03.500000",
    "y": 2024,
    "price": "12.50",
    "f": 1.5,
    "name": "héllo",
    "raw": b64(b"\x00\xff"),
    "e": "y",
    "doc": '{"k": [1, "v"]}',
}
EMPTY_ROW = {k: None for k in FULL_ROW} | {"tsz": "1970-01-01T00:00:00Z", "st": ""}
UPDATE = (
    "UPDATE items SET ts0 = '2024-07-01 00:00:00', ts6 = '2024-07-01 00:00:00.000001', tsz = '2038-01-19 12:14:07', "
    "b1 = 0, b12 = b'000000000001', st = '', st2 = NULL, p = ST_GeomFromText('POINT(3 4)') WHERE id = 1"
)
UPDATED_ROW = FULL_ROW | {
    "ts0": "2024-06-30T15:00:00Z",
    "ts6": "2024-06-30T15:00:00.000001Z",
    "tsz": "2038-01-19T03:14:07Z",
    "b1": False,
    "b12": b64(bytes([0x01, 0x00])),
    "st": "",
    "st2": None,
    "p": {"wkb": wkb_point(3, 4), "srid": 0},
}
# A TIMESTAMP in a composite primary key: the snapshot pages through it (2 rows a query), keys name the instant.
EVENTS = "CREATE TABLE ev (at TIMESTAMP(3) NOT NULL, n INT NOT NULL, PRIMARY KEY (at, n))"
# (the time written at +09:00, the row's n, the value's text)
EVENT_ROWS = [
    ("2024-03-01 09:00:00.5", 1, "2024-03-01T00:00:00.500Z"),
    ("2024-03-01 09:00:00.5", 2, "2024-03-01T00:00:00.500Z"),
    ("2024-11-03 15:30:00", 1, "2024-11-03T06:30:00.000Z"),
]
EVENT_BINLOG = ("2024-03-10 16:00:00.25", 7, "2024-03-10T07:00:00.250Z")


class Child:
    def __init__(self, db: MariaDB, schema: str, tmp: Path, name: str, *, fmt: str, zone: str, server_id: int) -> None:
        self.out = tmp / f"{name}.jsonl"
        self.state = tmp / f"{name}-state"
        self.log = (tmp / f"{name}.log").open("wb")
        args = [str(db.port), schema, fmt, str(server_id), str(self.out), str(self.state)]
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args], env={**os.environ, "TZ": zone}, stdout=self.log, stderr=self.log
        )

    def lines(self) -> list[bytes]:
        return self.out.read_bytes().splitlines() if self.out.exists() else []

    def alive(self) -> None:
        if self.proc.poll() is not None:
            self.log.flush()
            raise AssertionError(f"the source exited: {Path(self.log.name).read_text(errors='replace')[-3000:]}")

    def snapshot_done(self) -> bool:
        self.alive()
        cp = self.state / "shop.json"
        return cp.exists() and json.loads(cp.read_text())["snapshot"]["done"] is True

    def offset(self) -> str:
        """The process's UTC offset, as it reported it."""
        first = Path(self.log.name).read_text(errors="replace").splitlines()[0]
        return first.removeprefix("local utc offset ")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait(condition: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def records(lines: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    return [(key, json.loads(data)) for key, data in (json.loads(line) for line in lines)]


def test_values_are_the_same_from_snapshot_and_binlog_in_any_time_zone(zoned: MariaDB, tmp_path: Path) -> None:
    schema = "vals"
    zoned.execute(f"CREATE DATABASE {schema}")
    zoned.execute(
        "SET SESSION sql_mode = ''",  # (the zero TIMESTAMP default)
        ITEMS,
        f"INSERT INTO items VALUES (1, {FULL}), (2, {EMPTY})",
        EVENTS,
        "INSERT INTO ev VALUES " + ", ".join(f"('{at}', {n})" for at, n, _ in EVENT_ROWS),
        database=schema,
    )
    children = [
        Child(zoned, schema, tmp_path, "new-york", fmt="debezium", zone="America/New_York", server_id=201),
        Child(zoned, schema, tmp_path, "kolkata", fmt="debezium", zone="Asia/Kolkata", server_id=202),
        Child(zoned, schema, tmp_path, "dms", fmt="dms", zone="America/New_York", server_id=203),
    ]
    try:
        for child in children:
            wait(child.snapshot_done, f"the snapshot of {child.out.stem}")
        zoned.execute(
            f"INSERT INTO items VALUES (3, {FULL}), (4, {EMPTY})",
            UPDATE,
            "DELETE FROM items WHERE id = 2",
            f"INSERT INTO ev VALUES ('{EVENT_BINLOG[0]}', {EVENT_BINLOG[1]})",
            database=schema,
        )
        for child in children:

            def complete(child: Child = child) -> bool:
                child.alive()
                return len(child.lines()) >= 10

            wait(complete, f"10 records from {child.out.stem}")
    finally:
        codes = [child.stop() for child in children]
    assert codes == [0, 0, 0]
    # (the processes did run in those zones: New York's offset depends on the date)
    assert children[0].offset() in ("-0500", "-0400") and children[1].offset() == "+0530"
    new_york, kolkata, dms = (child.lines() for child in children)
    assert len(new_york) == 10
    # Byte for byte the same records, whatever the process's zone (order between keys may differ: compare sorted).
    assert sorted(new_york) == sorted(kolkata)

    got = records(new_york)
    items = {(r["op"], (r["after"] or r["before"])["id"]): r for key, r in got if r["source"]["table"] == "items"}
    assert set(items) == {("r", 1), ("r", 2), ("c", 3), ("c", 4), ("u", 1), ("d", 2)}
    assert items["r", 1]["after"] == {"id": 1} | FULL_ROW
    assert items["r", 2]["after"] == {"id": 2} | EMPTY_ROW
    # The binary log gives the same values as the snapshot for the same row.
    assert items["c", 3]["after"] == {"id": 3} | FULL_ROW
    assert items["c", 4]["after"] == {"id": 4} | EMPTY_ROW
    assert items["u", 1]["before"] == {"id": 1} | FULL_ROW
    assert items["u", 1]["after"] == {"id": 1} | UPDATED_ROW
    assert items["d", 2]["before"] == {"id": 2} | EMPTY_ROW
    assert [list(r["after"]) for r in (items["r", 1], items["c", 3])] == [["id", *FULL_ROW]] * 2

    events = sorted((key, r["op"], r["after"]) for key, r in got if r["source"]["table"] == "ev")
    assert events == sorted(
        (f'{schema}.ev.["{text}",{n}]', "c" if (at, n, text) == EVENT_BINLOG else "r", {"at": text, "n": n})
        for at, n, text in [*EVENT_ROWS, EVENT_BINLOG]
    )

    # DMS records carry the same values: the row image, and the before image of an update.
    dms_items = {
        (r["metadata"]["operation"], r["data"]["id"]): r
        for key, r in records(dms)
        if r["metadata"]["table-name"] == "items"
    }
    assert len(dms) == 10
    for (op, pk), deb in items.items():
        rec = dms_items[{"r": "load", "c": "insert", "u": "update", "d": "delete"}[op], pk]
        assert rec["data"] == (deb["after"] or deb["before"])
        if op == "u":
            assert rec["before-image"] == deb["before"]
