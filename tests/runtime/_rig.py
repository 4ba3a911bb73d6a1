"""The mapping tests' rig: a real Engine over tmp_path, real Mappings, scripted in-process handlers, and waits
for what a test asserts (the ``rig`` fixture in conftest.py hands one to each test)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shardline import Engine, Settings
from shardline.clock import Clock
from shardline.errors import ExpiredIteratorException
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.checkpoints import LeaseStore
from shardline.runtime.destinations import Destination, FileDestination, StreamDestination
from shardline.runtime.filters import RecordFilter
from shardline.runtime.functions import InProcessFunction, InvocationResult, Throttled
from shardline.runtime.mapping import MappingConfig, RuntimeTuning
from shardline.runtime.source import EngineSource, Page, ShardSource
from shardline.runtime.supervisor import Mapping

SHARD0 = "shardId-000000000000"
WAIT_S = 15.0


# ----------------------------------------------------------------------------------------------- clocks


class OffsetClock:
    """Real time plus an offset a test (or a handler) moves forward: records age without anyone sleeping.
    Sleeps are real, so backoffs and polls behave as with the system clock."""

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.offset_ms += round(seconds * 1000)


# ----------------------------------------------------------------------------------------------- handlers


@dataclass
class Call:
    """One invocation as the handler saw it."""

    index: int
    records: list[dict[str, Any]]
    request_id: str
    done: bool = False

    @property
    def datas(self) -> list[bytes]:
        return [data_of(r) for r in self.records]

    @property
    def seqs(self) -> list[str]:
        return [r["kinesis"]["sequenceNumber"] for r in self.records]

    @property
    def keys(self) -> list[str]:
        return [r["kinesis"]["partitionKey"] for r in self.records]

    @property
    def shards(self) -> set[str]:
        return {r["eventID"].split(":", 1)[0] for r in self.records}


def data_of(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["kinesis"]["data"], validate=True)


@dataclass
class Recorder:
    """A scripted handler. Every event is recorded first; then ``before`` is awaited (gates, slow calls), then
    ``fail`` decides whether the call raises, and ``respond`` gives the return value (default null)."""

    fail: Callable[[Call], bool] | None = None
    respond: Callable[[Call], Any] | None = None
    before: Callable[[Call], Awaitable[None]] | None = None
    calls: list[Call] = field(default_factory=list)
    timeline: list[tuple[str, int]] = field(default_factory=list)  # ("start" | "end", call index)
    in_flight: int = 0
    max_in_flight: int = 0

    async def __call__(self, event: dict[str, Any], context: Any) -> Any:
        call = Call(len(self.calls), event["Records"], context.aws_request_id)
        self.calls.append(call)
        self.timeline.append(("start", call.index))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.before is not None:
                await self.before(call)
            if self.fail is not None and self.fail(call):
                raise RuntimeError(f"scripted failure in call {call.index}")
            return self.respond(call) if self.respond is not None else None
        finally:
            self.in_flight -= 1
            call.done = True
            self.timeline.append(("end", call.index))

    # -- views
    def batches(self) -> list[list[bytes]]:
        return [c.datas for c in self.calls]

    def delivered(self) -> list[bytes]:
        return [d for c in self.calls for d in c.datas]

    def sizes(self) -> list[int]:
        return [len(c.records) for c in self.calls]


class Fn:
    """The function a mapping invokes: an InProcessFunction around a handler, which can also refuse the first
    ``throttle`` invocations with Throttled (they never reach the handler), and keeps each event's exact bytes."""

    def __init__(self, handler: Any, *, throttle: int = 0, keep_events: bool = True) -> None:
        self.inner = InProcessFunction(handler, name="fn")
        self.throttle_left = throttle
        self.throttled = 0
        self.keep_events = keep_events
        self.events: list[bytes] = []
        self.event_sizes: list[int] = []

    @property
    def arn(self) -> str:
        return self.inner.config.arn

    @property
    def role_arn(self) -> str:
        return self.inner.config.role_arn

    async def invoke(self, event: bytes) -> InvocationResult:
        if self.throttle_left > 0:
            self.throttle_left -= 1
            self.throttled += 1
            raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
        self.event_sizes.append(len(event))
        if self.keep_events:
            self.events.append(event)
        return await self.inner.invoke(event)


# ----------------------------------------------------------------------------------------------- sources


class WatchedSource(EngineSource):
    """The engine source, noting each iterator request and each expired iterator it met."""

    def __init__(self, engine: Engine, stream_name: str) -> None:
        super().__init__(engine, stream_name)
        self.iterator_requests: list[tuple[str, str, str | None]] = []  # (shard, type, sequence number)
        self.expired = 0
        self.polls = 0

    async def get_iterator(
        self, shard_id: str, kind: str, *, sequence_number: str | None = None, timestamp_ms: int | None = None
    ) -> str:
        self.iterator_requests.append((shard_id, kind, sequence_number))
        return await super().get_iterator(shard_id, kind, sequence_number=sequence_number, timestamp_ms=timestamp_ms)

    async def get_records(self, iterator: str, limit: int) -> Page:
        self.polls += 1
        try:
            return await super().get_records(iterator, limit)
        except ExpiredIteratorException:
            self.expired += 1
            raise


# ----------------------------------------------------------------------------------------------- the rig

FAST = RuntimeTuning(
    poll_interval_s=0.01,
    shard_sync_interval_s=1.0,
    retry_backoff_s=0.001,
    retry_backoff_max_s=0.01,
    throttle_backoff_s=0.001,
    throttle_backoff_max_s=0.01,
)


class Rig:
    """Engines, lease stores and mappings of one test, all closed at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.engine: Engine | None = None
        self._engines: list[Engine] = []
        self._stores: list[LeaseStore] = []
        self.mappings: list[Mapping] = []
        self.gates: list[asyncio.Event] = []
        self.dlq_path = tmp_path / "dlq.jsonl"
        self.leases_path = tmp_path / "leases.db"

    # -- engine and streams
    async def open(self, *, clock: Clock | None = None, **settings: Any) -> Engine:
        base: dict[str, Any] = {"data_dir": self.tmp / "data", "fsync": "never"}
        base.update(settings)
        eng = Engine(Settings(**base), clock=clock)
        await eng.open()
        self._engines.append(eng)
        self.engine = eng
        return eng

    @property
    def eng(self) -> Engine:
        assert self.engine is not None, "call rig.open() first"
        return self.engine

    async def stream(self, name: str = "s", shards: int = 1) -> str:
        if self.engine is None:
            await self.open()
        await self.eng.create_stream(name, shards)
        return self.eng.stream_arn(name)

    async def put(
        self, datas: Iterable[bytes], *, stream: str = "s", pk: str | Callable[[int], str] = "pk"
    ) -> list[str]:
        """PutRecords in calls of up to 500, in order; returns the sequence numbers."""
        entries = [PutRecordsRequestEntry(d, pk(i) if callable(pk) else pk) for i, d in enumerate(datas)]
        seqs: list[str] = []
        for i in range(0, len(entries), 500):
            res = await self.eng.put_records(entries[i : i + 500], stream_name=stream)
            assert res.failed_record_count == 0
            seqs.extend(str(r.sequence_number) for r in res.records)
        return seqs

    # -- mappings
    def store(self) -> LeaseStore:
        """A new connection to the test's lease table (a fresh one reads only what was durably written)."""
        st = LeaseStore(self.leases_path)
        self._stores.append(st)
        return st

    def mapping(
        self,
        function: Fn | Recorder,
        *,
        stream: str = "s",
        uuid: str | None = None,
        destination: Destination | str | None = "file",
        filters: list[str] | None = None,
        tuning: RuntimeTuning | None = None,
        clock: Clock | None = None,
        source: ShardSource | None = None,
        store: LeaseStore | None = None,
        event_source_arn: str | None = None,
        starting_position: str = "TRIM_HORIZON",
        **config: Any,
    ) -> Mapping:
        fn = function if isinstance(function, Fn) else Fn(function)
        if destination == "file":
            dest: Destination | None = FileDestination(self.dlq_path)
        elif isinstance(destination, str):
            dest = StreamDestination(self.eng, destination)
        else:
            dest = destination
        cfg = MappingConfig(
            fn.inner.config.name,
            event_source_arn or self.eng.stream_arn(stream),
            starting_position,  # type: ignore[arg-type]
            uuid=uuid or str(uuidlib.uuid4()),
            filter_patterns=tuple(filters or ()),
            **config,
        )
        m = Mapping(
            cfg,
            function=fn,
            function_arn=fn.arn,
            role_arn=fn.role_arn,
            source=source or WatchedSource(self.eng, stream),
            store=store or self.store(),
            destination=dest,
            matcher=RecordFilter(list(filters)) if filters else None,
            tuning=tuning or FAST,
            clock=clock,
        )
        self.mappings.append(m)
        return m

    # -- factories (kept on the rig so a test needs nothing but its fixture)
    @staticmethod
    def recorder(**kw: Any) -> Recorder:
        return Recorder(**kw)

    @staticmethod
    def fn(handler: Any, **kw: Any) -> Fn:
        return Fn(handler, **kw)

    def source(self, stream: str = "s") -> WatchedSource:
        return WatchedSource(self.eng, stream)

    @staticmethod
    def offset_clock(offset_ms: int = 0) -> OffsetClock:
        return OffsetClock(offset_ms)

    @staticmethod
    def numbered(n: int, start: int = 1, prefix: str = "r") -> list[bytes]:
        """r1..rn (as bytes)."""
        return [f"{prefix}{i}".encode() for i in range(start, start + n)]

    @staticmethod
    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    def gate(self) -> asyncio.Event:
        """An event a handler may wait on; every gate opens at teardown so no mapping stop hangs."""
        ev = asyncio.Event()
        self.gates.append(ev)
        return ev

    def checkpoint(self, m: Mapping, shard: str = SHARD0) -> str | None:
        lease = m.store.get(m.uuid, m.source.stream_name, shard)
        return None if lease is None else lease.checkpoint

    def finished(self, m: Mapping, shard: str = SHARD0) -> bool:
        """Whether the mapping has settled ``shard`` to its end."""
        lease = m.store.get(m.uuid, m.source.stream_name, shard)
        return lease is not None and lease.finished

    def dlq(self) -> list[dict[str, Any]]:
        if not self.dlq_path.exists():
            return []
        return [orjson.loads(line) for line in self.dlq_path.read_bytes().splitlines() if line]

    # -- waiting
    @staticmethod
    async def wait_for(cond: Callable[[], bool], what: str = "condition", timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    @staticmethod
    async def idle(m: Mapping) -> None:
        """Until the mapping is idle (``Mapping.idle``): a shard sync has run since the call, and every shard has read
        to the end of what was available and has nothing queued or in flight. A negative check asserted after this
        ("nothing more was invoked") gave the mapping every chance to do what it must not."""
        await asyncio.wait_for(m.idle(), WAIT_S)

    @staticmethod
    async def fetched(m: Mapping, shard: str = SHARD0) -> None:
        """Until ``shard`` has, from now, read to the end of what was available (``ShardProcessor.fetched``), for a
        shard held back from settling, which is never idle: whatever the fetcher had to read, it has read."""
        if m.processor(shard) is None:  # not started yet: the next shard sync starts it
            await asyncio.wait_for(m.synced(), WAIT_S)
        proc = m.processor(shard)
        assert proc is not None, f"{shard} is not being processed"
        await asyncio.wait_for(proc.fetched(), WAIT_S)

    @staticmethod
    async def synced(m: Mapping, passes: int = 1) -> None:
        """Until the mapping has run ``passes`` more shard syncs (``Mapping.synced``; each decides which shards to
        start): what a sync would wrongly start has then been started."""
        for _ in range(passes):
            await asyncio.wait_for(m.synced(), WAIT_S)

    async def stop(self, m: Mapping) -> None:
        await self._waking(m, m.stop())

    async def update(self, m: Mapping, **changes: Any) -> None:
        """``Mapping.update`` (which stops and restarts the shards when Enabled changes)."""
        await self._waking(m, m.update(**changes))

    @staticmethod
    async def _waking(m: Mapping, action: Awaitable[None]) -> None:
        # Stopping wakes idle shards itself; the bound only keeps a regression from hanging the suite.
        await asyncio.wait_for(action, WAIT_S)

    async def aclose(self) -> None:
        for g in self.gates:
            g.set()
        for m in self.mappings:
            with contextlib.suppress(Exception):
                await self.stop(m)
        for eng in self._engines:
            await eng.close()
        for st in self._stores:
            st.close()
