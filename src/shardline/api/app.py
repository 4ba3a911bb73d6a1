"""The ASGI app: target and content type, size limit, authentication, shape checks, dispatch, error mapping.

Requests are checked in the order AWS's front end checks them, so each malformed request gets the error AWS would
give: method, body presence, content type, body syntax, operation, signature, types, constraints; then the action.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

import orjson

from ..engine import DataDirLocked, Engine
from ..errors import (
    InternalFailureException,
    KinesisError,
    RequestEntityTooLargeException,
    SerializationException,
    UnknownOperationException,
)
from .actions import ACTIONS, STREAMING_ACTIONS, StreamingBody
from .auth import SigV4Verifier, signature_shape
from .negotiation import (
    CORS_EXPOSED,
    RawAnswer,
    access_denied,
    codec_for_empty_body,
    legacy_answer,
    preflight_headers,
    usable_codec,
)
from .shapes import check_request, operations, outputless
from .wire import JSON, Codec

__all__ = ["KinesisApp"]

log = logging.getLogger("shardline.api")
access_log = logging.getLogger("shardline.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SERVICE = "Kinesis_20131202"
DEFAULT_MAX_BODY = 16 * 1024 * 1024  # a full 10 MiB PutRecords (large records) in base64 JSON, with room for keys
_KNOWN = set(operations())
_OUTPUTLESS = outputless()  # AWS quirk: these answer 200 with Content-Length 0, not "{}"


def _parses_as_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


class _Disconnected(Exception):
    """The client went away before its request's body was complete."""


class Service(Protocol):
    """Something that runs beside the endpoint over the same engine (the stream-function runtime)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class KinesisApp:
    """Serves the Kinesis API for ``engine``. The ASGI lifespan opens and closes the engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        verifier: SigV4Verifier | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        log_requests: bool = False,
        services: Sequence[Service] = (),
        extra_http: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
        signature_shape: bool = False,
    ) -> None:
        """``verifier`` verifies signatures (``--auth sigv4``); without one, ``signature_shape`` still requires
        every request to carry a signature of the shape AWS requires (``--auth none``), and False serves unsigned
        requests too (``--auth off``)."""
        self.engine = engine
        self.services = list(services)
        # Requests that are not Kinesis calls (GET /metrics, /dashboard, ...) go to this app when given.
        self.extra_http = extra_http
        self.verifier = verifier
        self.signature_shape = signature_shape
        self.max_body_bytes = max_body_bytes
        self.log_requests = log_requests
        self.ready = False
        self.startup_error: str | None = None
        self._streams: set[StreamingBody] = set()  # responses being streamed (SubscribeToShard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                started: list[Service] = []
                try:
                    if self.engine.closed:
                        await self.engine.open()
                    for service in self.services:
                        await service.start()
                        started.append(service)
                    self.ready = True
                except Exception as exc:
                    self.startup_error = str(exc)
                    if not isinstance(exc, DataDirLocked):
                        log.exception("startup failed")
                    await self._stop_services(started)  # a failed start leaves nothing running
                    with contextlib.suppress(Exception):
                        await self.engine.close()
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.ready = False
                try:
                    await self._stop_services(self.services)
                    await self.engine.close()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _stop_services(self, services: Sequence[Service]) -> None:
        for service in reversed(services):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", service)

    # ----------------------------------------------------------------- HTTP
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        path = scope.get("path", "/")
        if method == "GET" and path in ("/health", "/_shardline/health"):
            await self._health(send)
            return
        if self.extra_http is not None and method in ("GET", "HEAD") and path != "/":
            await self.extra_http(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        if method == "OPTIONS" and "origin" in headers:
            await self._preflight(headers, request_id, send)
            return
        content_type = headers.get("content-type", "")
        service, _, op = headers.get("x-amz-target", "").partition(".")
        op_known = service == SERVICE and op in _KNOWN
        codec: Codec = JSON
        response_type: str | None = JSON.content_type
        stream: StreamingBody | None = None
        try:
            if method != "POST":
                raise access_denied()
            query = scope.get("query_string", b"").decode("latin-1")
            if self.verifier is not None:
                # Deliberately unlike AWS, which reports a malformed body before a bad signature: with --auth, a
                # request is authenticated before its body is decoded (or, for what the headers alone decide, read),
                # so a client without credentials cannot make the server parse megabytes.
                codec = usable_codec(content_type, service, op) or JSON
                if not op_known:
                    raise UnknownOperationException("")
                claim = self.verifier.check_headers(headers, query)
            body = await self._read_body(receive, headers)
            if self.verifier is not None:  # (the headers were checked above: only the signature is left)
                self.verifier.verify(method, path, query, headers, body, claim=claim)
            if not body:
                codec = codec_for_empty_body(content_type)
                raise SerializationException("") if op_known else UnknownOperationException("")
            usable = usable_codec(content_type, service, op)
            if usable is None:
                raise legacy_answer(_parses_as_json(body))
            codec = usable
            try:
                payload = codec.decode(body)
            except Exception:
                raise SerializationException("") from None
            if not isinstance(payload, dict):
                raise SerializationException("")
            if not op_known:
                raise UnknownOperationException("")
            if self.verifier is None and self.signature_shape:
                # AWS checks the signature's shape once it knows the operation, before the members' types.
                signature_shape(headers, query)
            handler = ACTIONS.get(op)
            if handler is None:
                streaming = STREAMING_ACTIONS.get(op)
                if streaming is None:
                    raise UnknownOperationException(f"shardline does not implement {op} yet.")
                stream = await streaming(self.engine, check_request(op, payload, cbor=codec.cbor), codec)
                status, out = 200, b""
            else:
                params = check_request(op, payload, cbor=codec.cbor)
                result = await handler(self.engine, params)
                status, out = 200, b"" if op in _OUTPUTLESS else codec.encode(result)
        except RawAnswer as raw:
            status, out, response_type = raw.status, raw.body, raw.content_type
        except _Disconnected:
            return
        except KinesisError as exc:
            status, out = exc.http_status, self._error_body(codec, exc)
        except Exception:
            log.exception("request %s %s failed", request_id, op)
            exc2 = InternalFailureException("Internal Service Failure")
            status, out = exc2.http_status, self._error_body(codec, exc2)
        if response_type is JSON.content_type:
            response_type = codec.content_type
        out_headers = [
            (b"x-amzn-requestid", request_id.encode()),
            (b"x-amz-id-2", base64.b64encode(os.urandom(72))),
        ]
        if stream is not None:
            response_type = stream.content_type  # no length: the body is sent as it is produced
        else:
            out_headers.append((b"content-length", str(len(out)).encode()))
        if response_type is not None:
            out_headers.append((b"content-type", response_type.encode()))
        if "origin" in headers:
            out_headers += [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", CORS_EXPOSED)]
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        if stream is not None:
            sent = await self._send_stream(stream, receive, send)
        else:
            await send({"type": "http.response.body", "body": out})
            sent = len(out)
        if self.log_requests:
            access_log.info(
                orjson.dumps(
                    {
                        "id": request_id,
                        "op": op,
                        "http": scope.get("http_version", "1.1"),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 3),
                        "in": int(headers.get("content-length", 0) or 0),
                        "out": sent,
                    }
                ).decode()
            )

    def end_streams(self) -> None:
        """End every response being streamed, as their own end would (a SubscribeToShard subscription ends as at
        the end of its lifetime, and the client resubscribes). For a server that stops: call it when the stop is
        requested, so open subscriptions do not hold the shutdown until its grace period runs out."""
        for stream in list(self._streams):
            stream.close()

    async def _send_stream(self, stream: StreamingBody, receive: Receive, send: Send) -> int:
        """Send ``stream``'s chunks as they are produced (``more_body``), until it ends or the client disconnects;
        returns the bytes sent. Each send waits while the client is not reading (the server's flow control), and the
        stream produces its next chunk only then: a slow reader holds one chunk, never a backlog. A server that
        cancels the request (its shutdown's grace period over) ends the stream without an error."""
        sent = 0

        async def pump() -> None:
            nonlocal sent
            async for chunk in stream.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        self._streams.add(stream)
        pumping = asyncio.ensure_future(pump())
        gone = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait((pumping, gone), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            log.info("a streamed response was cut short by the server's shutdown")
        finally:
            self._streams.discard(stream)
            client_gone = gone.done() and not gone.cancelled()
            for task in (pumping, gone):
                task.cancel()
            for task in (pumping, gone):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            stream.close()
        exc = pumping.exception() if not pumping.cancelled() else None
        if exc is not None and not isinstance(exc, OSError):  # (a client gone mid-write is no failure)
            log.error("streaming a response failed", exc_info=exc)
        if (pumping.cancelled() or exc is not None) and not client_gone:
            with contextlib.suppress(Exception):  # end the body the stream could not end itself
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        return sent

    async def _preflight(self, headers: dict[str, str], request_id: str, send: Send) -> None:
        """A browser's CORS preflight: answered before and without authentication (browsers send no credentials
        with it), with no body, no Content-Type and, as AWS does, no x-amz-id-2."""
        out_headers = [
            *preflight_headers(headers),
            (b"content-length", b"0"),
            (b"x-amzn-requestid", request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": out_headers})
        await send({"type": "http.response.body", "body": b""})

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._drain(receive)
            raise RequestEntityTooLargeException(
                f"Request body of {declared} bytes exceeds the limit of {self.max_body_bytes} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                # A request cut off before its last byte is never acted on, whatever the part received parses as.
                raise _Disconnected
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._drain(receive, more=msg.get("more_body", False))
                raise RequestEntityTooLargeException(f"Request body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)

    async def _drain(self, receive: Receive, *, more: bool = True) -> None:
        while more:
            msg = await receive()
            more = msg["type"] != "http.disconnect" and msg.get("more_body", False)

    def _error_body(self, codec: Codec, exc: KinesisError) -> bytes:
        body: dict[str, Any] = {"__type": exc.type_name}
        if exc.message:
            # AWS quirk: SerializationException alone spells its member "Message".
            body["Message" if isinstance(exc, SerializationException) else "message"] = exc.message
        return codec.encode(body)

    async def _health(self, send: Send) -> None:
        """A liveness probe. After a failed fsync it fails (503): only a restart, which replays the journal, makes
        writes work again, so a supervisor should restart the server. A full disk keeps it at 200: writes resume by
        themselves once space is freed, and a restart would not free any. The storage state is not data and is said
        to anyone; the stream count is said only without --auth."""
        serving = self.ready and not self.engine.closed
        storage = self.engine.view.storage()
        ok = serving and storage.state != "failed"
        state: dict[str, Any] = {
            "status": "ok" if ok else "storage-failed" if serving else "starting",
            "storage": storage.state.replace("_", "-"),
        }
        if storage.error is not None:
            state["error"] = storage.error
        if self.verifier is None:  # a liveness probe answers anyone: under --auth it says nothing about the data
            state["streams"] = self.engine.view.stream_count
        body = orjson.dumps(state)
        await send(
            {
                "type": "http.response.start",
                "status": 200 if ok else 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
