"""Zero dates (``0000-00-00``, a zero month or day, year 0: what a server without NO_ZERO_DATE / NO_ZERO_IN_DATE
stores) and invalid dates (``2024-02-30``, with ALLOW_INVALID_DATES) in DATETIME and DATE columns, and the zero
TIMESTAMP (``0000-00-00 00:00:00``, which the binary log stores as 0 seconds), are encoded the same from the snapshot
and from the binary log, as Debezium's MySQL connector gives zero values: null in a nullable column, the epoch in a
NOT NULL one; a NULL stays null."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from shardline.sources.envelope import encode_value, timestamp_value

from ._mariadb import MariaDB
from .test_values import Child, records, wait

TABLE = """CREATE TABLE zd (
    id INT PRIMARY KEY,
    dt DATETIME NULL, dt_nn DATETIME NOT NULL, dt6 DATETIME(6) NULL, dt6_nn DATETIME(6) NOT NULL,
    d DATE NULL, d_nn DATE NOT NULL,
    ts TIMESTAMP NULL, ts_nn TIMESTAMP NOT NULL DEFAULT '0000-00-00 00:00:00',
    ts6 TIMESTAMP(6) NULL, ts6_nn TIMESTAMP(6) NOT NULL DEFAULT '0000-00-00 00:00:00'
)"""  # (an explicit DEFAULT: no automatic initialisation or update of the NOT NULL TIMESTAMPs)
COLUMNS = ("dt", "dt_nn", "dt6", "dt6_nn", "d", "d_nn", "ts", "ts_nn", "ts6", "ts6_nn")
ZERO_TS = ", '0000-00-00 00:00:00'" * 4  # (TIMESTAMP has no partial or invalid values: the zero one in each row)
ZERO = (
    "'0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00', '0000-00-00', '0000-00-00'"
    + ZERO_TS
)
PARTIAL = (
    "'2024-00-10 12:34:56', '2024-05-00 01:02:03', '0000-01-01 00:00:00.5', '2024-00-00 00:00:00.25', "
    "'2024-00-10', '0000-03-04'" + ZERO_TS
)
INVALID = (
    "'2024-02-30 01:00:00', '2023-02-29 00:00:00', '2024-04-31 00:00:00.5', '2024-02-31 00:00:00', '2024-02-30', "
    "'2023-02-29'" + ZERO_TS
)
NULLS = (
    "NULL, '2024-02-29 23:59:58', NULL, '2024-02-29 23:59:58.5', NULL, '2024-02-29', "
    "NULL, '2024-02-29 23:59:58', NULL, '2024-02-29 23:59:58.5'"
)
REAL = (
    "'1999-12-31 23:59:59', '2000-01-01', '2001-02-03 04:05:06.7', '1970-01-01 00:00:00', '2024-02-29', '1970-01-01', "
    "'1999-12-31 23:59:59', '2000-01-01 00:00:01', '2001-02-03 04:05:06.7', '1970-01-01 00:00:01'"  # (the first second)
)
# The nullable columns' zero values are null; the NOT NULL columns' are the epoch.
ZERO_ROW = {
    "dt": None, "dt_nn": "1970-01-01T00:00:00", "dt6": None, "dt6_nn": "1970-01-01T00:00:00",
    "d": None, "d_nn": "1970-01-01",
    "ts": None, "ts_nn": "1970-01-01T00:00:00Z", "ts6": None, "ts6_nn": "1970-01-01T00:00:00.000000Z",
}  # fmt: skip
NULLS_ROW = {
    "dt": None, "dt_nn": "2024-02-29T23:59:58", "dt6": None, "dt6_nn": "2024-02-29T23:59:58.500000",
    "d": None, "d_nn": "2024-02-29",
    "ts": None, "ts_nn": "2024-02-29T23:59:58Z", "ts6": None, "ts6_nn": "2024-02-29T23:59:58.500000Z",
}  # fmt: skip
REAL_ROW = {
    "dt": "1999-12-31T23:59:59", "dt_nn": "2000-01-01T00:00:00", "dt6": "2001-02-03T04:05:06.700000",
    "dt6_nn": "1970-01-01T00:00:00", "d": "2024-02-29", "d_nn": "1970-01-01",
    "ts": "1999-12-31T23:59:59Z", "ts_nn": "2000-01-01T00:00:01Z", "ts6": "2001-02-03T04:05:06.700000Z",
    "ts6_nn": "1970-01-01T00:00:01.000000Z",
}  # fmt: skip
ROWS = {1: (ZERO, ZERO_ROW), 2: (PARTIAL, ZERO_ROW), 3: (NULLS, NULLS_ROW), 4: (INVALID, ZERO_ROW)}


def test_zero_dates_are_the_same_from_snapshot_and_binlog(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    # (no NO_ZERO_DATE, NO_ZERO_IN_DATE, strict mode; TIMESTAMPs written in UTC)
    permissive = "SET SESSION sql_mode = 'ALLOW_INVALID_DATES', time_zone = '+00:00'"
    inserts = [f"INSERT INTO zd VALUES ({pk}, {values})" for pk, (values, _) in ROWS.items()]
    mariadb.execute(permissive, TABLE, *inserts, database=schema)
    with mariadb.connect(schema) as conn, conn.cursor() as cur:  # (the server did keep the zero dates)
        cur.execute("SELECT CAST(dt_nn AS CHAR), CAST(d AS CHAR), CAST(d_nn AS CHAR) FROM zd WHERE id IN (2, 4)")
        assert cur.fetchall() == (
            ("2024-05-00 01:02:03", "2024-00-10", "0000-03-04"),
            ("2023-02-29 00:00:00", "2024-02-30", "2023-02-29"),
        )
        cur.execute("SELECT CAST(ts AS CHAR), CAST(ts6_nn AS CHAR) FROM zd WHERE id = 1")
        assert cur.fetchall() == (("0000-00-00 00:00:00", "0000-00-00 00:00:00.000000"),)
    children = [
        Child(mariadb, schema, tmp_path, "debezium", fmt="debezium", zone="UTC", server_id=221),
        Child(mariadb, schema, tmp_path, "dms", fmt="dms", zone="UTC", server_id=222),
    ]
    try:
        for child in children:
            wait(child.snapshot_done, f"the snapshot of {child.out.stem}")
        mariadb.execute(
            permissive,
            *(f"INSERT INTO zd VALUES ({pk + 10}, {values})" for pk, (values, _) in ROWS.items()),
            # zero dates in, zero dates out, NULLs in
            "UPDATE zd SET "
            + ", ".join(f"{c} = {v}" for c, v in zip(COLUMNS, ZERO.split(", "), strict=True))
            + " WHERE id = 3",
            "UPDATE zd SET "
            + ", ".join(f"{c} = {v}" for c, v in zip(COLUMNS, REAL.split(", "), strict=True))
            + " WHERE id = 1",
            "UPDATE zd SET dt = NULL, dt6 = NULL, d = NULL, ts = NULL, ts6 = NULL WHERE id = 2",
            "DELETE FROM zd WHERE id = 12",
            database=schema,
        )
        for child in children:

            def complete(child: Child = child) -> bool:
                child.alive()
                return len(child.lines()) >= 12

            wait(complete, f"12 records from {child.out.stem}")
    finally:
        codes = [child.stop() for child in children]
    assert codes == [0, 0]
    deb_lines, dms_lines = (child.lines() for child in children)
    assert len(deb_lines) == len(dms_lines) == 12

    got: dict[tuple[str, int], dict[str, Any]] = {}
    for key, r in records(deb_lines):
        pk = (r["after"] or r["before"])["id"]
        assert key == f"{schema}.zd.{pk}"
        got[r["op"], pk] = r
    assert set(got) == {("r", pk) for pk in ROWS} | {("c", pk + 10) for pk in ROWS} | {
        ("u", 1),
        ("u", 2),
        ("u", 3),
        ("d", 12),
    }
    # The snapshot: zero, partial-zero and invalid dates, and zero TIMESTAMPs, are null (nullable) or the epoch (NOT
    # NULL); NULL is null.
    for pk, (_, row) in ROWS.items():
        assert got["r", pk]["after"] == {"id": pk} | row
    # The binary log gives the same values for the same rows, inserted, updated and deleted.
    for pk, (_, row) in ROWS.items():
        assert got["c", pk + 10]["after"] == {"id": pk + 10} | row
    assert got["d", 12]["before"] == {"id": 12} | ZERO_ROW
    assert got["u", 3]["before"] == {"id": 3} | NULLS_ROW
    assert got["u", 3]["after"] == {"id": 3} | ZERO_ROW
    assert got["u", 1]["before"] == {"id": 1} | ZERO_ROW
    assert got["u", 1]["after"] == {"id": 1} | REAL_ROW
    assert got["u", 2]["before"] == got["u", 2]["after"] == {"id": 2} | ZERO_ROW  # (zero dates set to NULL: null)

    # DMS records carry the same values: the row image, and the before image of an update.
    dms = {(r["metadata"]["operation"], r["data"]["id"]): r for _, r in records(dms_lines)}
    operation = {"r": "load", "c": "insert", "u": "update", "d": "delete"}
    assert set(dms) == {(operation[op], pk) for op, pk in got}
    for (op, pk), deb in got.items():
        rec = dms[operation[op], pk]
        assert rec["data"] == (deb["after"] or deb["before"])
        if op == "u":
            assert rec["before-image"] == deb["before"]


def test_zero_timestamp_value() -> None:
    """The zero TIMESTAMP as the client library gives it (text) and as the binary-log reader does (the epoch):
    null when nullable, else the epoch with the column's digits; a real instant keeps its value either way."""
    epoch = dt.datetime(1970, 1, 1)  # (naive UTC, as the reader gives it)
    for zero, fsp in (("0000-00-00 00:00:00", 0), ("0000-00-00 00:00:00.000000", 6), (epoch, 0), (epoch, 6)):
        assert timestamp_value(zero, fsp, nullable=True) is None
        expected = "1970-01-01T00:00:00Z" if fsp == 0 else "1970-01-01T00:00:00.000000Z"
        assert encode_value(timestamp_value(zero, fsp, nullable=False)) == expected
    first = dt.datetime(1970, 1, 1, 0, 0, 1)  # (the first real TIMESTAMP)
    for nullable in (True, False):
        assert encode_value(timestamp_value(first, 6, nullable)) == "1970-01-01T00:00:01.000000Z"
