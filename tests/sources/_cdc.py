"""Running a source against the private server into an embedded engine, and reading back what it put."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shardline import Engine, ManualClock, Settings
from shardline.sources.config import SourceConfig, TableFilter
from shardline.sources.mysql import MySqlSource
from shardline.sources.sink import EngineSink

from ._mariadb import MariaDB

__all__ = ["NOW_MS", "Captured", "capture", "read_stream", "source_config", "wait_until"]

NOW_MS = 1_700_000_000_000
STREAM = "changes"


def source_config(db: MariaDB, schema: str, **overrides: Any) -> SourceConfig:
    base: dict[str, Any] = {
        "name": "shop",
        "host": "127.0.0.1",
        "port": db.port,
        "user": "root",
        "database": schema,
        "stream": STREAM,
        "tables": TableFilter((), (f"{schema}.*",), ()),
        "chunk_size": 3,
    }
    base.update(overrides)
    return SourceConfig(**base)


async def read_stream(engine: Engine, stream: str = STREAM) -> list[tuple[str, str, dict[str, Any]]]:
    """Every record of every shard as (shard id, partition key, decoded data), each shard in order."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    page = await engine.list_shards(stream)
    for shard in page.shards:
        it: str | None = await engine.get_shard_iterator(
            stream_name=stream, shard_id=shard.shard_id, shard_iterator_type="TRIM_HORIZON"
        )
        while it is not None:
            r = await engine.get_records(it, limit=10_000)
            out += [(shard.shard_id, rec.partition_key, orjson.loads(rec.data)) for rec in r.records]
            if not r.records:
                break
            it = r.next_shard_iterator
    return out


async def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail with ``what`` after the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Captured:
    engine: Engine
    source: MySqlSource
    task: asyncio.Task[None]
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def records(self) -> list[dict[str, Any]]:
        return [data for _s, _k, data in await read_stream(self.engine)]

    async def streaming(self) -> None:
        """Wait until the snapshot is done (changes from now on come from the binary log)."""

        def done() -> bool:
            if self.task.done():
                self.task.result()
            return self.source.checkpoint.snapshot_done

        await wait_until(done, "the snapshot to finish")

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """Wait until the stream holds at least ``count`` records; return them (each shard in order)."""

        async def enough() -> list[dict[str, Any]] | None:
            if self.task.done():
                self.task.result()  # (a source that died: its error)
            got = await self.records()
            return got if len(got) >= count else None

        got: list[dict[str, Any]] = await wait_until(enough, f"{count} records on the stream")
        return got


@contextlib.asynccontextmanager
async def capture(
    db: MariaDB, schema: str, tmp_path: Path, *, shards: int = 2, **overrides: Any
) -> AsyncIterator[Captured]:
    engine = Engine(Settings(data_dir=tmp_path / "data", fsync="never"), clock=ManualClock(NOW_MS))
    await engine.open()
    try:
        with contextlib.suppress(Exception):
            await engine.create_stream(STREAM, shards)
        cfg = source_config(db, schema, **overrides)
        source = MySqlSource(cfg, EngineSink(engine, STREAM), tmp_path / "state", clock=ManualClock(NOW_MS))
        task = asyncio.create_task(source.run())
        try:
            yield Captured(engine, source, task)
        finally:
            await source.stop()
            await task
    finally:
        await engine.close()
