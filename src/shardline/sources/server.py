"""Talking to the database server: connecting, telling MariaDB from MySQL, checking the binary-log settings a
source needs, and listing the captured tables with their primary keys.

This module (like binlog.py) imports the MySQL client libraries: only mysql.py imports it, and only a project
with sources imports mysql.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymysql

from .config import SourceConfig

__all__ = ["ServerInfo", "SourceSetupError", "Table", "check_server", "connect", "list_tables"]


class SourceSetupError(RuntimeError):
    """The server cannot give a source correct events, or a table cannot be captured as configured."""


@dataclass(frozen=True)
class ServerInfo:
    flavour: str  # "mariadb" or "mysql"
    version: str
    server_id: int


@dataclass(frozen=True)
class Table:
    db: str
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # primary-key columns in key order; () for a table without one
    integer_key: bool  # every key column is an integer type (a snapshot can resume mid-table)
    # per column, its type (information_schema's DATA_TYPE, lower case) and size: the fractional-second digits of a
    # TIMESTAMP, the bits of a BIT, else 0 (how the snapshot decodes the values; see snapshot.decode_row)
    types: tuple[tuple[str, int], ...] = ()
    nullable: tuple[bool, ...] = ()  # per column, whether it allows NULL (a zero date in it is null; see zero_date)

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.name}"


def connect(cfg: SourceConfig, *, autocommit: bool = True) -> Any:
    return pymysql.connect(
        host=cfg.host,
        port=cfg.port,
        user=cfg.user,
        password=cfg.password(),
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=10,
    )


def _variables(cur: Any, names: list[str]) -> dict[str, str]:
    cur.execute(
        "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME IN ("
        + ",".join(["%s"] * len(names))
        + ")",
        [n.upper() for n in names],
    )
    return {str(k).lower(): str(v) for k, v in cur.fetchall()}


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("-", maxsplit=1)[0].split(".")[:3] if p.isdigit())


def check_server(conn: Any) -> ServerInfo:
    """Detect the flavour and check the settings; raise SourceSetupError naming the setting and the fix."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@version, @@version_comment, @@server_id")
        version, comment, server_id = cur.fetchone()
        try:
            cur.execute("SELECT @@log_bin")
        except Exception:  # pragma: no cover (every supported server has it)
            raise SourceSetupError("the server does not report log_bin") from None
        (log_bin,) = cur.fetchone()
        found = _variables(cur, ["binlog_format", "binlog_row_image", "binlog_row_metadata"])
    flavour = "mariadb" if "mariadb" in f"{version} {comment}".lower() else "mysql"
    problems: list[str] = []
    if str(log_bin) not in ("1", "ON"):
        problems.append(
            "log_bin is OFF: the server writes no binary log. It cannot be turned on at runtime: start the server "
            "with log_bin (log-bin=mysql-bin and server-id=1 under [mysqld]) and restart it"
        )
    if found.get("binlog_format", "").upper() != "ROW":
        problems.append(
            f"binlog_format is {found.get('binlog_format')}, not ROW: SET GLOBAL binlog_format = 'ROW'; "
            "(and binlog_format=ROW under [mysqld] so that it survives a restart; sessions already open keep theirs)"
        )
    if found.get("binlog_row_image", "FULL").upper() != "FULL":
        problems.append(
            f"binlog_row_image is {found.get('binlog_row_image')}, not FULL: SET GLOBAL binlog_row_image = 'FULL'; "
            "(and binlog_row_image=FULL under [mysqld])"
        )
    needs_metadata = _version_tuple(version) >= ((10, 5) if flavour == "mariadb" else (8, 0, 14))
    if needs_metadata and found.get("binlog_row_metadata", "").upper() != "FULL":
        problems.append(
            f"binlog_row_metadata is {found.get('binlog_row_metadata')}, not FULL (column names would be missing "
            "after a schema change): SET GLOBAL binlog_row_metadata = 'FULL'; (and binlog_row_metadata=FULL under "
            "[mysqld])"
        )
    if not needs_metadata:
        problems.append(
            f"{flavour} {version} cannot log column names with row events (binlog_row_metadata needs MariaDB 10.5 "
            "or MySQL 8.0.14 or later), so a schema change could be decoded with the wrong columns"
        )
    if problems:
        raise SourceSetupError("the server cannot give correct change events: " + "; ".join(problems))
    return ServerInfo(flavour, str(version), int(server_id))


_INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}


def list_tables(conn: Any, cfg: SourceConfig) -> list[Table]:
    """The base tables the source captures, with their primary keys; keyless ones refused unless opted in."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
            "AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
            "ORDER BY TABLE_SCHEMA, TABLE_NAME"
        )
        names = [(str(d), str(t)) for d, t in cur.fetchall() if cfg.tables(str(d), str(t))]
        out: list[Table] = []
        for db, name in names:
            cur.execute(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY, DATETIME_PRECISION, NUMERIC_PRECISION, IS_NULLABLE "
                "FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (db, name),
            )
            cols = cur.fetchall()
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (db, name),
            )
            key = tuple(str(r[0]) for r in cur.fetchall())
            types = {str(c[0]): str(c[1]).lower() for c in cols}
            if not key and cfg.keyless != "table":
                raise SourceSetupError(
                    f"table {db}.{name} has no primary key, so its rows cannot be keyed: add one, exclude the "
                    "table, or set keyless: table to put all of its changes on one shard (in order, but hot)"
                )
            sizes = tuple((str(c[1]).lower(), _size(str(c[1]).lower(), c[3], c[4])) for c in cols)
            nullable = tuple(str(c[5]).upper() == "YES" for c in cols)
            out.append(
                Table(db, name, tuple(str(c[0]) for c in cols), key, bool(key) and all(
                    types[k] in _INTEGER_TYPES for k in key
                ), sizes, nullable)
            )  # fmt: skip
    return out


def _size(data_type: str, datetime_precision: Any, numeric_precision: Any) -> int:
    if data_type == "timestamp":
        return int(datetime_precision or 0)
    if data_type == "bit":
        return int(numeric_precision or 1)
    return 0


def row_estimates(conn: Any, tables: list[Table]) -> dict[str, int]:
    """The server's estimate of each table's row count (information_schema: cheap, approximate for InnoDB)."""
    out: dict[str, int] = {}
    with conn.cursor() as cur:
        for t in tables:
            cur.execute(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (t.db, t.name),
            )
            row = cur.fetchone()
            out[t.full_name] = int(row[0] or 0) if row else 0
    return out


def binary_logs(conn: Any) -> list[tuple[str, int]]:
    """The server's binary-log files, oldest first, with their sizes in bytes."""
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return [(str(r[0]), int(r[1])) for r in cur.fetchall()]
