"""HTTP/2 for the ASGI app, on the connections ``server.py`` hands over (h2c with prior knowledge, or TLS with ALPN
``h2``); the framing, HPACK and the protocol's state machines are the ``h2`` library's.

The AWS SDKs for JavaScript v3 and Java v2 (async) and the KCL speak HTTP/2 to Kinesis; HTTP/1.1 stays with
uvicorn's httptools protocol, which only looks at a connection's first bytes to find the HTTP/2 preface.

An HTTP/2 connection keeps the bounds of an HTTP/1.1 one (``ServerLimits``), per stream where HTTP/1.1 has them per
request:

- a request's header list: at most ``max_header_bytes`` (advertised as SETTINGS_MAX_HEADER_LIST_SIZE; a larger one
  ends the connection, as h2 decodes it);
- concurrent streams: ``max_streams`` (advertised; a client that opens more loses the connection), and a stream
  counts until its app call ends, even once reset (past that, new streams are refused with REFUSED_STREAM);
- request bodies: a stream's unread bytes at most ``STREAM_WINDOW`` and a connection's at most
  ``CONNECTION_WINDOW``: flow-control credit is returned only as the app reads, so a client cannot make the server
  hold more, however many streams it opens; the app itself caps a body's size, as over HTTP/1.1;
- a whole request, from its HEADERS to its last DATA frame: ``request_timeout_s`` (408 and RST_STREAM NO_ERROR,
  or RST_STREAM CANCEL once a response has started);
- a connection with no open stream: ``idle_timeout_s`` (GOAWAY and close);
- a response the client does not read: when the socket stops draining, or a stream's or the connection's window
  stays shut, for ``write_timeout_s``, the connection is dropped (the stream is reset, for a shut stream window);
  while the socket does not drain, nothing more is read from the client;
- connections: they were counted as HTTP/1.1 ones when accepted, and stay counted.

Responses, streamed ones (``more_body``) included, go out frame by frame as the app sends them, within the
client's flow-control windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from h2.errors import ErrorCodes
from uvicorn.protocols.utils import is_ssl

if TYPE_CHECKING:
    from .server import ServerLimits  # (server.py imports this module)

__all__ = ["CONNECTION_WINDOW", "PREFACE", "STREAM_WINDOW", "Http2Connection"]

log = logging.getLogger("shardline.api")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STREAM_WINDOW = 1024 * 1024  # unread request bytes one stream may have sent
CONNECTION_WINDOW = 4 * 1024 * 1024  # ... and all the streams of a connection together
_LINGER_S = 1.0  # how long a connection ended by an error is still read, so that its GOAWAY is not lost
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]


class _Connection(h2.connection.H2Connection):
    """h2's connection, keeping its streams alive through a graceful GOAWAY. h2 closes its state machine on any
    GOAWAY, sent or received, and refuses every frame after it; RFC 9113 (6.8) lets the streams already open run to
    their end. The JavaScript SDK v3 closes an event-stream session (GOAWAY, no error) as soon as its response
    starts, then reads the stream to its end, returning flow-control credit as it goes; a stopping server answers
    its streams in flight after its GOAWAY too. New streams after a GOAWAY are refused by ``Http2Connection``."""

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        event = h2.events.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def close_connection(
        self, error_code: int = 0, additional_data: bytes | None = None, last_stream_id: int | None = None
    ) -> None:
        super().close_connection(error_code, additional_data, last_stream_id)
        if error_code == ErrorCodes.NO_ERROR:
            self.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding of literals: a response's fresh values (request ids, dates) are not worth the
    pure-Python Huffman coder's time on loopback and LAN links (RFC 7541 makes it optional)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class _Stream:
    __slots__ = (
        "body",
        "closed",
        "credit",
        "delivered_end",
        "ended",
        "event",
        "id",
        "responded",
        "started",
        "timer",
        "window",
    )

    def __init__(self, stream_id: int) -> None:
        self.id = stream_id
        self.body: list[bytes] = []
        self.credit = 0  # flow-controlled bytes received (padding too) and not yet returned to the client
        self.ended = False  # the client sent END_STREAM
        self.delivered_end = False  # the app was given the request's last part
        self.started = False  # response headers sent
        self.responded = False  # response ended (END_STREAM sent)
        self.closed = False  # reset by either side, or the connection is gone
        self.event = asyncio.Event()  # request data, its end, or the stream's end
        self.window = asyncio.Event()  # flow-control credit, or the stream's end
        self.timer: asyncio.TimerHandle | None = None


class Http2Connection(asyncio.Protocol):
    """One HTTP/2 connection, running each stream as a call of the ASGI app."""

    def __init__(
        self,
        *,
        app: App,
        limits: ServerLimits,
        connections: set[Any],
        tasks: set[asyncio.Task[None]],
        default_headers: list[tuple[bytes, bytes]],
        app_state: dict[str, Any],
        root_path: str = "",
    ) -> None:
        self.app = app
        self.limits = limits
        self.connections = connections
        self.tasks = tasks
        self.default_headers = default_headers
        self.app_state = app_state
        self.root_path = root_path
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = _Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self.conn.encoder = _PlainEncoder()
        self.conn.decoder.max_header_list_size = limits.max_header_bytes  # before the client acknowledges it
        self.streams: dict[int, _Stream] = {}
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self._idle_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._closing = False
        self._terminated = False

    # ----------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's transports are not asyncio's classes)
        self.connections.add(self)
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        self.scheme = "https" if is_ssl(self.transport) else "http"
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - self.conn.inbound_flow_control_window)
        self._flush()
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._closing = True
        for timer in (self._idle_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._writable.set()
        for stream in list(self.streams.values()):
            self._close_stream(stream)

    def data_received(self, data: bytes) -> None:
        if self._terminated:
            return  # (read and dropped until the client closes: see _terminate)
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("closed an HTTP/2 connection: %s", exc)
            self._terminate()
            return
        for event in events:
            self._dispatch(event)
        self._flush()

    def eof_received(self) -> bool | None:
        return None  # (the transport closes)

    def pause_writing(self) -> None:
        # Nothing more is read from a client that does not read: its PINGs and SETTINGS (which h2 answers) and its
        # requests cannot grow what waits to be written.
        if self.transport is not None:
            self.transport.pause_reading()
        self._writable.clear()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.write_timeout_s, self._write_stalled)

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._writable.set()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def shutdown(self) -> None:
        """uvicorn's graceful stop: GOAWAY now, close once the streams in flight are answered."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection()
        self._flush()
        if not self.streams:
            self._close_transport()

    # ----------------------------------------------------------------- events
    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._start(event)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None or stream.closed or stream.delivered_end:
                self._acknowledge(event.stream_id, event.flow_controlled_length)
            else:
                stream.body.append(event.data)
                stream.credit += event.flow_controlled_length
                stream.event.set()
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.ended = True
                _cancel(stream)
                stream.event.set()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._close_stream(stream)
        elif isinstance(event, h2.events.WindowUpdated) and event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.window.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            for stream in self.streams.values():  # the connection's window, or every stream's initial one
                stream.window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            if event.error_code != ErrorCodes.NO_ERROR or not self.streams:
                self._close_transport()
            else:
                self._closing = True  # (the client's streams in flight run to their end, then the connection closes)

    def _start(self, event: h2.events.RequestReceived) -> None:
        # A stream counts until its app call ends, not only while h2 sees it open: a client that resets its streams
        # at once ("rapid reset") could otherwise start app calls without bound.
        if self._closing or len(self.streams) >= self.limits.max_streams:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(event.stream_id)
        self.streams[stream.id] = stream
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        stream.timer = self.loop.call_later(self.limits.request_timeout_s, self._request_timed_out, stream)
        method, path, authority = b"GET", b"/", b""
        headers: list[tuple[bytes, bytes]] = []
        for raw_name, raw_value in event.headers or ():
            name, value = bytes(raw_name), bytes(raw_value)
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif not name.startswith(b":"):
                headers.append((name, value))
        if authority and not any(name == b"host" for name, _ in headers):
            headers.insert(0, (b"host", authority))
        raw_path, _, query = path.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "2",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method.decode("ascii", "replace"),
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path.decode("ascii", "replace")),
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": query,
            "headers": headers,
            "state": self.app_state.copy(),
        }
        task = self.loop.create_task(self._run(stream, scope))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ----------------------------------------------------------------- one stream
    async def _run(self, stream: _Stream, scope: dict[str, Any]) -> None:
        async def receive() -> Message:
            while True:
                if stream.body:
                    data = b"".join(stream.body) if len(stream.body) > 1 else stream.body[0]
                    stream.body.clear()
                    self._acknowledge(stream.id, stream.credit)
                    stream.credit = 0
                    self._flush()
                    stream.delivered_end = stream.ended
                    return {"type": "http.request", "body": data, "more_body": not stream.ended}
                if stream.closed:
                    return {"type": "http.disconnect"}
                if stream.ended and not stream.delivered_end:
                    stream.delivered_end = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                stream.event.clear()
                await stream.event.wait()

        async def send(message: Message) -> None:
            if stream.closed or stream.responded:
                return
            if message["type"] == "http.response.start":
                self._send_headers(stream, message["status"], message.get("headers", ()), end=False, flush=False)
            elif message["type"] == "http.response.body":
                if not stream.started:
                    raise RuntimeError("http.response.body before http.response.start")
                await self._send_body(stream, message.get("body", b""), end=not message.get("more_body", False))

        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("the app failed on an HTTP/2 request")
            if not stream.started and not stream.closed:
                self._send_headers(stream, 500, [(b"content-length", b"0")], end=True)
        finally:
            if not stream.responded and not stream.closed:
                self._reset(stream, ErrorCodes.INTERNAL_ERROR)
            self._forget(stream)

    def _send_headers(self, stream: _Stream, status: int, headers: Any, *, end: bool, flush: bool = True) -> None:
        """The response's HEADERS frame; with ``flush=False`` it waits to go out with the first DATA frames (as
        uvicorn's HTTP/1.1 protocol holds a response's head until its body)."""
        out = [(b":status", str(status).encode("ascii"))]
        names = set()
        for raw_name, value in headers:
            name = bytes(raw_name).lower()
            names.add(name)
            if name not in _CONNECTION_SPECIFIC:
                out.append((name, bytes(value)))
        out.extend((n, v) for n, v in self.default_headers if n not in names)
        try:
            self.conn.send_headers(stream.id, out, end_stream=end)
        except h2.exceptions.ProtocolError:
            self._close_stream(stream)
            return
        stream.started = True
        if end:
            self._responded(stream)
        if flush or end:
            self._flush()

    async def _send_body(self, stream: _Stream, body: bytes, *, end: bool) -> None:
        """``body`` in DATA frames as the windows allow, written together; then wait for more window, or for the
        socket to drain, before the rest."""
        view = memoryview(body)
        if not view and not end:
            self._flush()  # (the head, if it is still waiting)
            return
        while True:
            if stream.closed:
                return
            try:
                while True:
                    window = self.conn.local_flow_control_window(stream.id)
                    size = min(len(view), window, self.conn.max_outbound_frame_size)
                    if size == 0 and len(view) > 0:
                        break
                    last = end and size == len(view)
                    self.conn.send_data(stream.id, view[:size].tobytes(), end_stream=last)
                    view = view[size:]
                    if last:
                        self._flush()
                        self._responded(stream)
                        return
                    if not len(view):
                        self._flush()
                        return
            except h2.exceptions.ProtocolError:
                self._close_stream(stream)
                return
            self._flush()
            stream.window.clear()
            try:
                await asyncio.wait_for(stream.window.wait(), self.limits.write_timeout_s)
            except TimeoutError:
                log.warning("reset an HTTP/2 stream left without window for %gs", self.limits.write_timeout_s)
                self._reset(stream, ErrorCodes.CANCEL)
                return
            await self._writable.wait()

    def _responded(self, stream: _Stream) -> None:
        stream.responded = True
        if not stream.ended:  # answered before the request was complete (408, 413): the rest is not wanted
            self._reset(stream, ErrorCodes.NO_ERROR)

    # ----------------------------------------------------------------- internals
    def _request_timed_out(self, stream: _Stream) -> None:
        stream.timer = None
        if stream.closed or stream.ended:
            return
        if stream.started:
            self._reset(stream, ErrorCodes.CANCEL)
        else:
            self._send_headers(stream, 408, [(b"content-length", b"0")], end=True)
        self._close_stream(stream)

    def _reset(self, stream: _Stream, code: ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream.id, code)
        self._flush()
        self._close_stream(stream)

    def _close_stream(self, stream: _Stream) -> None:
        stream.closed = True
        stream.body.clear()
        if stream.credit:  # (the connection's window is owed it even though the stream is gone)
            self._acknowledge(stream.id, stream.credit)
            stream.credit = 0
        _cancel(stream)
        stream.event.set()
        stream.window.set()

    def _forget(self, stream: _Stream) -> None:
        self._close_stream(stream)
        self.streams.pop(stream.id, None)
        if not self.streams:
            if self._closing:
                self._close_transport()
            else:
                self._arm_idle_timer()

    def _acknowledge(self, stream_id: int, size: int) -> None:
        if size > 0:
            with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
                self.conn.acknowledge_received_data(size, stream_id)

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self.loop.call_later(self.limits.idle_timeout_s, self._idle)

    def _idle(self) -> None:
        self._idle_timer = None
        if not self.streams:
            self.shutdown()

    def _write_stalled(self) -> None:
        self._write_timer = None
        log.warning("dropped a connection whose client stopped reading for %gs", self.limits.write_timeout_s)
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _terminate(self) -> None:
        """After a connection error: send the GOAWAY h2 queued, then end the sending side and keep reading (and
        dropping) what the client still sends for a moment, so that closing does not turn into a TCP reset that
        could destroy the GOAWAY before the client reads it."""
        self._terminated = True
        self._closing = True
        self._flush()
        for stream in list(self.streams.values()):
            self._close_stream(stream)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(_LINGER_S, transport.close)

    def _close_transport(self) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def _cancel(stream: _Stream) -> None:
    if stream.timer is not None:
        stream.timer.cancel()
        stream.timer = None


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
