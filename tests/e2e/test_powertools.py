"""Powertools handlers, unmodified, behind a real mapping on real workers: the batch utility's partial responses and
the parser's strict Kinesis model both work against the events and context the runtime produces."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from shardline import Engine
from shardline.runtime.checkpoints import LeaseStore
from shardline.runtime.destinations import FileDestination
from shardline.runtime.functions import FunctionConfig, FunctionPool
from shardline.runtime.mapping import MappingConfig, RuntimeTuning
from shardline.runtime.source import EngineSource
from shardline.runtime.supervisor import Mapping

pytest.importorskip("aws_lambda_powertools")
pytest.importorskip("pydantic")

pytestmark = pytest.mark.usefixtures("no_leaked_workers")

STREAM = "pt-orders"
TUNING = RuntimeTuning(poll_interval_s=0.01, retry_backoff_s=0.01, throttle_backoff_s=0.01)


@dataclass
class Rig:
    engine: Engine
    mapping: Mapping
    pool: FunctionPool
    store: LeaseStore
    notes: Path
    failures: Path

    def read_notes(self, kind: str) -> list[dict[str, Any]]:
        if not self.notes.exists():
            return []
        lines = [orjson.loads(x) for x in self.notes.read_bytes().splitlines() if x.strip()]
        return [x for x in lines if x["kind"] == kind]

    def failure_messages(self) -> list[dict[str, Any]]:
        if not self.failures.exists():
            return []
        return [orjson.loads(x) for x in self.failures.read_bytes().splitlines() if x.strip()]

    def checkpoint(self) -> str | None:
        leases = self.store.leases(self.mapping.uuid)
        return leases[0].checkpoint if leases else None


@asynccontextmanager
async def rig(tmp_path: Path, handlers_dir: Path, handler: str, **mapping_kw: Any) -> AsyncIterator[Rig]:
    (tmp_path / "markers").mkdir()
    notes = tmp_path / "notes.jsonl"
    function = FunctionConfig(
        name="pt-fn",
        handler=handler,
        code_dir=handlers_dir,
        timeout_s=20.0,
        memory_mb=512,
        environment={
            "E2E_NOTES": str(notes),
            "E2E_MARKERS": str(tmp_path / "markers"),
            "POWERTOOLS_SERVICE_NAME": "orders",
            "POWERTOOLS_METRICS_NAMESPACE": "e2e",
        },
    )
    pool = FunctionPool(function)
    store = LeaseStore(tmp_path / "leases.db")
    failures = tmp_path / "failures.jsonl"
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        await engine.create_stream(STREAM, 1)
        mapping = Mapping(
            MappingConfig(function.name, engine.stream_arn(STREAM), "TRIM_HORIZON", **mapping_kw),
            function=pool,
            function_arn=function.arn,
            role_arn=function.role_arn,
            source=EngineSource(engine, STREAM),
            store=store,
            destination=FileDestination(failures),
            tuning=TUNING,
        )
        try:
            yield Rig(engine, mapping, pool, store, notes, failures)
        finally:
            await mapping.stop()
            await pool.close()
            store.close()


async def put_items(engine: Engine, items: list[dict[str, Any]]) -> list[str]:
    out = await engine.put_records([(orjson.dumps(x), f"pk-{x['id']}") for x in items], stream_name=STREAM)
    assert out.failed_record_count == 0
    return [str(r.sequence_number) for r in out.records]


async def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def items(n: int, **special: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"id": i} for i in range(1, n + 1)]
    for key, fields in special.items():
        out[int(key.removeprefix("r")) - 1].update(fields)
    return out


async def test_batch_processor_partial_response_rewinds_to_the_failure(tmp_path: Path, handlers_dir: Path) -> None:
    async with rig(
        tmp_path,
        handlers_dir,
        "pt_batch.handler",
        batch_size=10,
        function_response_types=("ReportBatchItemFailures",),
        maximum_retry_attempts=2,
    ) as r:
        seqs = await put_items(r.engine, items(10, r4={"fail_once": True}))
        r.mapping.start()
        await wait_until(lambda: r.checkpoint() == seqs[-1], "the checkpoint to pass r10")
        await r.mapping.stop()
        batches = [b["seqs"] for b in r.read_notes("batch")]
        processed = [p["id"] for p in r.read_notes("processed")]
        messages = r.failure_messages()
    # The first call fails only r4; the retry holds r4..r10 (everything from the lowest failure), never r1..r3.
    assert batches == [seqs, seqs[3:]]
    assert processed == [1, 2, 3, 5, 6, 7, 8, 9, 10, 4, 5, 6, 7, 8, 9, 10]
    assert messages == []
    assert r.pool.cold_starts == 1  # the second batch ran warm


async def test_batch_processor_whole_batch_failure_is_a_function_error(tmp_path: Path, handlers_dir: Path) -> None:
    async with rig(
        tmp_path,
        handlers_dir,
        "pt_batch.handler",
        batch_size=5,
        function_response_types=("ReportBatchItemFailures",),
        maximum_retry_attempts=1,
    ) as r:
        bad = [{"id": i, "fail": True} for i in range(1, 6)]
        seqs = await put_items(r.engine, [*bad, {"id": 6}])
        r.mapping.start()
        await wait_until(lambda: r.checkpoint() == seqs[-1], "the checkpoint to pass r6")
        await r.mapping.stop()
        batches = [b["seqs"] for b in r.read_notes("batch")]
        processed = [p["id"] for p in r.read_notes("processed")]
        messages = r.failure_messages()
    # BatchProcessingError (every record failed) is an exception: retried once as a whole, then discarded.
    assert batches == [seqs[:5], seqs[:5], seqs[5:]]
    assert processed == [6]
    (msg,) = messages
    assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert msg["requestContext"]["approximateInvokeCount"] == 2
    assert msg["responseContext"]["functionError"] == "Unhandled"
    info = msg["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (seqs[0], seqs[4], 5)


async def test_parser_model_accepts_the_event_and_partial_response_is_honoured(
    tmp_path: Path, handlers_dir: Path
) -> None:
    async with rig(
        tmp_path,
        handlers_dir,
        "pt_parser.handler",
        batch_size=100,
        function_response_types=("ReportBatchItemFailures",),
        maximum_retry_attempts=0,
    ) as r:
        before_ms = int(time.time() * 1000)
        seqs = await put_items(r.engine, items(8, r3={"fail_once": True}, r6={"fail": True}))
        r.mapping.start()
        await wait_until(lambda: r.checkpoint() == seqs[-1], "the checkpoint to pass r8")
        await r.mapping.stop()
        batches = [b["seqs"] for b in r.read_notes("batch")]
        processed = r.read_notes("processed")
        messages = r.failure_messages()
    # r3 and r6 are reported: the lowest wins, so r1..r2 are settled and, with no retries allowed, r3..r8 are
    # discarded as one range.
    assert batches == [seqs]
    assert [p["id"] for p in processed] == [1, 2, 4, 5, 7, 8]
    (msg,) = messages
    info = msg["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (seqs[2], seqs[7], 6)
    assert msg["responseContext"]["functionError"] is None  # the function answered; it reported failures
    arn = r.engine.stream_arn(STREAM)
    for p in processed:
        seq = seqs[p["id"] - 1]
        assert p["seq"] == seq
        assert p["partition_key"] == f"pk-{p['id']}"
        assert p["event_id"] == f"shardId-000000000000:{seq}"
        assert p["source_arn"] == arn
        assert p["role"] == "arn:aws:iam::000000000000:role/pt-fn-role"
        assert p["region"] == "us-east-1"
        assert before_ms / 1000 - 1 <= p["arrival"] <= time.time() + 1


async def test_parser_retry_after_partial_response(tmp_path: Path, handlers_dir: Path) -> None:
    async with rig(
        tmp_path,
        handlers_dir,
        "pt_parser.handler",
        batch_size=100,
        function_response_types=("ReportBatchItemFailures",),
        maximum_retry_attempts=3,
    ) as r:
        seqs = await put_items(r.engine, items(6, r5={"fail_once": True}))
        r.mapping.start()
        await wait_until(lambda: r.checkpoint() == seqs[-1], "the checkpoint to pass r6")
        await r.mapping.stop()
        batches = [b["seqs"] for b in r.read_notes("batch")]
        processed = [p["id"] for p in r.read_notes("processed")]
    assert batches == [seqs, seqs[4:]]
    assert processed == [1, 2, 3, 4, 6, 5, 6]
    assert r.failure_messages() == []
