"""SubscribeToShard through the ASGI app in-process: the streamed response (head, initial-response, events), JSON
and CBOR payloads, errors before and inside the stream, a client that disconnects and one that stops reading."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from typing import Any

import cbor2

from _shardline import kinesis_cbor
from api._asgi import ACCOUNT, CBOR_TYPE, JSON_TYPE, Kinesis

from ._exchange import Exchange

S0 = "shardId-000000000000"


async def consumer(app: Kinesis, name: str = "c") -> str:
    await app.create("s")
    out = await app.ok("RegisterStreamConsumer", {"StreamARN": app.arn("s"), "ConsumerName": name})
    arn: str = out["Consumer"]["ConsumerARN"]
    await app.ok("DescribeStreamConsumer", {"ConsumerARN": arn})  # (the engine's status moves on a look)
    return arn


def request(arn: str, kind: str = "TRIM_HORIZON", **position: Any) -> dict[str, Any]:
    return {"ConsumerARN": arn, "ShardId": S0, "StartingPosition": {"Type": kind, **position}}


async def test_the_response_streams_an_initial_response_then_events(app: Kinesis) -> None:
    arn = await consumer(app)
    put = await app.put("s", b"\x00one\x00")
    ex = await Exchange(app.app, request(arn)).start()
    assert ex.status == 200
    assert ex.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert "content-length" not in ex.headers and ex.headers["x-amzn-requestid"]
    first = await ex.message()
    assert first is not None
    assert {k: h.value for k, h in first.headers.items()} == {
        ":message-type": "event",
        ":event-type": "initial-response",
        ":content-type": "application/json",
    }
    assert first.payload == b"{}"
    ev = await ex.event()
    [rec] = ev["Records"]
    assert base64.b64decode(rec["Data"]) == b"\x00one\x00"
    assert rec["SequenceNumber"] == put["SequenceNumber"] == ev["ContinuationSequenceNumber"]
    assert rec["PartitionKey"] == "pk" and isinstance(rec["ApproximateArrivalTimestamp"], float)
    assert ev["MillisBehindLatest"] == 0 and "ChildShards" not in ev
    pushed = await app.put("s", b"two")
    ev = await ex.event()
    assert [r["SequenceNumber"] for r in ev["Records"]] == [pushed["SequenceNumber"]]
    await ex.disconnect()


async def test_a_cbor_request_gets_cbor_payloads(app: Kinesis) -> None:
    arn = await consumer(app)
    await app.put("s", b"bytes")
    ex = await Exchange(app.app, request(arn), content_type=CBOR_TYPE).start()
    assert ex.status == 200
    first = await ex.message()
    assert first is not None and first.header(":content-type") == CBOR_TYPE
    assert kinesis_cbor(first.payload) == {}
    msg = await ex.message()
    assert msg is not None and msg.header(":content-type") == CBOR_TYPE
    ev = kinesis_cbor(msg.payload)
    [rec] = ev["Records"]
    assert rec["Data"] == b"bytes"  # a byte string, not base64
    assert rec["ApproximateArrivalTimestamp"] == dt.datetime.fromtimestamp(app.clock.now_ms() / 1000, dt.UTC)
    await ex.disconnect()
    # AT_TIMESTAMP as the Java SDK writes it: tag 1 holding epoch milliseconds.
    app.clock.advance(1)
    later = await app.put("s", b"later")
    at = request(arn, "AT_TIMESTAMP", Timestamp=cbor2.CBORTag(1, app.clock.now_ms()))
    ex = await Exchange(app.app, at, content_type=CBOR_TYPE).start()
    await ex.message()
    msg = await ex.message()
    assert msg is not None
    assert [r["SequenceNumber"] for r in kinesis_cbor(msg.payload)["Records"]] == [later["SequenceNumber"]]
    await ex.disconnect()


async def test_errors_before_the_stream_are_ordinary_error_responses(app: Kinesis) -> None:
    arn = await consumer(app)
    unknown = await Exchange(app.app, request(arn.replace("consumer/c:", "consumer/x:"))).start()
    assert (unknown.status, unknown.headers["content-type"]) == (400, JSON_TYPE)
    assert json.loads(unknown.error_body) == {
        "__type": "ResourceNotFoundException",
        "message": f"Consumer x under stream s not found for account {ACCOUNT}.",
    }
    no_seq = await Exchange(app.app, request(arn, "AT_SEQUENCE_NUMBER")).start()
    assert json.loads(no_seq.error_body)["__type"] == "InvalidArgumentException"
    bad_type = await Exchange(app.app, request(arn, "SOMEWHERE")).start()
    assert json.loads(bad_type.error_body)["__type"] == "ValidationException"
    in_cbor = await Exchange(app.app, {"ConsumerARN": arn}, content_type=CBOR_TYPE).start()
    assert (in_cbor.status, in_cbor.headers["content-type"]) == (400, CBOR_TYPE)
    assert kinesis_cbor(in_cbor.error_body)["__type"] == "ValidationException"
    held = await Exchange(app.app, request(arn)).start()
    second = await Exchange(app.app, request(arn)).start()
    assert json.loads(second.error_body) == {
        "__type": "ResourceInUseException",
        "message": f"Another active subscription exists for this consumer: {ACCOUNT}:s:{S0}:c",
    }
    await held.disconnect()


async def test_an_error_inside_the_stream_is_an_exception_message_then_the_end(app: Kinesis) -> None:
    arn = await consumer(app)
    ex = await Exchange(app.app, request(arn)).start()
    await ex.message()
    assert (await ex.event())["Records"] == []
    await app.ok("DeregisterStreamConsumer", {"ConsumerARN": arn})
    msg = await ex.message()
    assert msg is not None
    assert {k: h.value for k, h in msg.headers.items()} == {
        ":message-type": "exception",
        ":exception-type": "ResourceNotFoundException",
        ":content-type": "application/json",
    }
    assert json.loads(msg.payload) == {"message": f"Consumer c under stream s not found for account {ACCOUNT}."}
    assert await ex.message() is None and ex.ended
    await ex.finished()


async def test_a_client_that_goes_away_frees_its_consumer_and_shard_at_once(app: Kinesis) -> None:
    arn = await consumer(app)
    ex = await Exchange(app.app, request(arn)).start()
    await ex.message()
    await ex.disconnect()  # the app's call returns (the subscription was cancelled)
    again = await Exchange(app.app, request(arn)).start()
    assert again.status == 200
    await again.disconnect()


async def test_a_client_that_stops_reading_holds_one_event_not_a_backlog(app: Kinesis) -> None:
    arn = await consumer(app)
    ex = Exchange(app.app, request(arn))
    await ex.start()
    await ex.message()  # the initial response
    assert (await ex.event())["Records"] == []
    ex.gate = gate = asyncio.Event()
    puts = [(await app.put("s", b"%d" % i))["SequenceNumber"] for i in range(5)]
    # While the client reads nothing, one event is being sent; the records put meanwhile were not read yet, so once
    # it reads again they arrive together in the next event rather than as a queue of one event per put.
    gate.set()
    got: list[str] = []
    events = 0
    while len(got) < 5:
        got += [r["SequenceNumber"] for r in (await ex.event())["Records"]]
        events += 1
    assert got == puts
    assert events <= 2
    await ex.disconnect()


async def test_end_streams_ends_open_subscriptions_as_their_lifetime_would(app: Kinesis) -> None:
    arn = await consumer(app)
    ex = await Exchange(app.app, request(arn)).start()
    await ex.message()
    await ex.event()
    app.app.end_streams()  # what a server does when asked to stop
    assert await ex.message() is None  # the body ends, with no exception message
    await ex.finished()
    again = await Exchange(app.app, request(arn)).start()  # and the consumer and shard are free
    assert again.status == 200
    await again.disconnect()


async def test_a_request_cancelled_by_the_server_ends_its_body_without_an_error(app: Kinesis) -> None:
    arn = await consumer(app)
    ex = await Exchange(app.app, request(arn)).start()
    await ex.message()
    await ex.event()
    ex.cancel()  # a server's shutdown past its grace period
    assert await ex.message() is None
    await ex.finished()  # the app returned normally
