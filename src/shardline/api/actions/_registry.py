"""The table of actions: wire operation name -> coroutine(engine, params) -> response dict."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from ...engine import Engine
from ...models import ChildShard, HashKeyRange, Shard, StreamMode
from ..shapes import Timestamp
from ..wire import Codec

Params = dict[str, Any]
Response = dict[str, Any]
T = TypeVar("T")
Action = Callable[[Engine, Params], Awaitable[Response]]

ACTIONS: dict[str, Action] = {}


class StreamingBody(Protocol):
    """A response sent as it is produced (SubscribeToShard's event stream): ``chunks`` yields the body's parts,
    ``close`` ends what produces them (the client went away, or the body ended)."""

    content_type: str

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


# Actions whose response is a stream: they also receive the request's codec, which sets the payloads' protocol.
StreamingAction = Callable[[Engine, Params, Codec], Awaitable[StreamingBody]]
STREAMING_ACTIONS: dict[str, StreamingAction] = {}


def action(name: str) -> Callable[[Action], Action]:
    def register(fn: Action) -> Action:
        ACTIONS[name] = fn
        return fn

    return register


def streaming_action(name: str) -> Callable[[StreamingAction], StreamingAction]:
    def register(fn: StreamingAction) -> StreamingAction:
        STREAMING_ACTIONS[name] = fn
        return fn

    return register


def stream_ref(p: Params) -> dict[str, Any]:
    """The StreamName / StreamARN pair most actions accept, as engine keyword arguments."""
    return {"stream_name": p.get("StreamName"), "stream_arn": p.get("StreamARN")}


class StreamLister(Protocol[T]):
    """Engine.list_queues or Engine.list_channels: a page of what was created on streams, and the next token."""

    def __call__(
        self,
        *,
        stream_filter: Sequence[tuple[str, int | None]] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Awaitable[tuple[list[T], str | None]]: ...


async def list_page(p: Params, lister: StreamLister[T], key: str, summary: Callable[[T], Response]) -> Response:
    """A List* action over what was created on streams: StreamFilter, MaxResults and NextToken in, a page of
    summaries under ``key`` and NextToken (when there are more) out."""
    filters = p.get("StreamFilter")
    page, token = await lister(
        stream_filter=None
        if filters is None
        else [(f["StreamARN"], f.get("StreamCreationTimestamp")) for f in filters],
        max_results=p.get("MaxResults"),
        next_token=p.get("NextToken"),
    )
    out: Response = {key: [summary(item) for item in page]}
    if token is not None:
        out["NextToken"] = token
    return out


async def with_stream(engine: Engine, p: Params, members: Response) -> Response:
    """An answer that names the stream it changed: StreamName, ``members``, StreamARN."""
    summary = await engine.describe_stream_summary(**stream_ref(p))
    return {"StreamName": summary.stream_name, **members, "StreamARN": summary.stream_arn}


def attached_out(kind: str, name: str, arn: str, status: str, created_ms: int) -> Response:
    """What descriptions and summaries of a ``kind`` created on a stream (Queue, Channel) begin with."""
    return {
        f"{kind}Name": name,
        f"{kind}ARN": arn,
        f"{kind}Status": status,
        f"{kind}CreationTimestamp": Timestamp(created_ms),
    }


def attached_actions(kind: str, description: Callable[[T], Response], summary: Callable[[T], Response]) -> None:
    """Register Describe<kind>, List<kind>s and Delete<kind>, the same for every ``kind`` created on a stream (Queue,
    Channel): the ARN in ``<kind>ARN``, the answer under ``<kind>Description`` and ``<kind>Summaries``, each calling
    the engine method named after it (``describe_queue``, ``list_queues``, ``delete_queue``)."""
    arn_key, noun = f"{kind}ARN", kind.lower()

    async def describe_action(engine: Engine, p: Params) -> Response:
        describe: Callable[[str], Awaitable[T]] = getattr(engine, f"describe_{noun}")
        return {f"{kind}Description": description(await describe(p[arn_key]))}

    async def list_action(engine: Engine, p: Params) -> Response:
        lister: StreamLister[T] = getattr(engine, f"list_{noun}s")
        return await list_page(p, lister, f"{kind}Summaries", summary)

    async def delete_action(engine: Engine, p: Params) -> Response:
        delete: Callable[[str], Awaitable[None]] = getattr(engine, f"delete_{noun}")
        await delete(p[arn_key])
        return {}

    action(f"Describe{kind}")(describe_action)
    action(f"List{kind}s")(list_action)
    action(f"Delete{kind}")(delete_action)


def stream_out(stream_arn: str, stream_created_ms: int) -> Response:
    return {"StreamARN": stream_arn, "StreamCreationTimestamp": Timestamp(stream_created_ms)}


def hash_key_range_out(r: HashKeyRange) -> Response:
    return {"StartingHashKey": str(r.starting_hash_key), "EndingHashKey": str(r.ending_hash_key)}


def child_shards_out(children: Iterable[ChildShard]) -> list[Response]:
    """ChildShards as GetRecords and SubscribeToShard answer them."""
    return [
        {
            "ShardId": c.shard_id,
            "ParentShards": list(c.parent_shards),
            "HashKeyRange": hash_key_range_out(c.hash_key_range),
        }
        for c in children
    ]


def shard_out(s: Shard) -> Response:
    out: Response = {"ShardId": s.shard_id}
    if s.parent_shard_id:
        out["ParentShardId"] = s.parent_shard_id
    if s.adjacent_parent_shard_id:
        out["AdjacentParentShardId"] = s.adjacent_parent_shard_id
    out["HashKeyRange"] = hash_key_range_out(s.hash_key_range)
    rng: Response = {"StartingSequenceNumber": s.sequence_number_range.starting_sequence_number}
    if s.sequence_number_range.ending_sequence_number is not None:
        rng["EndingSequenceNumber"] = s.sequence_number_range.ending_sequence_number
    out["SequenceNumberRange"] = rng
    return out


def mode_out(mode: StreamMode) -> Response:
    return {"StreamMode": mode.value}
