"""Calling the ASGI app in-process: a raw exchange (``asgi_call``), its lifespan (``Lifespan``) and a Kinesis
client over it (``Kinesis``); the fixtures in conftest.py build them over fresh engines."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from _shardline import kinesis_cbor
from shardline import ManualClock
from shardline.api.app import KinesisApp
from shardline.api.shapes import outputless

ACCOUNT = "000000000000"
REGION = "us-east-1"
SERVICE = "Kinesis_20131202"
JSON_TYPE = "application/x-amz-json-1.1"
CBOR_TYPE = "application/x-amz-cbor-1.1"


# ----------------------------------------------------------------- raw ASGI client
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def cbor(self) -> Any:
        # Kinesis's CBOR timestamps: tag 1 holding epoch milliseconds (see shardline.api.wire).
        return kinesis_cbor(self.body)

    @property
    def error(self) -> tuple[str, str | None]:
        """(__type, message) of an error body in either protocol."""
        body = self.cbor() if self.headers.get("content-type") == CBOR_TYPE else self.json()
        # AWS quirk: SerializationException alone spells its member "Message"; each spelling is pinned to its type.
        key = "Message" if body["__type"] == "SerializationException" else "message"
        assert {"message", "Message"} - {key} & body.keys() == set(), body
        return body["__type"], body.get(key)


async def asgi_call(
    app: Callable[..., Awaitable[None]],
    *,
    method: str = "POST",
    path: str = "/",
    query: bytes = b"",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunks: list[bytes] | None = None,
) -> Reply:
    """One HTTP exchange with ``app``. ``chunks`` sends the body as several ``http.request`` messages."""
    parts = chunks if chunks is not None else [body]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4567),
    }
    await app(scope, receive, send)
    assert sent and sent[0]["type"] == "http.response.start", sent
    start = sent[0]
    out_headers: dict[str, str] = {}
    for k, v in start.get("headers", []):
        name = k.decode("latin-1").lower()
        assert name not in out_headers, f"duplicate response header {name}"
        out_headers[name] = v.decode("latin-1")
    payload = b"".join(m.get("body", b"") for m in sent[1:] if m["type"] == "http.response.body")
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)
    return Reply(start["status"], out_headers, payload)


class Lifespan:
    """Runs an app's ASGI lifespan as a task: ``start`` waits for startup, ``stop`` for shutdown."""

    def __init__(self, app: KinesisApp) -> None:
        self.app = app
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, Any]:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self._task = asyncio.create_task(self.app(scope, self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": "lifespan.startup"})
        return await self._outbox.get()  # type: ignore[no-any-return]

    async def stop(self) -> dict[str, Any] | None:
        if self._task is None or self._task.done():
            return None
        await self._inbox.put({"type": "lifespan.shutdown"})
        msg: dict[str, Any] = await self._outbox.get()
        await self._task
        return msg


OUTPUTLESS = outputless()


# ----------------------------------------------------------------- Kinesis client over the app
class Kinesis:
    """Speaks JSON 1.1 (or CBOR) to one KinesisApp; helpers assert the status they expect."""

    def __init__(self, app: KinesisApp, clock: ManualClock) -> None:
        self.app = app
        self.engine = app.engine
        self.clock = clock

    # -- raw
    async def send(
        self,
        op: str | None,
        payload: Any = None,
        *,
        body: bytes | None = None,
        content_type: str | None = JSON_TYPE,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        path: str = "/",
        query: bytes = b"",
        chunks: list[bytes] | None = None,
    ) -> Reply:
        h: dict[str, str] = {}
        if content_type is not None:
            h["content-type"] = content_type
        if op is not None:
            h["x-amz-target"] = op if "." in op else f"{SERVICE}.{op}"
        h.update(headers or {})
        if body is None and chunks is None:
            if payload is None:
                body = b""
            elif content_type == CBOR_TYPE:
                body = cbor2.dumps(payload)
            else:
                body = json.dumps(payload).encode()
        if body is not None and "content-length" not in {k.lower() for k in h}:
            h["content-length"] = str(len(body))
        return await asgi_call(
            self.app, method=method, path=path, query=query, headers=h, body=body or b"", chunks=chunks
        )

    # -- JSON helpers
    async def ok(self, op: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.send(op, payload if payload is not None else {})
        assert r.status == 200, (op, r.status, r.body)
        assert r.headers["content-type"] == JSON_TYPE
        if op in OUTPUTLESS:  # AWS quirk: an operation without an output shape answers an empty body
            assert (r.body, r.headers["content-length"]) == (b"", "0"), (op, r.body)
            return {}
        return r.json()  # type: ignore[no-any-return]

    async def fail(self, op: str, payload: dict[str, Any] | None = None, status: int = 400) -> tuple[str, str | None]:
        r = await self.send(op, payload if payload is not None else {})
        assert r.status == status, (op, r.status, r.body)
        return r.error

    async def serialization(self, op: str, payload: dict[str, Any]) -> str | None:
        kind, msg = await self.fail(op, payload)
        assert kind == "SerializationException", (kind, msg)
        return msg

    async def validation(self, op: str, payload: dict[str, Any]) -> str | None:
        kind, msg = await self.fail(op, payload)
        assert kind == "ValidationException", (kind, msg)
        return msg

    # -- common steps
    def arn(self, name: str) -> str:
        return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"

    def not_found(self, name: str) -> tuple[str, str]:
        return "ResourceNotFoundException", f"Stream {name} under account {ACCOUNT} not found."

    async def create(self, name: str = "s", shards: int = 1, **extra: Any) -> None:
        await self.ok("CreateStream", {"StreamName": name, "ShardCount": shards, **extra})

    async def put(self, name: str, data: bytes, key: str = "pk", **extra: Any) -> dict[str, Any]:
        payload = {"StreamName": name, "Data": base64.b64encode(data).decode(), "PartitionKey": key, **extra}
        return await self.ok("PutRecord", payload)

    async def iterator(
        self, name: str, shard: str = "shardId-000000000000", kind: str = "TRIM_HORIZON", **kw: Any
    ) -> str:
        out = await self.ok("GetShardIterator", {"StreamName": name, "ShardId": shard, "ShardIteratorType": kind, **kw})
        return str(out["ShardIterator"])
