"""Applies Debezium change events to a SQLite copy of the table (REPLICA_DB names the file).

Each record is one row change: ``r`` (snapshot) and ``c`` insert or replace the row, ``u`` replaces it, ``d``
deletes it. A record put twice after a source restart is applied twice, which leaves the same row: the replica
stays correct because every change of one order arrives in commit order (same partition key, same shard).
"""

import base64
import json
import os
import sqlite3

_open: dict[str, sqlite3.Connection] = {}  # the worker's connection, opened on its first batch


def _conn() -> sqlite3.Connection:
    if "db" not in _open:
        db = sqlite3.connect(os.environ["REPLICA_DB"], isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT, total TEXT, status TEXT)")
        _open["db"] = db
    return _open["db"]


def handler(event: dict, context: object) -> None:
    db = _conn()
    db.execute("BEGIN")
    for record in event["Records"]:
        change = json.loads(base64.b64decode(record["kinesis"]["data"]))
        if change["op"] == "d":
            db.execute("DELETE FROM orders WHERE id = ?", (change["before"]["id"],))
        else:
            row = change["after"]
            db.execute(
                "INSERT OR REPLACE INTO orders (id, customer, total, status) VALUES (?, ?, ?, ?)",
                (row["id"], row["customer"], row["total"], row["status"]),
            )
    db.execute("COMMIT")
