"""What a source refuses (server settings, keyless tables, secrets in the file), the DMS format, the partition
keys, and the order-keeping put."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from shardline._config import ConfigError
from shardline.sources.config import parse_sources
from shardline.sources.envelope import partition_key
from shardline.sources.server import SourceSetupError, check_server, connect, list_tables
from shardline.sources.sink import put_ordered

from ._cdc import capture, read_stream, source_config
from ._mariadb import MariaDB, mariadb_server


@pytest.fixture(scope="module")
def no_binlog(tmp_path_factory: pytest.TempPathFactory, mariadb_template: Path) -> Iterator[MariaDB]:
    with mariadb_server(tmp_path_factory.mktemp("nobinlog"), mariadb_template, binlog=False) as db:
        yield db


def test_a_server_without_a_binary_log_is_refused_naming_the_setting(no_binlog: MariaDB) -> None:
    with connect(source_config(no_binlog, "x")) as conn, pytest.raises(SourceSetupError) as err:
        check_server(conn)
    assert "log_bin is OFF" in str(err.value) and "log-bin" in str(err.value)


@pytest.mark.parametrize(
    ("setting", "value", "fix"),
    [
        ("binlog_format", "STATEMENT", "SET GLOBAL binlog_format = 'ROW'"),
        ("binlog_format", "MIXED", "SET GLOBAL binlog_format = 'ROW'"),
        ("binlog_row_image", "MINIMAL", "SET GLOBAL binlog_row_image = 'FULL'"),
        ("binlog_row_metadata", "MINIMAL", "SET GLOBAL binlog_row_metadata = 'FULL'"),
    ],
)
def test_settings_that_cannot_give_correct_events_are_named_with_their_fix(
    mariadb: MariaDB, setting: str, value: str, fix: str
) -> None:
    mariadb.execute(f"SET GLOBAL {setting} = '{value}'")
    try:
        with connect(source_config(mariadb, "x")) as conn, pytest.raises(SourceSetupError) as err:
            check_server(conn)
    finally:
        mariadb.execute(
            f"SET GLOBAL {setting} = 'FULL'" if setting != "binlog_format" else f"SET GLOBAL {setting} = 'ROW'"
        )
    assert f"{setting} is {value}" in str(err.value)
    assert fix in str(err.value)
    with connect(source_config(mariadb, "x")) as conn:
        assert check_server(conn).flavour == "mariadb"


def test_a_table_without_a_primary_key_is_refused_unless_opted_in(mariadb: MariaDB, schema: str) -> None:
    mariadb.execute("CREATE TABLE log (at INT, msg TEXT)", database=schema)
    with connect(source_config(mariadb, schema)) as conn:
        with pytest.raises(SourceSetupError, match=rf"table {schema}\.log has no primary key.*keyless: table"):
            list_tables(conn, source_config(mariadb, schema))
        (table,) = list_tables(conn, source_config(mariadb, schema, keyless="table"))
    assert table.key == ()


async def test_a_keyless_table_opted_in_goes_to_one_partition_key(
    mariadb: MariaDB, schema: str, tmp_path: Path
) -> None:
    mariadb.execute("CREATE TABLE log (at INT, msg TEXT)", "INSERT INTO log VALUES (1, 'a'), (1, 'a')", database=schema)
    async with capture(mariadb, schema, tmp_path, keyless="table") as cap:
        await cap.streaming()
        mariadb.execute("DELETE FROM log LIMIT 1", database=schema)
        await cap.wait_for(3)
        got = await read_stream(cap.engine)
    assert [(k, d["op"]) for _s, k, d in got] == [
        (f"{schema}.log", "r"),
        (f"{schema}.log", "r"),
        (f"{schema}.log", "d"),
    ]


async def test_dms_format(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    mariadb.execute("CREATE TABLE t (id INT PRIMARY KEY, b VARBINARY(4), v VARCHAR(5))", database=schema)
    mariadb.execute("INSERT INTO t VALUES (1, x'01', 'a')", database=schema)
    async with capture(mariadb, schema, tmp_path, format="dms") as cap:
        await cap.streaming()
        mariadb.execute("UPDATE t SET v = 'b' WHERE id = 1", "DELETE FROM t", database=schema)
        records = await cap.wait_for(3)
    b64 = base64.b64encode(b"\x01").decode()
    meta = {"record-type": "data", "partition-key-type": "primary-key", "partition-key-value": f"{schema}.t.1",
            "schema-name": schema, "table-name": "t", "timestamp": "2023-11-14T22:13:20.000000Z"}  # fmt: skip
    load, update, delete = records
    assert load == {"data": {"id": 1, "b": b64, "v": "a"}, "metadata": meta | {"operation": "load"}}
    for rec, op in ((update, "update"), (delete, "delete")):
        m = rec["metadata"]
        assert m["transaction-id"].startswith("0-1-") and m["stream-position"].startswith("binlog.000001:")
        assert m["commit-timestamp"].endswith("Z")
        rest = {k: v for k, v in m.items() if k not in ("transaction-id", "stream-position", "commit-timestamp")}
        assert rest == meta | {"operation": op}
    assert update["data"] == {"id": 1, "b": b64, "v": "b"} and update["before-image"] == {"id": 1, "b": b64, "v": "a"}
    assert delete["data"] == {"id": 1, "b": b64, "v": "b"}


def test_partition_keys() -> None:
    assert partition_key("shop", "orders", (42,)) == "shop.orders.42"
    assert partition_key("shop", "orders", ("a.b",)) == "shop.orders.a.b"
    assert partition_key("shop", "lines", (42, "x")) == 'shop.lines.[42,"x"]'
    assert partition_key("shop", "log", None) == "shop.log"
    long = partition_key("shop", "docs", ("x" * 300,))
    assert len(long) == 64 and long == partition_key("shop", "docs", ("x" * 300,))
    assert long != partition_key("shop", "docs", ("x" * 299 + "y",))


class FlakySink:
    """A stream that refuses chosen entries on their first attempt (as a throttled shard does)."""

    stream_name = "s"

    def __init__(self, refuse_first: set[bytes]) -> None:
        self.refuse_first = refuse_first
        self.stored: list[tuple[bytes, str]] = []
        self.requests: list[list[str]] = []

    async def check(self) -> None:
        pass

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        self.requests.append([k for _d, k in entries])
        out: list[str | None] = []
        for data, key in entries:
            if data in self.refuse_first:
                self.refuse_first.discard(data)
                out.append("ProvisionedThroughputExceededException")
            else:
                self.stored.append((data, key))
                out.append(None)
        return out


async def test_a_retried_entry_is_never_overtaken_by_a_later_change_of_its_key() -> None:
    entries = [(f"{k}{i}".encode(), k) for i in range(4) for k in "abc"] + [(b"a9", "a")]
    sink = FlakySink({b"a0", b"b1", b"c3", b"a9"})
    retried = await put_ordered(sink, entries)
    assert retried == 4
    for key in "abc":
        assert [d for d, k in sink.stored if k == key] == [d for d, k in entries if k == key]
    assert all(len(set(r)) == len(r) for r in sink.requests)  # no key twice in one request
    assert sorted(sink.stored) == sorted(entries)


def test_config(tmp_path: Path) -> None:
    path = tmp_path / "shardline.yml"
    (tmp_path / "pw").write_text("s3cret\n")
    os.chmod(tmp_path / "pw", 0o600)
    cfgs = parse_sources(
        {"shop": {"dsn": "mysql://cdc@db.example:3307/shop", "stream": "shop-changes", "passwordFile": "pw",
                  "exclude": ["shop.tmp_*"], "format": "dms"}},
        path,
    )  # fmt: skip
    cfg = cfgs["shop"]
    assert (cfg.host, cfg.port, cfg.user, cfg.database, cfg.format, cfg.snapshot) == (
        "db.example",
        3307,
        "cdc",
        "shop",
        "dms",
        "initial",
    )
    assert cfg.password() == "s3cret" and "s3cret" not in repr(cfg) and "s3cret" not in cfg.where
    assert cfg.tables("shop", "orders") and not cfg.tables("shop", "tmp_1") and not cfg.tables("other", "orders")
    listed = parse_sources({"s": {"dsn": "mysql://u@h/db", "stream": "x", "tables": ["db.a"]}}, path)["s"]
    assert listed.tables("db", "a") and not listed.tables("db", "b") and listed.password_env == "S_DB_PASSWORD"
    assert listed.server_id != cfg.server_id and 1_000_000 <= listed.server_id < 2_000_000
    bad = {
        "mysql://u:pw@h/db": "sources.s.dsn: holds a password: put it in $S_DB_PASSWORD or a passwordFile instead",
        "postgres://u@h/db": "sources.s.dsn: must look like mysql://USER@HOST:PORT/DATABASE",
    }
    for dsn, message in bad.items():
        with pytest.raises(ConfigError) as err:
            parse_sources({"s": {"dsn": dsn, "stream": "x"}}, path)
        assert message in str(err.value) and "pw@" not in str(err.value)
    with pytest.raises(ConfigError, match=r"sources\.s\.format: 'avro' is not allowed \(allowed: debezium, dms\)"):
        parse_sources({"s": {"dsn": "mysql://u@h/db", "stream": "x", "format": "avro"}}, path)
    os.chmod(tmp_path / "pw", 0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(chmod 600 it\)"):
        parse_sources({"s": {"dsn": "mysql://u@h/db", "stream": "x", "passwordFile": "pw"}}, path)


def test_the_mysql_libraries_are_imported_only_when_a_source_runs() -> None:
    code = (
        "import sys, shardline, shardline.cli, shardline.sources.config\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('pymysql', 'pymysqlreplication')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
