"""A snapshot stopped mid-table resumes after the last acknowledged chunk, and no row goes back in time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock, Settings
from shardline.sources.mysql import MySqlSource
from shardline.sources.sink import EngineSink

from ._cdc import NOW_MS, STREAM, read_stream, source_config, wait_until
from ._mariadb import MariaDB


class Crash(Exception):
    pass


class CrashingSink(EngineSink):
    """Stores the first ``puts`` requests, then fails (as a process killed before its next put would)."""

    def __init__(self, engine: Engine, puts: int) -> None:
        super().__init__(engine, STREAM)
        self.puts = puts

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        if self.puts == 0:
            raise Crash
        self.puts -= 1
        return await super().put_records(entries)


def histories(records: list[tuple[str, str, dict[str, Any]]]) -> dict[int, list[tuple[str, Any, Any]]]:
    out: dict[int, list[tuple[str, Any, Any]]] = {}
    for _shard, _key, r in records:
        row = r["after"] or r["before"]
        before = r["before"]["v"] if r["before"] else None
        after = r["after"]["v"] if r["after"] else None
        out.setdefault(row["id"], []).append((r["op"], before, after))
    return out


async def test_resumed_snapshot_skips_the_changes_its_later_read_already_holds(
    mariadb: MariaDB, schema: str, tmp_path: Path
) -> None:
    mariadb.execute(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR(10))",
        "INSERT INTO t VALUES " + ", ".join(f"({i}, 'v{i}')" for i in range(1, 11)),
        database=schema,
    )
    engine = Engine(Settings(data_dir=tmp_path / "data", fsync="never"), clock=ManualClock(NOW_MS))
    await engine.open()
    try:
        await engine.create_stream(STREAM, 2)
        cfg = source_config(mariadb, schema, chunk_size=3)
        first = MySqlSource(cfg, CrashingSink(engine, 1), tmp_path / "state", clock=ManualClock(NOW_MS))
        with pytest.raises(Crash):
            await first.run()
        assert first.checkpoint.tables[f"{schema}.t"].after == [3]
        # Changes while the source is down: to a row already read, and to rows the snapshot has yet to read.
        mariadb.execute(
            "UPDATE t SET v = 'two' WHERE id = 2",
            "UPDATE t SET v = 'eight' WHERE id = 8",
            "DELETE FROM t WHERE id = 9",
            "INSERT INTO t VALUES (11, 'eleven')",
            database=schema,
        )
        second = MySqlSource(cfg, EngineSink(engine, STREAM), tmp_path / "state", clock=ManualClock(NOW_MS))
        task = asyncio.create_task(second.run())
        try:
            await wait_until(lambda: task.done() or second.checkpoint.snapshot_done, "the snapshot to finish")
            mariadb.execute("UPDATE t SET v = 'EIGHT' WHERE id = 8", database=schema)

            async def all_there() -> bool:
                return task.done() or len(await read_stream(engine)) >= 12

            await wait_until(all_there, "12 records")
        finally:
            await second.stop()
            await task
        got = histories(await read_stream(engine))
    finally:
        await engine.close()
    assert got == {
        1: [("r", None, "v1")],
        2: [("r", None, "v2"), ("u", "v2", "two")],
        3: [("r", None, "v3")],
        **{i: [("r", None, f"v{i}")] for i in (4, 5, 6, 7, 10)},
        8: [("r", None, "eight"), ("u", "eight", "EIGHT")],
        11: [("r", None, "eleven")],
    }
