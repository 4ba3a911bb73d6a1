"""A SubscribeToShard exchange with the ASGI app in-process: the response is read message by message as the app
sends it, the client can stop reading (``gate``) or go away (``disconnect``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import cbor2

from api._asgi import CBOR_TYPE, JSON_TYPE, SERVICE
from shardline.api.app import KinesisApp
from shardline.api.eventstream import Decoder, Message

DEADLINE_S = 10.0  # only turns a hang into a failure


class Exchange:
    def __init__(self, app: KinesisApp, payload: dict[str, Any], *, content_type: str = JSON_TYPE) -> None:
        self.app = app
        self.body = cbor2.dumps(payload) if content_type == CBOR_TYPE else json.dumps(payload).encode()
        self.headers_in = {
            "content-type": content_type,
            "x-amz-target": f"{SERVICE}.SubscribeToShard",
            "content-length": str(len(self.body)),
        }
        self.sent: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.gate: asyncio.Event | None = None  # while not set, the client reads nothing: each send waits
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = False
        self.error_body = b""
        self._gone = asyncio.Event()
        self._body_given = False
        self._decoder = Decoder()
        self._pending: list[Message] = []
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if self.gate is not None and message["type"] == "http.response.body":
            await self.gate.wait()
        await self.sent.put(message)

    async def start(self) -> Exchange:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in self.headers_in.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 4567),
        }
        self._task = asyncio.ensure_future(self.app(scope, self._receive, self._send))
        start = await asyncio.wait_for(self.sent.get(), DEADLINE_S)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = {k.decode(): v.decode() for k, v in start["headers"]}
        if self.status != 200:
            while not self.ended:
                msg = await asyncio.wait_for(self.sent.get(), DEADLINE_S)
                self.error_body += msg.get("body", b"")
                self.ended = not msg.get("more_body", False)
            await self.finished()
        return self

    async def message(self) -> Message | None:
        """The next whole message, or None once the body has ended."""
        while not self._pending:
            if self.ended:
                return None
            msg = await asyncio.wait_for(self.sent.get(), DEADLINE_S)
            assert msg["type"] == "http.response.body", msg
            self._pending += self._decoder.feed(msg.get("body", b""))
            if not msg.get("more_body", False):
                self.ended = True
                assert self._decoder.pending == 0, "the body ended inside a message"
        return self._pending.pop(0)

    async def event(self) -> dict[str, Any]:
        """The next message, which must be a SubscribeToShardEvent in JSON."""
        msg = await self.message()
        assert msg is not None
        assert msg.header(":message-type") == "event" and msg.header(":event-type") == "SubscribeToShardEvent", msg
        return json.loads(msg.payload)  # type: ignore[no-any-return]

    async def disconnect(self) -> None:
        self._gone.set()
        if self.gate is not None:
            self.gate.set()
        await self.finished()

    def cancel(self) -> None:
        assert self._task is not None
        self._task.cancel()

    async def finished(self) -> None:
        assert self._task is not None
        await asyncio.wait_for(self._task, DEADLINE_S)
