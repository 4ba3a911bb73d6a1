"""A MariaDB source resumes by GTID: after a crash whose last put reached the stream but not the checkpoint, and
after the binary log of its checkpoint was rotated away and purged (where a file/position resume cannot work)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock, Settings
from shardline.sources.checkpoint import Checkpoint, merge_gtid
from shardline.sources.mysql import MySqlSource
from shardline.sources.sink import EngineSink

from ._cdc import NOW_MS, STREAM, read_stream, source_config, wait_until
from ._mariadb import MariaDB, mariadb_server


class Crash(Exception):
    pass


class AckThenCrash(EngineSink):
    """Once armed, stores the next put and then fails, as a process killed after the stream acknowledged its records
    but before it wrote its checkpoint."""

    armed = False

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        out = await super().put_records(entries)
        if self.armed:
            raise Crash
        return out


def _query(db: MariaDB, sql: str) -> Any:
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def test_merge_gtid_keeps_one_item_per_domain() -> None:
    assert merge_gtid(None, "0-1-5") == "0-1-5"
    assert merge_gtid("0-1-5", "0-1-6") == "0-1-6"
    assert merge_gtid("0-1-6", "2-7-1") == "0-1-6,2-7-1"
    assert merge_gtid("0-1-6,2-7-1", "2-7-2") == "0-1-6,2-7-2"


async def test_resumes_by_gtid_after_a_crash_and_a_purged_binary_log(tmp_path: Path, mariadb_template: Path) -> None:
    with mariadb_server(tmp_path / "server", mariadb_template) as db:
        db.execute("CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY, v INT)")
        engine = Engine(Settings(data_dir=tmp_path / "data", fsync="never"), clock=ManualClock(NOW_MS))
        await engine.open()
        try:
            await engine.create_stream(STREAM, 2)
            cfg = source_config(db, "shop")
            state = tmp_path / "state"
            sink = AckThenCrash(engine, STREAM)
            first = MySqlSource(cfg, sink, state, clock=ManualClock(NOW_MS))
            task = asyncio.create_task(first.run())
            await wait_until(lambda: task.done() or first.checkpoint.snapshot_done, "the (empty) snapshot")
            for i in (1, 2):  # T1, T2: on the stream and checkpointed
                db.execute(f"INSERT INTO shop.t VALUES ({i}, {i})")
            t2 = str(_query(db, "SELECT @@gtid_binlog_pos")[0])
            await wait_until(lambda: task.done() or first.checkpoint.gtid == t2, "T2's GTID in the checkpoint")
            old_file = first.checkpoint.binlog.file if first.checkpoint.binlog else ""
            db.execute("FLUSH BINARY LOGS")
            newer_file = str(_query(db, "SHOW MASTER STATUS")[0])  # where T3 and T4 go
            sink.armed = True
            db.execute("UPDATE shop.t SET v = 30 WHERE id = 1")  # T3: on the stream, not in the checkpoint
            with pytest.raises(Crash):
                await asyncio.wait_for(task, 60)
            assert Checkpoint.load(state / "shop.json").gtid == t2
            # While the source is down: T4, then the checkpoint's file is rotated away and purged. (Only that file:
            # the next one holds T3 and T4, which a resume must still read.)
            db.execute("INSERT INTO shop.t VALUES (4, 4)", "FLUSH BINARY LOGS")
            db.execute(f"PURGE BINARY LOGS TO '{newer_file}'")
            assert old_file not in [str(r[0]) for r in _all(db, "SHOW BINARY LOGS")]
            end = str(_query(db, "SELECT @@gtid_binlog_pos")[0])

            second = MySqlSource(cfg, EngineSink(engine, STREAM), state, clock=ManualClock(NOW_MS))
            task = asyncio.create_task(second.run())
            try:
                await wait_until(lambda: task.done() or second.checkpoint.gtid == end, "T4's GTID in the checkpoint")
                assert not task.done()
                # The server drops the replication connection: the library reconnects by itself, after the last
                # transaction read (not after the GTID the source started from: T3 and T4 are not read again).
                dumps = _all(db, "SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'")
                assert dumps
                for (thread,) in dumps:
                    db.execute(f"KILL {int(thread)}")
                db.execute("DELETE FROM shop.t WHERE id = 2")  # T5: streaming goes on after the resume
                records = await wait_until(
                    lambda: _when(read_stream(engine), lambda r: len(r) >= 6), "T5 on the stream"
                )
            finally:
                await second.stop()
                await task
            changes = [(r["op"], (r["after"] or r["before"])["id"], r["source"]["gtid"]) for _s, _k, r in records]
            by_gtid: dict[str, int] = {}
            for _op, _id, gtid in changes:
                by_gtid[gtid] = by_gtid.get(gtid, 0) + 1
            assert sorted(by_gtid.values()) == [1, 1, 1, 1, 2]  # T1, T2, T4, T5 once; T3 (in flight) twice
            t3 = [g for g, n in by_gtid.items() if n == 2]
            assert [c for c in changes if c[2] in t3] == [("u", 1, t3[0])] * 2
            assert sorted((op, i) for op, i, _g in changes) == [
                ("c", 1), ("c", 2), ("c", 4), ("d", 2), ("u", 1), ("u", 1)
            ]  # fmt: skip
            assert second.checkpoint.binlog is not None and second.checkpoint.binlog.file != old_file
        finally:
            await engine.close()


def _all(db: MariaDB, sql: str) -> list[Any]:
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


async def _when(records: Any, ok: Any) -> Any:
    got = await records
    return got if ok(got) else None
