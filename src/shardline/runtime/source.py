"""Where a mapping reads records from: one interface over the in-process engine and over any Kinesis endpoint.

``EngineSource`` calls the embedded engine directly (no network). ``KinesisSource`` calls a Kinesis endpoint
through boto3 (a ``shardline serve``, or AWS itself), so the same functions and mappings run unchanged on AWS.
Both raise shardline's Kinesis errors (ExpiredIteratorException, ProvisionedThroughputExceededException, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar

from .. import errors
from ..engine import Engine, ShardView, sequence
from ..models import Record
from .position import Position

__all__ = [
    "EngineSource",
    "KinesisSource",
    "Page",
    "ShardSource",
    "SourceShard",
    "in_thread",
    "kinesis_error",
    "record_from_api",
]

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SourceShard:
    """A shard as a mapping's source lists it: its parents, and whether it is closed (readable to an end)."""

    shard_id: str
    parent_ids: tuple[str, ...]
    closed: bool


class Page(NamedTuple):
    records: list[Record]
    next_iterator: str | None
    millis_behind: int
    child_shard_ids: tuple[str, ...] | None


class ShardSource(Protocol):
    stream_name: str
    stream_arn: str

    async def list_shards(self) -> list[SourceShard]: ...

    async def get_iterator(
        self, shard_id: str, kind: str, *, sequence_number: str | None = None, timestamp_ms: int | None = None
    ) -> str: ...

    async def get_records(self, iterator: str, limit: int) -> Page: ...

    def arm(self, shard_id: str) -> None:
        """Called before each read, so that ``wait_for_data`` after an empty read misses nothing."""
        ...

    def wake(self, shard_id: str) -> None:
        """End a ``wait_for_data`` early (the mapping is stopping)."""
        ...

    def tip(self, shard_id: str) -> str | None:
        """A checkpoint just before the next record the shard will get (LATEST made concrete), if the source can
        tell: a sequence number, or TRIM_HORIZON for a shard that never had a record."""
        ...

    def lag(self, shard_id: str, checkpoint: str) -> int | None:
        """Records after ``checkpoint`` (a position's stored text, read with ``Position.parse``) up to the shard's
        tip, if known."""
        ...

    async def wait_for_data(self, shard_id: str, timeout_s: float) -> None:
        """Return when the shard may have new records, or after ``timeout_s``."""
        ...


IDLE_WAIT_S = 1.0


class EngineSource:
    def __init__(self, engine: Engine, stream_name: str) -> None:
        self.engine = engine
        self.stream_name = stream_name
        self.stream_arn = engine.stream_arn(stream_name)

    async def list_shards(self) -> list[SourceShard]:
        out: list[SourceShard] = []
        page = await self.engine.list_shards(self.stream_name)
        while True:
            for s in page.shards:
                parents = tuple(p for p in (s.parent_shard_id, s.adjacent_parent_shard_id) if p)
                out.append(SourceShard(s.shard_id, parents, s.sequence_number_range.ending_sequence_number is not None))
            if page.next_token is None:
                return out
            page = await self.engine.list_shards(next_token=page.next_token)

    async def get_iterator(
        self, shard_id: str, kind: str, *, sequence_number: str | None = None, timestamp_ms: int | None = None
    ) -> str:
        return await self.engine.get_shard_iterator(
            stream_name=self.stream_name,
            shard_id=shard_id,
            shard_iterator_type=kind,
            starting_sequence_number=sequence_number,
            timestamp_ms=timestamp_ms,
        )

    def arm(self, shard_id: str) -> None:
        """Called before a read: from now on, new records wake ``wait_for_data``."""
        signal = self.engine.data_signal(self.stream_name, shard_id)
        if signal is not None:
            signal.clear()

    def wake(self, shard_id: str) -> None:
        signal = self.engine.data_signal(self.stream_name, shard_id)
        if signal is not None:
            signal.set()

    def _shard(self, shard_id: str) -> ShardView | None:
        stream = self.engine.view.stream(self.stream_name)
        return stream.shard(shard_id) if stream is not None else None

    def tip(self, shard_id: str) -> str | None:
        shard = self._shard(shard_id)
        end = shard.visible_end if shard is not None else None
        if shard is None or end is None:
            return None
        return shard.sequence_number(end - 1) if end > 0 else "TRIM_HORIZON"

    async def wait_for_data(self, shard_id: str, timeout_s: float) -> None:
        signal = self.engine.data_signal(self.stream_name, shard_id)
        if signal is None:
            await asyncio.sleep(timeout_s)
            return
        # The engine signals every new record and every shard close, so an idle shard need not be polled often.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), max(timeout_s, IDLE_WAIT_S))

    def lag(self, shard_id: str, checkpoint: str) -> int | None:
        shard = self._shard(shard_id)
        log_start = shard.log_start if shard is not None else None
        end = shard.visible_end if shard is not None else None
        if shard is None or log_start is None or end is None:
            return None
        position = Position.parse(checkpoint)
        if position.sequence_number is not None:
            decoded = sequence.decode(position.sequence_number)
            if decoded is None:
                return None
            start = max(decoded.offset + 1, log_start)
        elif position.is_shard_end:
            return 0
        else:
            start = log_start
        return shard.records_between(start, end)  # (the offsets of a hole hold no record)

    async def get_records(self, iterator: str, limit: int) -> Page:
        r = await self.engine.get_records(iterator, limit=limit)
        children = tuple(c.shard_id for c in r.child_shards) if r.child_shards is not None else None
        return Page(r.records, r.next_shard_iterator, r.millis_behind_latest, children)


class KinesisSource:
    """Any Kinesis endpoint through a boto3 client; blocking calls run in worker threads."""

    def __init__(self, client: Any, stream_name: str, stream_arn: str | None = None) -> None:
        self.client = client
        self.stream_name = stream_name
        self.stream_arn = (
            stream_arn
            or client.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
        )

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return await in_thread(getattr(self.client, method), **kwargs)

    async def list_shards(self) -> list[SourceShard]:
        out: list[SourceShard] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = await self._call("list_shards", **kwargs)
            for s in page["Shards"]:
                parents = tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p)
                out.append(SourceShard(s["ShardId"], parents, "EndingSequenceNumber" in s["SequenceNumberRange"]))
            token = page.get("NextToken")
            if not token:
                return out
            kwargs = {"NextToken": token}

    async def get_iterator(
        self, shard_id: str, kind: str, *, sequence_number: str | None = None, timestamp_ms: int | None = None
    ) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id, "ShardIteratorType": kind}
        if sequence_number is not None:
            kwargs["StartingSequenceNumber"] = sequence_number
        if timestamp_ms is not None:
            kwargs["Timestamp"] = timestamp_ms / 1000
        return str((await self._call("get_shard_iterator", **kwargs))["ShardIterator"])

    def arm(self, shard_id: str) -> None:
        pass

    def wake(self, shard_id: str) -> None:
        pass

    def tip(self, shard_id: str) -> str | None:
        return None  # the caller pins LATEST with AT_TIMESTAMP instead

    async def wait_for_data(self, shard_id: str, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)  # a remote endpoint has to be polled

    def lag(self, shard_id: str, checkpoint: str) -> int | None:
        return None  # a remote endpoint does not tell how many records a shard holds

    async def get_records(self, iterator: str, limit: int) -> Page:
        r = await self._call("get_records", ShardIterator=iterator, Limit=limit)
        records = [record_from_api(x) for x in r["Records"]]
        children = tuple(c["ShardId"] for c in r["ChildShards"]) if "ChildShards" in r else None
        return Page(records, r.get("NextShardIterator"), int(r.get("MillisBehindLatest", 0)), children)


def record_from_api(x: dict[str, Any]) -> Record:
    """A record as boto3 returns it (GetRecords, SubscribeToShard)."""
    return Record(
        x["SequenceNumber"],
        round(x["ApproximateArrivalTimestamp"].timestamp() * 1000),
        x["Data"],
        x["PartitionKey"],
        x.get("EncryptionType"),
    )


async def in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` (a blocking boto3 call) in a worker thread; a botocore error with a Kinesis error code is raised as
    shardline's error (``kinesis_error``)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except Exception as exc:
        mapped = kinesis_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def kinesis_error(exc: Exception) -> Exception:
    """shardline's Kinesis error for a botocore error with a Kinesis error code; ``exc`` itself otherwise."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        cls = getattr(errors, code, None)
        if isinstance(cls, type) and issubclass(cls, errors.KinesisError):
            return cls(str(response.get("Error", {}).get("Message", "")))
    return exc
