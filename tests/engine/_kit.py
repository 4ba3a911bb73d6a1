"""The engine tests' kit: opens engines over one data directory with one clock, and the reading and shard helpers
the engine test files share (the ``kit`` fixture in conftest.py hands one to each test)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from shardline import Engine, ManualClock, Record, Settings, Shard

MAX_KEY = (1 << 128) - 1


class Kit:
    """Opens engines over one data directory with one clock (closing whatever is still open at teardown), and
    holds the helpers the engine test files share."""

    def __init__(self, data_dir: Path, clock: ManualClock) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.opened: list[Engine] = []

    def settings(self, **overrides: Any) -> Settings:
        # Tests drive retention with enforce_retention(); the background pass runs only where a test asks for it.
        base: dict[str, Any] = {"data_dir": self.data_dir, "fsync": "never", "retention_check_interval_s": 1e9}
        base.update(overrides)
        return Settings(**base)

    async def open(self, **overrides: Any) -> Engine:
        eng = Engine(self.settings(**overrides), clock=self.clock)
        await eng.open()
        self.opened.append(eng)
        return eng

    async def reopen(self, eng: Engine, **overrides: Any) -> Engine:
        """Close ``eng`` cleanly and open the same directory again (same settings unless overridden)."""
        await eng.close()
        fields = {
            name: getattr(eng.settings, name) for name in eng.settings.__dataclass_fields__ if name not in overrides
        }
        fields.update(overrides)
        new = Engine(Settings(**fields), clock=self.clock)
        await new.open()
        self.opened.append(new)
        return new

    async def close_all(self) -> None:
        for eng in self.opened:
            await eng.close()

    @staticmethod
    async def read_all(
        engine: Engine, stream: str, shard_id: str, iterator_type: str = "TRIM_HORIZON", **kw: Any
    ) -> list[Record]:
        """Every record from the given position up to the end of what is visible now."""
        it: str | None = await engine.get_shard_iterator(
            stream_name=stream, shard_id=shard_id, shard_iterator_type=iterator_type, **kw
        )
        return await Kit.drain(engine, it)

    @staticmethod
    async def put_numbered(engine: Engine, n: int, start: int = 0, stream: str = "s") -> list[tuple[str, str, bytes]]:
        """Put ``record-<i>`` under key ``k<i>`` for i in [start, start + n): (shard id, sequence number, data) each."""
        out = []
        for i in range(start, start + n):
            data = f"record-{i}".encode()
            res = await engine.put_record(stream_name=stream, data=data, partition_key=f"k{i}")
            out.append((res.shard_id, res.sequence_number, data))
        return out

    @staticmethod
    async def stored(engine: Engine, stream: str = "s") -> list[tuple[str, str, bytes]]:
        """Every record readable now, as ``put_numbered`` returns them, sorted."""
        out = []
        for shard in (await engine.describe_stream(stream)).shards:
            for rec in await Kit.read_all(engine, stream, shard.shard_id):
                out.append((shard.shard_id, rec.sequence_number, rec.data))
        return sorted(out)

    @staticmethod
    async def drain(engine: Engine, iterator: str | None, limit: int | None = None) -> list[Record]:
        out: list[Record] = []
        while iterator is not None:
            res = await engine.get_records(iterator, limit=limit)
            out.extend(res.records)
            iterator = res.next_shard_iterator
            if not res.records and res.millis_behind_latest == 0:
                break
        return out

    @staticmethod
    async def all_shards(engine: Engine, stream: str) -> list[Shard]:
        res = await engine.list_shards(stream)
        shards = list(res.shards)
        while res.next_token is not None:
            res = await engine.list_shards(next_token=res.next_token)
            shards.extend(res.shards)
        return shards

    @staticmethod
    def open_shards(shards: list[Shard]) -> list[Shard]:
        return sorted(
            (s for s in shards if s.sequence_number_range.ending_sequence_number is None),
            key=lambda s: s.hash_key_range.starting_hash_key,
        )

    @staticmethod
    def shard_for_key(shards: list[Shard], key: int) -> str:
        """The open shard whose inclusive hash range holds ``key``, computed without the engine's router."""
        hits = [
            s.shard_id
            for s in Kit.open_shards(shards)
            if s.hash_key_range.starting_hash_key <= key <= s.hash_key_range.ending_hash_key
        ]
        assert len(hits) == 1, hits
        return hits[0]

    @staticmethod
    def assert_covers_key_space(shards: list[Shard]) -> None:
        """Open shards cover 0 .. 2^128-1 with no gap and no overlap."""
        opened = Kit.open_shards(shards)
        assert opened, "no open shards"
        assert opened[0].hash_key_range.starting_hash_key == 0
        assert opened[-1].hash_key_range.ending_hash_key == MAX_KEY
        for a, b in itertools.pairwise(opened):
            assert a.hash_key_range.ending_hash_key + 1 == b.hash_key_range.starting_hash_key, (a, b)
