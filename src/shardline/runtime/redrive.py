"""Redrive: re-process the records an on-failure message points to, with the (fixed) function.

An on-failure record carries only pointers: shard id and the first and last sequence numbers. While the stream
still retains those records, ``redrive`` reads them back (AT_SEQUENCE_NUMBER first, up to last, compared as
integers), sends them to the function as one Lambda event (split to stay under the payload limit) and reports,
per message, what was found, what is gone and whether the function succeeded. A message whose pointers are not
valid sequence numbers, or whose stream or shard is gone, fails on its own: the others are still redriven.

``redrive_all`` redrives a set of messages over the embedded engine and remembers each one redriven successfully (in
``redriven.jsonl`` of the runtime's state directory), so running it again skips them unless asked to redo them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..engine import Engine
from ..errors import KinesisError, ResourceNotFoundException
from ..models import Record
from .context import Invoker
from .event import EMPTY_EVENT_BYTES, MAX_PAYLOAD_BYTES, EventContext, encode_event, record_json
from .source import EngineSource, ShardSource
from .verdict import judge

__all__ = [
    "RedriveResult",
    "RedriveRun",
    "load_messages",
    "message_key",
    "read_messages",
    "redrive_all",
    "redrive_message",
]


@dataclass(frozen=True)
class RedriveResult:
    key: str
    shard_id: str
    start: str
    end: str
    found: int
    missing: bool  # some records are past retention (or the stream is gone)
    ok: bool
    error: str | None = None


_POINTERS = ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")


def message_key(msg: dict[str, Any]) -> str:
    info = msg["KinesisBatchInfo"]
    return "|".join(str(info[k]) for k in _POINTERS)


def _not_on_failure_record(msg: Any) -> str | None:
    """Why ``msg`` is not a Kinesis on-failure record, or None. Only the shape: the values are checked per message
    by ``redrive_message``."""
    if not isinstance(msg, dict) or not isinstance(msg.get("KinesisBatchInfo"), dict):
        return "not a Kinesis on-failure record (no KinesisBatchInfo)"
    missing = [k for k in _POINTERS if not isinstance(msg["KinesisBatchInfo"].get(k), str)]
    if missing:
        return f"not a Kinesis on-failure record (KinesisBatchInfo has no {', '.join(missing)})"
    return None


def load_messages(path: Path) -> list[dict[str, Any]]:
    """On-failure records from a JSONL file (one per line; blank lines ignored)."""
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
        why = _not_on_failure_record(msg)
        if why is not None:
            raise ValueError(f"{path}:{n}: {why}")
        out.append(msg)
    return out


async def read_messages(source: ShardSource) -> list[dict[str, Any]]:
    """Every on-failure record in a stream destination, shard by shard, oldest first."""
    out: list[dict[str, Any]] = []
    for shard in await source.list_shards():
        it: str | None = await source.get_iterator(shard.shard_id, "TRIM_HORIZON")
        while it is not None:
            page = await source.get_records(it, 10_000)
            for r in page.records:
                try:
                    msg = orjson.loads(r.data)
                except orjson.JSONDecodeError:
                    continue
                if _not_on_failure_record(msg) is None:
                    out.append(msg)
            if not page.records and page.millis_behind == 0:
                break
            it = page.next_iterator
    return out


async def _read_range(source: ShardSource, shard_id: str, start: int, end: int) -> tuple[list[Record], bool]:
    records: list[Record] = []
    it: str | None = await source.get_iterator(shard_id, "AT_SEQUENCE_NUMBER", sequence_number=str(start))
    first = True
    while it is not None:
        page = await source.get_records(it, 10_000)
        for r in page.records:
            seq = int(r.sequence_number)
            if first:
                first = False
                if seq > start:
                    return records, True  # the first records were trimmed
            if seq > end:
                return records, False
            records.append(r)
        if not page.records and page.millis_behind == 0:
            break
        it = page.next_iterator
    return records, not records


def _bad_range(start: str, end: str) -> str | None:
    for name, value in (("startSequenceNumber", start), ("endSequenceNumber", end)):
        if not (value.isascii() and value.isdigit()):
            return f"KinesisBatchInfo.{name} {value!r} is not a sequence number: one is decimal digits only"
    if int(start) > int(end):
        return f"KinesisBatchInfo.startSequenceNumber {start} is after endSequenceNumber {end}"
    return None


async def redrive_message(
    msg: dict[str, Any], *, source: ShardSource, function: Invoker, region: str, role_arn: str
) -> RedriveResult:
    info = msg["KinesisBatchInfo"]
    shard_id, start, end = info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]
    key = message_key(msg)
    bad = _bad_range(start, end)
    if bad is not None:
        return RedriveResult(key, shard_id, start, end, 0, False, False, bad)
    try:
        records, missing = await _read_range(source, shard_id, int(start), int(end))
    except KinesisError as exc:  # the stream or the shard is gone, or the pointers belong to another shard
        gone = isinstance(exc, ResourceNotFoundException)
        return RedriveResult(key, shard_id, start, end, 0, gone, False, f"{exc.type_name}: {exc.message}")
    if not records:
        return RedriveResult(key, shard_id, start, end, 0, True, False, "the records are no longer in the stream")
    ctx = EventContext(region=region, stream_arn=source.stream_arn, role_arn=role_arn, shard_id=shard_id)
    bodies = [record_json(ctx, r) for r in records]
    batches: list[list[bytes]] = [[]]
    size = EMPTY_EVENT_BYTES
    for b in bodies:
        if batches[-1] and size + len(b) + 1 > MAX_PAYLOAD_BYTES:
            batches.append([])
            size = EMPTY_EVENT_BYTES
        batches[-1].append(b)
        size += len(b) + 1
    done = 0
    for batch in batches:
        part = records[done : done + len(batch)]
        done += len(batch)
        result = await function.invoke(encode_event(batch))
        verdict = judge(result, part, rbif=True, window=False)
        if verdict.kind == "partial":
            return RedriveResult(
                key,
                shard_id,
                start,
                end,
                len(records),
                missing,
                False,
                f"the function reported failures from {part[verdict.first_failed].sequence_number}",
            )
        if verdict.kind == "failure":
            err = result.error or {}
            why = f"{err.get('errorType', 'Error')}: {err.get('errorMessage', '')}" if err else verdict.reason
            return RedriveResult(key, shard_id, start, end, len(records), missing, False, why)
    return RedriveResult(key, shard_id, start, end, len(records), missing, True)


@dataclass(frozen=True)
class RedriveRun:
    found: int  # on-failure messages found
    redriven: int  # of them, the ones not redriven successfully before (all of them with ``again``)
    failed: int


async def redrive_all(
    engine: Engine,
    *,
    messages: list[dict[str, Any]] | None = None,
    stream: str | None = None,
    function: Invoker,
    region: str,
    role_arn: str,
    state: Path,
    again: bool = False,
    report: Callable[[RedriveResult], None] = lambda result: None,
) -> RedriveRun:
    """Redrive ``messages``, or every on-failure record in the stream destination ``stream``, one by one;
    ``report`` sees each result as it comes. A message redriven successfully is appended to ``state`` (JSONL) and
    skipped by later runs unless ``again``."""
    done: set[str] = set()
    if state.exists() and not again:
        done = {orjson.loads(line)["key"] for line in state.read_bytes().splitlines() if line.strip()}
    if stream is not None:
        messages = await read_messages(EngineSource(engine, stream))
    messages = messages or []
    todo = [m for m in messages if message_key(m) not in done]
    failed = 0
    for msg in todo:
        source_stream = str(msg["KinesisBatchInfo"]["streamArn"]).rsplit("/", 1)[-1]
        result = await redrive_message(
            msg, source=EngineSource(engine, source_stream), function=function, region=region, role_arn=role_arn
        )
        report(result)
        if result.ok:
            state.parent.mkdir(parents=True, exist_ok=True)
            with state.open("ab") as f:
                f.write(orjson.dumps({"key": result.key}) + b"\n")
        else:
            failed += 1
    return RedriveRun(len(messages), len(todo), failed)
