"""The enhanced fan-out consumer registry: Register, Deregister, Describe, ListStreamConsumers."""

from __future__ import annotations

from ...engine import Engine
from ...errors import InvalidArgumentException
from ...models import Consumer
from ..shapes import Timestamp
from ._registry import Params, Response, action


def _consumer(c: Consumer, *, with_stream: bool) -> Response:
    out: Response = {
        "ConsumerName": c.consumer_name,
        "ConsumerARN": c.consumer_arn,
        "ConsumerStatus": c.consumer_status,
        "ConsumerCreationTimestamp": Timestamp(c.consumer_creation_timestamp_ms),
    }
    if with_stream:
        out["StreamARN"] = c.stream_arn
    return out


@action("RegisterStreamConsumer")
async def register(engine: Engine, p: Params) -> Response:
    c = await engine.register_stream_consumer(p["StreamARN"], p["ConsumerName"])
    return {"Consumer": _consumer(c, with_stream=False)}


@action("DeregisterStreamConsumer")
async def deregister(engine: Engine, p: Params) -> Response:
    await engine.deregister_stream_consumer(
        stream_arn=p.get("StreamARN"), consumer_name=p.get("ConsumerName"), consumer_arn=p.get("ConsumerARN")
    )
    return {}


@action("DescribeStreamConsumer")
async def describe(engine: Engine, p: Params) -> Response:
    c = await engine.describe_stream_consumer(
        stream_arn=p.get("StreamARN"), consumer_name=p.get("ConsumerName"), consumer_arn=p.get("ConsumerARN")
    )
    return {"ConsumerDescription": _consumer(c, with_stream=True)}


@action("ListStreamConsumers")
async def list_consumers(engine: Engine, p: Params) -> Response:
    consumers = await engine.list_stream_consumers(p["StreamARN"])
    start = 0
    token = p.get("NextToken")
    if token is not None:
        if not token.isdigit():
            raise InvalidArgumentException("Invalid NextToken.")
        start = int(token)
    limit = p.get("MaxResults", 100)
    page = consumers[start : start + limit]
    out: Response = {"Consumers": [_consumer(c, with_stream=False) for c in page]}
    if start + limit < len(consumers):
        out["NextToken"] = str(start + limit)
    return out
