"""Where a source's records go: one seam over the embedded engine (in-process) and any Kinesis endpoint (boto3).

Order per key under retries. PutRecords may fail some entries of a request and store the others; sending the
failed ones again would put them after later entries of the same request, and a later change of a row would land
before an earlier one. So ``put_ordered`` never lets two records with the same partition key share a request: the
records are split into rounds (a record's round is how many records with its key come before it), each round is
sent as requests of distinct keys, and a round starts only after every entry of the previous one is acknowledged.
Failed entries are retried alone (with backoff) until they succeed; since no other record of their key is in
flight, a retry cannot overtake or be overtaken. Records of different keys may be reordered, as on Kinesis itself.
A source calls ``put_ordered`` for the records of whole transactions and checkpoints only after it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from ..engine import Engine
from ..errors import KinesisError, ResourceNotFoundException

__all__ = ["EngineSink", "KinesisSink", "Sink", "put_ordered"]

log = logging.getLogger("shardline.sources")

MAX_ENTRIES = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024
_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class Sink(Protocol):
    stream_name: str

    async def check(self) -> None:
        """Raise ResourceNotFoundException when the stream does not exist."""
        ...

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        """Put one request; return, per entry in order, None when stored or the error code when not."""
        ...


class EngineSink:
    def __init__(self, engine: Engine, stream_name: str) -> None:
        self.engine = engine
        self.stream_name = stream_name

    async def check(self) -> None:
        await self.engine.describe_stream_summary(self.stream_name)

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        try:
            result = await self.engine.put_records(list(entries), stream_name=self.stream_name)
        except KinesisError as exc:
            if not exc.retryable:
                raise
            return [type(exc).__name__] * len(entries)
        return [r.error_code for r in result.records]


class KinesisSink:
    """Any Kinesis endpoint (a ``shardline serve``, or AWS) through a boto3 client, called in a worker thread."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self.client = client
        self.stream_name = stream_name

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self.client.describe_stream_summary, StreamName=self.stream_name)
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ResourceNotFoundException(f"stream {self.stream_name} does not exist on the endpoint") from None
            raise

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        request = [{"Data": d, "PartitionKey": k} for d, k in entries]
        try:
            reply = await asyncio.to_thread(self.client.put_records, StreamName=self.stream_name, Records=request)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
            if code in ("ProvisionedThroughputExceededException", "KMSThrottlingException", "InternalFailure"):
                return [str(code)] * len(entries)
            raise
        return [r.get("ErrorCode") for r in reply["Records"]]


def rounds(entries: Sequence[tuple[bytes, str]]) -> list[list[tuple[bytes, str]]]:
    """Split into requests where no key repeats within a round, rounds in order, each under the request limits."""
    seen: dict[str, int] = {}
    by_round: list[list[tuple[bytes, str]]] = []
    for entry in entries:
        r = seen.get(entry[1], 0)
        seen[entry[1]] = r + 1
        if r == len(by_round):
            by_round.append([])
        by_round[r].append(entry)
    requests: list[list[tuple[bytes, str]]] = []
    for group in by_round:
        current: list[tuple[bytes, str]] = []
        size = 0
        for data, key in group:
            n = len(data) + len(key.encode())
            if current and (len(current) == MAX_ENTRIES or size + n > MAX_REQUEST_BYTES):
                requests.append(current)
                current, size = [], 0
            current.append((data, key))
            size += n
        if current:
            requests.append(current)
    return requests


async def put_ordered(sink: Sink, entries: Sequence[tuple[bytes, str]]) -> int:
    """Put every entry, keeping each key's order; returns how many entries were retried."""
    retried = 0
    for request in rounds(entries):
        pending = request
        attempt = 0
        while pending:
            codes = await sink.put_records(pending)
            failed = [e for e, code in zip(pending, codes, strict=True) if code is not None]
            if failed:
                retried += len(failed)
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                log.warning(
                    "stream %s refused %d of %d records (%s); retrying them in %.2fs",
                    sink.stream_name, len(failed), len(pending), next(c for c in codes if c), delay,
                )  # fmt: skip
                attempt += 1
                await asyncio.sleep(delay)
            pending = failed
    return retried
