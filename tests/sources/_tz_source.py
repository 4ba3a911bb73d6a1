"""A source in a process of its own (run with the time zone under test in ``TZ``), writing each record it puts to a
file, one JSON line ``[partition key, data]`` per record, flushed at once. SIGTERM stops it cleanly (exit 0).

Usage: python _tz_source.py PORT SCHEMA FORMAT SERVER_ID OUT STATE_DIR
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from shardline import ManualClock
from shardline.sources.config import SourceConfig, TableFilter
from shardline.sources.mysql import MySqlSource

NOW_MS = 1_700_000_000_000


class FileSink:
    stream_name = "changes"

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    async def check(self) -> None:
        return None

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        for data, key in entries:
            self.out.write(orjson.dumps([key, data.decode()]) + b"\n")
        self.out.flush()
        return [None] * len(entries)


async def main(port: int, schema: str, *, fmt: str, server_id: int, out_path: Path, state: Path) -> None:
    cfg = SourceConfig(
        name="shop", host="127.0.0.1", port=port, user="root", database=schema, stream="changes",
        tables=TableFilter((), (f"{schema}.*",), ()), format=fmt, server_id=server_id, chunk_size=2,
    )  # fmt: skip
    with out_path.open("ab") as out:
        source = MySqlSource(cfg, FileSink(out), state, clock=ManualClock(NOW_MS))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(source.stop()))
        await source.run()


if __name__ == "__main__":
    print(f"local utc offset {time.strftime('%z')}", flush=True)  # (the zone the process runs in, for the test)
    port, schema, fmt, server_id, out, state = sys.argv[1:]
    asyncio.run(main(int(port), schema, fmt=fmt, server_id=int(server_id), out_path=Path(out), state=Path(state)))
