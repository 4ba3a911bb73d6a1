"""``KinesisSubscriber`` against an endpoint that holds a subscription open without sending anything more: closing
the subscription (a mapping stopping, or wanting a fresh read) ends a read waiting for the next event at once, not
when the endpoint next sends (a heartbeat, or the end of the subscription's lifetime)."""

from __future__ import annotations

import asyncio
import json
import select
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from _shardline import kinesis
from shardline.api.eventstream import event_message
from shardline.runtime.fanout import KinesisSubscriber, _Cursor, _KinesisEvents

STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
CONSUMER_ARN = f"{STREAM_ARN}/consumer/reader:1"
DEADLINE_S = 30.0  # only turns a hang into a failure


def _event(continuation: str) -> bytes:
    payload = {"Records": [], "ContinuationSequenceNumber": continuation, "MillisBehindLatest": 0}
    return event_message("SubscribeToShardEvent", json.dumps(payload).encode(), "application/json")


class _Endpoint(BaseHTTPRequestHandler):
    """DescribeStreamConsumer, and SubscribeToShard answered with one event; ``client_left`` is set when the client
    closes the connection within DEADLINE_S (otherwise a second event is sent, so that the test does not hang)."""

    protocol_version = "HTTP/1.1"
    client_left = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers["X-Amz-Target"].endswith(".DescribeStreamConsumer"):
            consumer = {"ConsumerName": "reader", "ConsumerARN": CONSUMER_ARN, "ConsumerStatus": "ACTIVE"}
            body = json.dumps({"ConsumerDescription": {**consumer, "StreamARN": STREAM_ARN}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(event_message("initial-response", b"{}", "application/json") + _event("1"))
        if select.select([self.connection], [], [], DEADLINE_S)[0] and self.connection.recv(1) == b"":
            type(self).client_left.set()
        else:
            self._chunk(_event("2"))  # a client still reading is stuck: this event frees it
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Endpoint.client_left.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class _Announced:
    """An iterator that says when the reading thread asks it for the next item."""

    def __init__(self, inner: Iterator[Any]) -> None:
        self.inner = inner
        self.asked = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        self.asked.set()
        return next(self.inner)


async def test_closing_a_subscription_ends_a_read_waiting_for_the_next_event(endpoint: str) -> None:
    subscriber = KinesisSubscriber(kinesis(endpoint, read_timeout=4 * DEADLINE_S), STREAM_ARN, "reader")
    events = await subscriber.subscribe(_Cursor("shardId-000000000000", "LATEST"))
    assert isinstance(events, _KinesisEvents)
    first = await events.next()
    assert first is not None
    assert first.next_iterator == "1"
    announced = _Announced(events.events)
    events.events = announced
    reading = asyncio.create_task(events.next())  # waits for an event the endpoint does not send
    assert await asyncio.to_thread(announced.asked.wait, DEADLINE_S)
    events.close()
    assert await reading is None
    assert await asyncio.to_thread(_Endpoint.client_left.wait, DEADLINE_S)  # not freed by the second event
