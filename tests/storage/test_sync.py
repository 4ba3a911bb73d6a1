"""Group commit: concurrent writers share fsyncs, and an acknowledged record is visible."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from shardline.storage.log import FileCache, ShardLog
from shardline.storage.sync import GroupCommitter

from ._util import Model, open_log, read_all


def _logs(tmp_path: Path, files: FileCache, n: int) -> list[Model]:
    out = []
    for i in range(n):
        lg, _ = open_log(tmp_path / f"shard{i}", files, segment_bytes=4096, visible_on_write=False)
        out.append(Model(lg, seed=i))
    return out


def test_concurrent_writers_share_fsyncs_and_see_their_records(tmp_path: Path, files: FileCache) -> None:
    models = _logs(tmp_path, files, 4)
    writers, appends_each = 40, 5

    async def writer(committer: GroupCommitter, seed: int) -> int:
        rng = random.Random(seed)
        for _ in range(appends_each):
            targets = rng.sample(models, rng.choice([1, 1, 2]))
            ends = []
            for m in targets:
                m.append(rng.randint(1, 3), 1_000)
                ends.append(m.log.next_offset)
            await committer.commit([m.log for m in targets])
            for m, end in zip(targets, ends, strict=True):
                # Acknowledged means durable, and durable means readable.
                assert m.log.visible_offset >= end
                assert m.log.read(end - 1, 1, 1 << 20)[0] == [m.records[end - 1]]
            await asyncio.sleep(0)
        return appends_each

    async def main() -> GroupCommitter:
        committer = GroupCommitter(threads=2)
        try:
            done = await asyncio.gather(*(writer(committer, s) for s in range(writers)))
        finally:
            await committer.close()
        assert sum(done) == writers * appends_each
        return committer

    committer = asyncio.run(main())
    commits = writers * appends_each
    assert 0 < committer.rounds < commits
    assert 0 < committer.fsyncs < commits
    for m in models:
        assert m.log.visible_offset == m.log.synced_offset == m.log.next_offset == len(m.records)
        assert read_all(m.log) == m.records
        m.log.close()


def test_records_stay_invisible_until_their_commit(tmp_path: Path, files: FileCache) -> None:
    (m,) = _logs(tmp_path, files, 1)

    async def main() -> None:
        committer = GroupCommitter(threads=1)
        try:
            m.append(3, 1)
            assert m.log.visible_offset == 0
            await committer.commit([m.log])
            assert m.log.visible_offset == 3
            m.append(2, 2)
            assert m.log.read(0, 100, 1 << 20) == (m.records[:3], 3)
            await committer.commit([m.log])
            assert m.log.read(0, 100, 1 << 20) == (m.records, 5)
        finally:
            await committer.close()

    asyncio.run(main())
    m.log.close()


def test_a_cancelled_writer_does_not_cancel_the_round(tmp_path: Path, files: FileCache) -> None:
    a, b = _logs(tmp_path, files, 2)

    async def main() -> None:
        committer = GroupCommitter(threads=1)
        try:
            a.append(2, 1)
            first = asyncio.create_task(committer.commit([a.log]))
            b.append(1, 1)
            second = asyncio.create_task(committer.commit([b.log]))
            await asyncio.sleep(0)
            first.cancel()
            await second
            with pytest.raises(asyncio.CancelledError):
                await first
            # The cancelled writer's bytes were in the round anyway.
            assert a.log.visible_offset == 2 and b.log.visible_offset == 1
        finally:
            await committer.close()

    asyncio.run(main())
    for m in (a, b):
        assert read_all(m.log) == m.records
        m.log.close()


def test_commit_of_no_logs_returns(tmp_path: Path, files: FileCache) -> None:
    # Every byte appended to no logs at all is trivially durable, so there is nothing to wait for.
    (m,) = _logs(tmp_path, files, 1)

    async def main() -> None:
        committer = GroupCommitter(threads=1)
        waiter = asyncio.create_task(committer.commit([]))
        try:
            for _ in range(5):
                await asyncio.sleep(0)
            finished = waiter.done()
        finally:
            # Let a round with a log release the waiter in any case, so the test never hangs.
            m.append(1, 1)
            await committer.commit([m.log])
            await waiter
            await committer.close()
        assert finished

    asyncio.run(main())
    m.log.close()


def test_commit_covers_logs_reopened_later(tmp_path: Path, files: FileCache) -> None:
    # What a commit acknowledged is on disk: a reopen (the crash-free part of the promise) reads it back.
    models = _logs(tmp_path, files, 2)

    async def main() -> None:
        committer = GroupCommitter(threads=2)
        try:
            for i in range(10):
                for m in models:
                    m.append(2, i)
                await committer.commit([m.log for m in models])
        finally:
            await committer.close()

    asyncio.run(main())
    for i, m in enumerate(models):
        m.log.close()
        lg: ShardLog
        lg, report = open_log(tmp_path / f"shard{i}", files, segment_bytes=4096)
        assert report.clean
        assert read_all(lg) == m.records
        lg.close()
