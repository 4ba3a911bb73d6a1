"""SubscribeToShard (enhanced fan-out): the engine's subscription as an ``application/vnd.amazon.eventstream`` body.

The body starts with the ``initial-response`` event (botocore reads it inside the API call and fails without it; the
Java SDK dispatches it as the response), then one ``SubscribeToShardEvent`` per engine event. Errors found before
the stream starts are ordinary error responses (the app answers them); errors after it are an ``exception`` message,
after which the body ends. Payloads are in the request's protocol: JSON, or CBOR for a CBOR request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from ...engine import Engine, ShardEvent, Subscription
from ...errors import InternalFailureException, KinesisError
from ..eventstream import event_message, exception_message
from ..shapes import RecordList
from ..wire import Codec
from ._registry import Params, Response, child_shards_out, streaming_action

__all__ = ["EVENT_STREAM_TYPE", "ShardEventStream"]

log = logging.getLogger("shardline.api")

EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
# The errors of SubscribeToShardEventStream (the model's union): any other error is sent as InternalFailureException.
_STREAM_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "ResourceInUseException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSAccessDeniedException",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "KMSThrottlingException",
        "InternalFailureException",
    }
)


@streaming_action("SubscribeToShard")
async def subscribe_to_shard(engine: Engine, p: Params, codec: Codec) -> ShardEventStream:
    position = p["StartingPosition"]
    # StreamId is accepted and ignored (never handed out either: botocore sends requests carrying one to AWS).
    sub = await engine.subscribe_to_shard(
        consumer_arn=p["ConsumerARN"],
        shard_id=p["ShardId"],
        starting_position=position["Type"],
        sequence_number=position.get("SequenceNumber"),
        timestamp_ms=position.get("Timestamp"),
        dry_run=bool(p.get("DryRun")),
    )
    return ShardEventStream(sub, codec)


def event_out(ev: ShardEvent) -> Response:
    out: Response = {"Records": RecordList(ev.records), "MillisBehindLatest": ev.millis_behind_latest}
    if ev.continuation_sequence_number is not None:
        out["ContinuationSequenceNumber"] = ev.continuation_sequence_number
    if ev.child_shards:
        out["ChildShards"] = child_shards_out(ev.child_shards)
    return out


class ShardEventStream:
    """The response body of one subscription (``StreamingBody``)."""

    content_type = EVENT_STREAM_TYPE

    def __init__(self, sub: Subscription, codec: Codec) -> None:
        self.sub = sub
        self.codec = codec
        # AWS labels JSON payloads application/json; CBOR ones carry the protocol's own type.
        self.payload_type = codec.content_type if codec.cbor else "application/json"

    async def chunks(self) -> AsyncIterator[bytes]:
        encode, payload_type = self.codec.encode, self.payload_type
        yield event_message("initial-response", encode({}), payload_type)
        try:
            while True:
                ev = await self.sub.next_event()
                if ev is None:
                    return
                yield event_message("SubscribeToShardEvent", encode(event_out(ev)), payload_type)
        except KinesisError as exc:
            error = exc
        except Exception:
            log.exception("subscription to %s failed", self.sub.shard_id)
            error = InternalFailureException("Internal Service Failure")
        finally:
            self.sub.close()
        if error.type_name not in _STREAM_ERRORS:
            error = InternalFailureException(error.message or "Internal Service Failure")
        yield exception_message(error.type_name, encode({"message": error.message}), payload_type)

    def close(self) -> None:
        self.sub.close()
