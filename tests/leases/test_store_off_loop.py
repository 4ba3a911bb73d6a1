"""A lease store that stalls never stalls the event loop: shard processors write their checkpoints off the loop.

One worker runs a mapping over a 2-shard stream (a real Engine, in this process) with a real lease store: PostgreSQL
behind the test's TCP proxy, which stalls the store's connection (``blackhole``) while a checkpoint is in flight, or a
SQLite file another connection holds locked (``BEGIN IMMEDIATE``). Meanwhile a task on the event loop keeps counting
ticks and the other shard's handler keeps being invoked. Once the stall ends nothing is lost, nothing is delivered
twice under one epoch, and no checkpoint ever moved backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from shardline import Engine
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.functions import InProcessFunction
from shardline.runtime.leases import Lease, LeaseStore, SqliteLeaseStore
from shardline.runtime.leases.coordinator import LeaseTiming
from shardline.runtime.leases.postgres import PostgresLeaseStore
from shardline.runtime.mapping import MappingConfig, RuntimeTuning
from shardline.runtime.position import Position
from shardline.runtime.source import EngineSource
from shardline.runtime.supervisor import Mapping

from ._cluster import delivery_counts, same_epoch_duplicates
from ._pg import HOST as PG_HOST
from ._pg import PORT as PG_PORT
from ._pg import audit_violations, install_audit
from ._proxy import Proxy

T = TypeVar("T")
SHARD0 = "shardId-000000000000"
SHARD1 = "shardId-000000000001"
HASH_KEY = {SHARD0: "0", SHARD1: str(2**128 - 1)}  # explicit hash keys: the lowest and the highest of the range
WAIT_S = 60.0
TICKS = 20  # event-loop ticks that must pass while one checkpoint write is stalled
# No periodic shard sync pass during a test (the first one, at start, finds both shards): a pass reads the leases on
# the mapping's store thread, and one that goes out into the stall first would hold the checkpoint write queued
# behind it, unsent, so the stalled call would not be the checkpoint this module watches.
TUNING = RuntimeTuning(poll_interval_s=0.01, shard_sync_interval_s=300.0)


# ----------------------------------------------------------------------------------------------- the loop, watched


class Ticker:
    """A task on the event loop that counts ticks (a few milliseconds each) until stopped."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    try:
        yield ticker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Write:
    """One checkpoint write: the ticker's count when it was sent (read on the thread that sent it)."""

    ticks: int
    done: bool = False


@dataclass
class Writes:
    """Every checkpoint write a store was asked for, noted on the thread that runs it."""

    ticker: Ticker
    sent: list[Write] = field(default_factory=list)

    def run(self, write: Callable[[], None]) -> None:
        w = Write(self.ticker.ticks)
        self.sent.append(w)
        try:
            write()
        finally:
            w.done = True

    def stalled(self, after: int) -> Write | None:
        """A write sent after the first ``after`` that is still in flight while the loop ticked TICKS times."""
        return next((w for w in self.sent[after:] if not w.done and self.ticker.ticks - w.ticks >= TICKS), None)


class WatchedPostgres(PostgresLeaseStore):
    writes: Writes

    def checkpoint(self, lease: Lease, position: Position) -> None:
        self.writes.run(lambda: PostgresLeaseStore.checkpoint(self, lease, position))


class WatchedSqlite(SqliteLeaseStore):
    writes: Writes

    def checkpoint(self, lease: Lease, position: Position) -> None:
        self.writes.run(lambda: SqliteLeaseStore.checkpoint(self, lease, position))


# ----------------------------------------------------------------------------------------------- the worker


@dataclass
class Handler:
    """The function: notes every record (shard, sequence number, data, lease epoch); a shard's ``hold``-th
    invocation waits for ``release`` (a batch held in flight)."""

    hold: tuple[str, int] | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held = False
    calls: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[str, str, str, int | None]] = field(default_factory=list)

    async def __call__(self, event: dict[str, Any], context: Any) -> None:
        import base64  # noqa: PLC0415

        shard = event["Records"][0]["eventID"].split(":")[0]
        self.calls[shard] = self.calls.get(shard, 0) + 1
        if self.hold == (shard, self.calls[shard]):
            self.held = True
            await self.release.wait()
        for r in event["Records"]:
            k = r["kinesis"]
            self.rows.append((shard, k["sequenceNumber"], base64.b64decode(k["data"]).decode(), context.lease_epoch))

    def seen(self, datas: list[str]) -> bool:
        got = {n for _, _, n, _ in self.rows}
        return all(d in got for d in datas)


class Feed:
    """Puts records numbered 0, 1, 2 ... into a chosen shard; remembers each shard's last sequence number."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sent = 0
        self.last: dict[str, str] = {}

    async def put(self, shard: str, n: int) -> list[str]:
        datas = [str(i) for i in range(self.sent, self.sent + n)]
        entries = [PutRecordsRequestEntry(d.encode(), "pk", HASH_KEY[shard]) for d in datas]
        res = await self.engine.put_records(entries, stream_name="s")
        assert res.failed_record_count == 0 and {r.shard_id for r in res.records} == {shard}
        self.sent += n
        self.last[shard] = str(res.records[-1].sequence_number)
        return datas


def _mapping(engine: Engine, store: LeaseStore, handler: Handler, *, leasing: LeaseTiming | None) -> Mapping:
    fn = InProcessFunction(handler, name="fn")
    cfg = MappingConfig("fn", engine.stream_arn("s"), "TRIM_HORIZON", batch_size=10)
    return Mapping(
        cfg,
        function=fn,
        function_arn=fn.config.arn,
        role_arn=fn.config.role_arn,
        source=EngineSource(engine, "s"),
        store=store,
        tuning=TUNING,
        leasing=leasing,
    )


async def wait_for(cond: Callable[[], T], what: str, timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return got


async def _run_until_stalled(
    mapping: Mapping, handler: Handler, feed: Feed, writes: Writes, stall: Callable[[], object]
) -> Write:
    """Shard 0's second batch is held in flight while shard 1 settles everything; then ``stall`` cuts the store off
    and the held batch returns: its checkpoint write goes out into the stall. Returns that write once the loop has
    ticked TICKS times with it in flight and then shard 1 has handled records put after the stall began."""
    await feed.put(SHARD0, 20)
    early1 = await feed.put(SHARD1, 20)
    mapping.start()
    await wait_for(lambda: handler.held and handler.seen(early1), "shard 0's second batch held, shard 1 handled")
    proc = await wait_for(lambda: mapping.processor(SHARD1), "shard 1's processor")
    assert proc is not None
    await asyncio.wait_for(proc.idle(), WAIT_S)  # shard 1's checkpoint written: it waits for nothing in the store
    before = len(writes.sent)
    stall()
    handler.release.set()
    stalled = await wait_for(lambda: writes.stalled(before), f"a checkpoint write in flight for {TICKS} ticks")
    assert stalled is not None
    late1 = await feed.put(SHARD1, 10)
    await wait_for(lambda: handler.seen(late1), "shard 1 invoked with records put during the stall")
    return stalled


async def _finish(mapping: Mapping, handler: Handler, feed: Feed, check: LeaseStore) -> None:
    """After the stall: more records in both shards; every record handled, both checkpoints at the end, stop."""
    await feed.put(SHARD0, 10)
    await feed.put(SHARD1, 10)
    everything = [str(i) for i in range(feed.sent)]
    await wait_for(lambda: handler.seen(everything), "every record handled")

    def at_end() -> bool:
        for shard, seq in feed.last.items():
            lease = check.get(mapping.uuid, "s", shard)
            if lease is None or lease.checkpoint != seq:
                return False
        return True

    await wait_for(at_end, "both checkpoints at the last record")
    await asyncio.wait_for(mapping.stop(), WAIT_S)
    assert at_end()


# ----------------------------------------------------------------------------------------------- the checks


@contextlib.contextmanager
def _proxy() -> Iterator[Proxy]:
    proxy = Proxy(PG_HOST, PG_PORT).start()
    try:
        yield proxy
    finally:
        proxy.stop()


async def test_a_stalled_postgresql_checkpoint_does_not_stall_the_event_loop(tmp_path: Path, dsn: str) -> None:
    """PostgreSQL behind a proxy that stops forwarding while shard 0's checkpoint is in flight: the event loop keeps
    ticking and shard 1 keeps being invoked; once the connection is reset and forwarding again, every record is
    handled, none twice under one epoch, and the audit shows no checkpoint moving backwards."""
    with _proxy() as proxy:
        via = dsn.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}")
        async with ticking() as ticker, Engine(data_dir=tmp_path / "data", fsync="never") as engine:
            await engine.create_stream("s", 2)
            # A statement timeout far beyond the test: the stall lasts until the test ends it.
            store = await asyncio.to_thread(WatchedPostgres, via, owner="w1", timeout_s=60.0)
            store.writes = writes = Writes(ticker)
            check = await asyncio.to_thread(PostgresLeaseStore, dsn, owner="check")
            install_audit(dsn)
            handler = Handler(hold=(SHARD0, 2))
            mapping = _mapping(engine, store, handler, leasing=LeaseTiming(ttl_s=60.0))
            feed = Feed(engine)
            try:
                stalled = await _run_until_stalled(mapping, handler, feed, writes, lambda: proxy.set("blackhole"))
                assert not stalled.done, "shard 1 was invoked only after the stalled write returned"
                proxy.set("reset")  # the stalled connection ends; the write is refused and stays due
                await wait_for(lambda: stalled.done, "the stalled write to return")
                proxy.set("pass")
                await _finish(mapping, handler, feed, check)
            finally:
                handler.release.set()
                try:
                    await asyncio.wait_for(mapping.stop(), WAIT_S)
                finally:
                    store.close()
                    check.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE delivered (id bigserial PRIMARY KEY, shard_id text, seq text, n text, worker int, "
            "epoch bigint, t_start timestamptz, t_end timestamptz)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO delivered (shard_id, seq, n, worker, epoch) VALUES (%s, %s, %s, 1, %s)", handler.rows
            )
    lost, dups, _ = delivery_counts(dsn, feed.sent)
    assert (lost, same_epoch_duplicates(dsn)) == (0, 0), f"lost {lost}, duplicates {dups}"
    assert audit_violations(dsn) == []


async def test_a_locked_sqlite_file_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """The single-process runtime's SQLite file, write-locked by another connection (BEGIN IMMEDIATE) while shard
    0's checkpoint is in flight: the event loop keeps ticking and shard 1 keeps being invoked while the file is
    locked (the file's busy timeout, 5 s, may end the stalled write first: it stays due); once the lock is let go
    every record is handled exactly once and both checkpoints reach the last record."""
    path = tmp_path / "leases.db"
    async with ticking() as ticker, Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        await engine.create_stream("s", 2)
        store = WatchedSqlite(path, owner="w1")
        store.writes = writes = Writes(ticker)
        check = SqliteLeaseStore(path, owner="check")
        locker = sqlite3.connect(path, isolation_level=None)
        handler = Handler(hold=(SHARD0, 2))
        mapping = _mapping(engine, store, handler, leasing=None)
        feed = Feed(engine)
        try:
            await _run_until_stalled(mapping, handler, feed, writes, lambda: locker.execute("BEGIN IMMEDIATE"))
            locker.execute("COMMIT")
            await _finish(mapping, handler, feed, check)
        finally:
            handler.release.set()
            if locker.in_transaction:
                locker.execute("COMMIT")
            try:
                await asyncio.wait_for(mapping.stop(), WAIT_S)
            finally:
                locker.close()
                store.close()
                check.close()
    seen = sorted(int(n) for _, _, n, _ in handler.rows)
    assert seen == list(range(feed.sent))


async def test_a_stopping_mapping_takes_no_lease_back(tmp_path: Path) -> None:
    """While a stop drains the shards (shard 0 holds a batch in flight), the lease loop takes nothing: shard 1, which
    drained at once and gave its lease back, is not taken again only to be stopped, however many take intervals
    pass (the loop's renewals of shard 0 go on meanwhile, and are what this waits for)."""
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        await engine.create_stream("s", 2)
        store = SqliteLeaseStore(tmp_path / "leases.db", owner="w1")
        handler = Handler(hold=(SHARD0, 1))
        mapping = _mapping(engine, store, handler, leasing=LeaseTiming(ttl_s=1.5, take_s=0.05))
        feed = Feed(engine)
        await feed.put(SHARD0, 5)
        ones = await feed.put(SHARD1, 5)
        stopping: asyncio.Future[None] | None = None
        try:
            mapping.start()
            await wait_for(lambda: handler.held and handler.seen(ones), "shard 0's batch held, shard 1 handled")
            worker = mapping.lease_worker
            assert worker is not None
            counters = worker.counters
            taken = counters.taken
            stopping = asyncio.ensure_future(mapping.stop())
            await wait_for(lambda: counters.released >= 1, "shard 1's lease given back")
            statements = counters.statements
            await wait_for(lambda: counters.statements >= statements + 3, "three more renewals of shard 0")
            assert counters.taken == taken
            handler.release.set()
            await asyncio.wait_for(stopping, WAIT_S)
            assert handler.seen([str(i) for i in range(feed.sent)])
        finally:
            handler.release.set()
            try:
                if stopping is not None:
                    await asyncio.wait_for(stopping, WAIT_S)
            finally:
                store.close()
