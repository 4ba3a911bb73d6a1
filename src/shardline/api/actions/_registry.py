"""The table of actions: wire operation name -> coroutine(engine, params) -> response dict."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from ...engine import Engine
from ...models import Shard, StreamMode
from ..wire import Codec

Params = dict[str, Any]
Response = dict[str, Any]
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


def shard_out(s: Shard) -> Response:
    out: Response = {"ShardId": s.shard_id}
    if s.parent_shard_id:
        out["ParentShardId"] = s.parent_shard_id
    if s.adjacent_parent_shard_id:
        out["AdjacentParentShardId"] = s.adjacent_parent_shard_id
    out["HashKeyRange"] = {
        "StartingHashKey": str(s.hash_key_range.starting_hash_key),
        "EndingHashKey": str(s.hash_key_range.ending_hash_key),
    }
    rng: Response = {"StartingSequenceNumber": s.sequence_number_range.starting_sequence_number}
    if s.sequence_number_range.ending_sequence_number is not None:
        rng["EndingSequenceNumber"] = s.sequence_number_range.ending_sequence_number
    out["SequenceNumberRange"] = rng
    return out


def mode_out(mode: StreamMode) -> Response:
    return {"StreamMode": mode.value}
