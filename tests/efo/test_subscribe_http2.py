"""SubscribeToShard over HTTP/2 (h2c with prior knowledge, as the Java SDK and the KCL connect to an http:// endpoint)
on the same real ``shardline serve`` that boto3 uses over HTTP/1.1: the same frames, pushed as records arrive, and a
client that resets its stream (RST_STREAM CANCEL, what Netty sends when a subscription is cancelled) releases the
consumer and shard."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import h2.errors
import h2.events
import httpx
import pytest

from _shardline import UNVERIFIED_SIGNATURE, kinesis
from serve._h2 import RawH2, request_headers
from shardline.api.eventstream import Decoder, Message

from ._rig import DEADLINE_S, S0, Rig

JSON_TYPE = "application/x-amz-json-1.1"


@pytest.fixture
def rig(endpoint: str) -> Iterator[Rig]:
    r = Rig(kinesis(endpoint))
    yield r
    r.delete()


def body_for(consumer_arn: str) -> bytes:
    return json.dumps({"ConsumerARN": consumer_arn, "ShardId": S0, "StartingPosition": {"Type": "LATEST"}}).encode()


def test_the_event_stream_over_h2c(endpoint: str, rig: Rig) -> None:
    arn = rig.consumer()
    headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": "Kinesis_20131202.SubscribeToShard", **UNVERIFIED_SIGNATURE}
    request = httpx.Request("POST", endpoint + "/", headers=headers, content=body_for(arn))
    with httpx.Client(http1=False, http2=True, timeout=DEADLINE_S) as client:
        resp = client.send(request, stream=True)
        try:
            assert resp.http_version == "HTTP/2"
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
            decoder = Decoder()
            got: list[Message] = []
            put: str | None = None
            records: list[dict[str, Any]] = []
            deadline = time.monotonic() + DEADLINE_S
            for chunk in resp.iter_raw():
                got += decoder.feed(chunk)
                if got and put is None:
                    assert (got[0].header(":event-type"), got[0].payload) == ("initial-response", b"{}")
                    put = rig.put(b"over h2")
                records = [r for m in got[1:] for r in json.loads(m.payload)["Records"]]
                if records:
                    break
                assert time.monotonic() < deadline
            assert all(m.header(":event-type") == "SubscribeToShardEvent" for m in got[1:])
            assert [r["SequenceNumber"] for r in records] == [put]
        finally:
            resp.close()


def test_a_reset_stream_releases_the_consumer_and_shard(endpoint: str, rig: Rig) -> None:
    arn = rig.consumer()
    body = body_for(arn)
    client = RawH2(endpoint)
    try:

        def subscribe() -> int:
            stream_id: int = client.conn.get_next_available_stream_id()
            extra = ("content-length", str(len(body)))
            client.conn.send_headers(stream_id, request_headers(endpoint, "SubscribeToShard", extra))
            client.conn.send_data(stream_id, body, end_stream=True)
            client.send_now()
            return stream_id

        def status(stream_id: int) -> str:
            deadline = time.monotonic() + DEADLINE_S
            while True:
                for event in client.events:
                    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                        headers: list[tuple[Any, Any]] = list(event.headers or ())  # (str: decoded as UTF-8)
                        return next(str(v) for k, v in headers if k == ":status")
                assert time.monotonic() < deadline and not client.closed
                client.read()

        first = subscribe()
        assert status(first) == "200"
        client.conn.reset_stream(first, h2.errors.ErrorCodes.CANCEL)
        client.send_now()
        deadline = time.monotonic() + DEADLINE_S
        while status(again := subscribe()) != "200":  # until the server has seen the reset
            assert time.monotonic() < deadline, "the consumer and shard stayed held after the reset"
            time.sleep(0.02)
        client.conn.reset_stream(again, h2.errors.ErrorCodes.CANCEL)
        client.send_now()
    finally:
        client.close()
