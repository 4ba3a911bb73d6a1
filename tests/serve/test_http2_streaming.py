"""Streamed ASGI responses over HTTP/2 (what SubscribeToShard's event stream needs): each part goes out when the app
sends it, within the client's flow-control window, and a client that resets its stream is seen by the app as a
disconnect. The server is ``api.server``'s own (its HTTP/1.1 protocol handing the connection over on the preface),
run in-process around a small app whose pace the test controls."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import uvicorn

from shardline.api.server import DEFAULT_LIMITS, ServerLimits, _protocol_for, _Server

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@asynccontextmanager
async def serving(
    app: Callable[[Message, Receive, Send], Awaitable[None]], limits: ServerLimits = DEFAULT_LIMITS
) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(
        app, http=_protocol_for(limits), lifespan="off", log_config=None, timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


class Client:
    """An HTTP/2 client with prior knowledge whose stream window is ``window`` bytes; it returns credit for what it
    has read, as real clients do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.conn.initiate_connection()
        self.flush()
        self.pending: list[h2.events.Event] = []  # read, not yet asked for

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def next_event(self) -> h2.events.Event:
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), 30)
            assert data, "the server closed the connection"
            events = self.conn.receive_data(data)
            pending: list[h2.events.Event] = [
                e for e in events if isinstance(e, (h2.events.DataReceived, h2.events.StreamEnded))
            ]
            for event in events:
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.flush()
            if pending:
                self.pending = pending[1:]
                return pending[0]

    async def next_reset(self) -> h2.events.StreamReset:
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), 30)
            assert data, "the server closed the connection"
            events = self.conn.receive_data(data)
            self.flush()
            for event in events:
                if isinstance(event, h2.events.StreamReset):
                    return event

    async def data(self) -> h2.events.Event:
        if self.pending:
            return self.pending.pop(0)
        return await self.next_event()


@asynccontextmanager
async def client(port: int, *, window: int) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield Client(reader, writer, window)
    finally:
        writer.close()


REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"), (":path", "/")]


async def test_each_part_goes_out_when_sent_and_within_the_window() -> None:
    release = asyncio.Event()
    big = bytes(range(256)) * 400  # 102,400 bytes against a 1,000-byte window

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        assert (scope["http_version"], scope["method"]) == ("2", "POST")
        assert (b"host", b"localhost") in scope["headers"]
        assert (await receive())["more_body"] is False
        headers = [(b"content-type", b"application/vnd.amazon.eventstream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": big, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with serving(app) as port, client(port, window=1_000) as c:
        c.conn.send_headers(1, REQUEST, end_stream=True)
        c.flush()
        first = await c.data()
        assert isinstance(first, h2.events.DataReceived) and first.data == b"first"  # before the app goes on
        release.set()
        received, sizes = b"", []
        while not isinstance(event := await c.data(), h2.events.StreamEnded):
            assert isinstance(event, h2.events.DataReceived)
            received += event.data
            sizes.append(len(event.data))
        assert received == big
        assert max(sizes) <= 1_000 and len(sizes) >= len(big) // 1_000


async def test_a_reset_stream_is_a_disconnect_to_the_app() -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await seen.put((await receive())["type"])  # waits for the client to go

    async with serving(app) as port, client(port, window=65_535) as c:
        c.conn.send_headers(1, REQUEST, end_stream=True)
        c.flush()
        part = await c.data()
        assert isinstance(part, h2.events.DataReceived) and part.data == b"part"
        c.conn.reset_stream(1)
        c.flush()
        assert await asyncio.wait_for(seen.get(), 30) == "http.disconnect"


async def test_a_client_goaway_lets_its_open_stream_run_to_its_end() -> None:
    # What the JavaScript SDK v3 does with an event stream: GOAWAY (no error) once the response starts, then read
    # the stream to its end, returning window as it goes.
    release = asyncio.Event()
    big = bytes(range(256)) * 200

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        await send({"type": "http.response.body", "body": big, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with serving(app) as port, client(port, window=4_096) as c:
        c.conn.send_headers(1, REQUEST, end_stream=True)
        c.flush()
        c.conn.close_connection()
        c.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN  # (h2 would refuse to read on)
        c.flush()
        release.set()
        received = b""
        while not isinstance(event := await c.data(), h2.events.StreamEnded):
            assert isinstance(event, h2.events.DataReceived)
            received += event.data
        assert received == big
        assert await asyncio.wait_for(c.reader.read(), 30) == b""  # and then the server closes the connection


async def test_reset_streams_count_until_their_app_calls_end() -> None:
    # "Rapid reset": streams a client resets at once are closed for h2, but their app calls still run.
    release = asyncio.Event()
    running = 0

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        nonlocal running
        running += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        running -= 1

    limits = dataclasses.replace(DEFAULT_LIMITS, max_streams=3)
    async with serving(app, limits) as port, client(port, window=65_535) as c:
        for stream_id in (1, 3, 5):
            c.conn.send_headers(stream_id, REQUEST, end_stream=True)
            c.conn.reset_stream(stream_id)
        c.conn.send_headers(7, REQUEST, end_stream=True)  # a fourth while three app calls run
        c.flush()
        refused = await c.next_reset()
        assert (refused.stream_id, refused.error_code) == (7, h2.errors.ErrorCodes.REFUSED_STREAM)
        assert running == 3
        release.set()
        async with asyncio.timeout(30):
            while running:
                await asyncio.sleep(0.01)
        c.conn.send_headers(9, REQUEST, end_stream=True)
        c.flush()
        received = b""
        while not isinstance(event := await c.data(), h2.events.StreamEnded):
            assert isinstance(event, h2.events.DataReceived)
            received += event.data
        assert received == b"done"
