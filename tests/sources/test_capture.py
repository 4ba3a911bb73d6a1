"""Row changes from a real MariaDB arrive on the stream as exact Debezium envelopes, each row's changes in order."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from shardline.sources.envelope import partition_key

from ._cdc import NOW_MS, capture, wait_until
from ._mariadb import MariaDB

Txn = tuple[str | None, int, int]  # gtid, binlog position before, after


def committed(db: MariaDB, schema: str, *statements: str) -> Txn:
    """Run ``statements`` as one transaction; return its GTID and the binlog positions around it."""
    with db.connect(schema) as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        before = int(cur.fetchone()[1])
        cur.execute("BEGIN")
        for sql in statements:
            cur.execute(sql)
        cur.execute("COMMIT")
        cur.execute("SELECT @@last_gtid")
        gtid = str(cur.fetchone()[0])
        cur.execute("SHOW MASTER STATUS")
        return gtid, before, int(cur.fetchone()[1])


def envelope(
    schema: str, table: str, op: str, before: Any, after: Any, *, txn: Txn | None, pos: int, row: int = 0
) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "shardline-cdc-1",
            "connector": "mariadb",
            "name": "shop",
            "ts_ms": NOW_MS if txn is None else None,  # (binlog: the commit's time, checked separately)
            "snapshot": "true" if txn is None else "false",
            "db": schema,
            "sequence": None,
            "table": table,
            "server_id": 1,
            "gtid": None if txn is None else txn[0],
            "file": "binlog.000001",
            "pos": pos,
            "row": row,
            "thread": None,
            "query": None,
        },
        "op": op,
        "ts_ms": NOW_MS,
        "transaction": None,
    }


def check(  # noqa: PLR0917 (an envelope's fields, in its order)
    got: dict[str, Any], schema: str, table: str, op: str, before: Any, after: Any, txn: Txn | None, row: int = 0
) -> None:
    """``got`` is exactly that envelope; a binlog change's position lies inside its transaction."""
    pos = got["source"]["pos"]
    if txn is not None:
        assert txn[1] <= pos < txn[2], (pos, txn)
        assert got["source"]["ts_ms"] > 0 and got["source"]["ts_ms"] % 1000 == 0
        got = {**got, "source": {**got["source"], "ts_ms": None}}
    assert got == envelope(schema, table, op, before, after, txn=txn, pos=pos, row=row)


def by_key(records: list[dict[str, Any]], schema: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        row = r["after"] if r["after"] is not None else r["before"]
        table = r["source"]["table"]
        key = (row["id"],) if table == "items" else (row["a"], row["b"])
        out.setdefault(partition_key(schema, table, key), []).append(r)
    return out


ITEMS = (
    "CREATE TABLE items (id INT PRIMARY KEY, qty SMALLINT NOT NULL, big BIGINT UNSIGNED, price DECIMAL(12,3), "
    "at DATETIME(6), doc JSON, raw BLOB, name VARCHAR(40) CHARACTER SET utf8mb4, note TEXT)"
)
ROW1 = {
    "id": 1, "qty": -3, "big": 18446744073709551615, "price": "12345.678", "at": "2024-02-29T23:59:58.123456",
    "doc": '{"a": [1, 2.5, null]}', "raw": base64.b64encode(b"\x00\xff\x10").decode(), "name": "héllo wörld 🎉",
    "note": None,
}  # fmt: skip
INSERT1 = (
    "INSERT INTO items VALUES (1, -3, 18446744073709551615, 12345.678, '2024-02-29 23:59:58.123456', "
    "'{\"a\": [1, 2.5, null]}', x'00ff10', 'héllo wörld 🎉', NULL)"
)


async def test_snapshot_then_inserts_updates_deletes_and_a_key_change(
    mariadb: MariaDB, schema: str, tmp_path: Path
) -> None:
    mariadb.execute(ITEMS, INSERT1, database=schema)
    async with capture(mariadb, schema, tmp_path) as cap:
        await cap.wait_for(1)
        t_ins = committed(
            mariadb, schema,
            "INSERT INTO items (id, qty, at, name) VALUES (2, 7, '2001-01-01 00:00:00.000001', 'plain')",
        )  # fmt: skip
        t_upd = committed(mariadb, schema, "UPDATE items SET qty = qty + 1, note = 'x' WHERE id = 2")
        t_del = committed(mariadb, schema, "DELETE FROM items WHERE id = 1")
        t_key = committed(mariadb, schema, "UPDATE items SET id = 20 WHERE id = 2")
        records = await cap.wait_for(6)
    assert len(records) == 6
    keys = by_key(records, schema)
    row2 = {k: None for k in ROW1} | {"id": 2, "qty": 7, "at": "2001-01-01T00:00:00.000001", "name": "plain"}
    row2u = row2 | {"qty": 8, "note": "x"}
    assert [r["op"] for r in keys[f"{schema}.items.1"]] == ["r", "d"]
    r1, d1 = keys[f"{schema}.items.1"]
    check(r1, schema, "items", "r", None, ROW1, None)
    check(d1, schema, "items", "d", ROW1, None, t_del)
    c2, u2, d2 = keys[f"{schema}.items.2"]
    check(c2, schema, "items", "c", None, row2, t_ins)
    check(u2, schema, "items", "u", row2, row2u, t_upd)
    # A primary-key change: a delete of the old key, then a create of the new one (on its own key's shard).
    check(d2, schema, "items", "d", row2u, None, t_key)
    (c20,) = keys[f"{schema}.items.20"]
    check(c20, schema, "items", "c", None, row2u | {"id": 20}, t_key, 1)
    assert c20["source"]["pos"] == d2["source"]["pos"]


async def test_multi_row_and_multi_table_transactions(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    mariadb.execute(ITEMS, "CREATE TABLE audit (a VARCHAR(20), b INT, what TEXT, PRIMARY KEY (b, a))", database=schema)
    async with capture(mariadb, schema, tmp_path) as cap:
        await cap.streaming()
        t1 = committed(
            mariadb, schema,
            "INSERT INTO items (id, qty) VALUES (5, 1), (6, 2), (7, 3)",
            "UPDATE items SET qty = qty * 10 WHERE id IN (5, 7)",
            "INSERT INTO audit VALUES ('x', 1, 'three items')",
        )  # fmt: skip
        records = await cap.wait_for(6)
    keys = by_key(records, schema)
    blank = {k: None for k in ROW1}
    for pk, qty, updated in ((5, 1, 10), (6, 2, None), (7, 3, 30)):
        history = keys[f"{schema}.items.{pk}"]
        assert [r["op"] for r in history] == (["c", "u"] if updated else ["c"])
        row = blank | {"id": pk, "qty": qty}
        check(history[0], schema, "items", "c", None, row, t1, pk - 5)
        if updated:
            upd = row | {"qty": updated}
            n = 0 if pk == 5 else 1
            check(history[1], schema, "items", "u", row, upd, t1, n)
    # A composite key, in column order (a, b), whatever the key's own column order.
    (audit,) = keys[f'{schema}.audit.["x",1]']
    check(audit, schema, "audit", "c", None, {"a": "x", "b": 1, "what": "three items"}, t1)
    assert {r["source"]["gtid"] for r in records} == {t1[0]}


def open_transactions(db: MariaDB) -> list[tuple[Any, ...]]:
    """The server's open InnoDB transactions (the asking connection has none: it autocommits)."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT trx_id, trx_mysql_thread_id, trx_started FROM information_schema.innodb_trx")
        return list(cur.fetchall())


async def test_the_snapshot_s_read_ends_before_streaming_starts(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    # The consistent read holds a metadata lock on every table it read: were it still open once the snapshot is
    # marked done, an ALTER TABLE would wait for it (and every later query of the table behind the ALTER).
    mariadb.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT)", "INSERT INTO t VALUES (1, 1)", database=schema)
    open_at_done: list[list[tuple[Any, ...]]] = []
    async with capture(mariadb, schema, tmp_path) as cap:
        checkpoint = cap.source.checkpoint
        save = checkpoint.save

        def save_and_look() -> None:  # (on a worker thread: the source saves through asyncio.to_thread)
            if checkpoint.snapshot_done and not open_at_done:
                open_at_done.append(open_transactions(mariadb))
            save()

        checkpoint.save = save_and_look  # type: ignore[method-assign]
        await cap.streaming()
        await wait_until(lambda: open_at_done, "the checkpoint that marks the snapshot done")
        assert open_at_done == [[]]
        await asyncio.to_thread(mariadb.execute, "ALTER TABLE t ADD COLUMN b INT", database=schema)
        await asyncio.to_thread(mariadb.execute, "INSERT INTO t VALUES (2, 2, 2)", database=schema)
        records = await cap.wait_for(2)
    assert sorted((r["after"] for r in records), key=lambda row: row["id"]) == [
        {"id": 1, "a": 1},
        {"id": 2, "a": 2, "b": 2},
    ]


async def test_alter_table_mid_stream_decodes_each_row_with_its_columns(
    mariadb: MariaDB, schema: str, tmp_path: Path
) -> None:
    mariadb.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT, b VARCHAR(10))", database=schema)
    async with capture(mariadb, schema, tmp_path) as cap:
        await cap.streaming()
        # (off the event loop, which the source runs on: a statement that waits for a lock must not stop it)
        await asyncio.to_thread(
            mariadb.execute,
            "INSERT INTO t VALUES (1, 10, 'one')",
            "ALTER TABLE t ADD COLUMN mid DECIMAL(5,1) DEFAULT 2.5 AFTER id",
            "INSERT INTO t VALUES (2, 3.5, 20, 'two')",
            "ALTER TABLE t DROP COLUMN a, RENAME COLUMN b TO label",
            "UPDATE t SET label = 'uno' WHERE id = 1",
            "ALTER TABLE t MODIFY label VARCHAR(10) NOT NULL AFTER id",
            "INSERT INTO t VALUES (3, 'three', 1.0)",
            database=schema,
        )
        records = await cap.wait_for(4)
    images = sorted(((r["op"], r["before"], r["after"]) for r in records), key=lambda x: str(x[2]))
    assert images == sorted(
        [
            ("c", None, {"id": 1, "a": 10, "b": "one"}),
            ("c", None, {"id": 2, "mid": "3.5", "a": 20, "b": "two"}),
            ("u", {"id": 1, "mid": "2.5", "label": "one"}, {"id": 1, "mid": "2.5", "label": "uno"}),
            ("c", None, {"id": 3, "label": "three", "mid": "1.0"}),
        ],
        key=lambda x: str(x[2]),
    )
    assert [list(r["after"]) for r in records if r["after"] and r["after"]["id"] == 3] == [["id", "label", "mid"]]
