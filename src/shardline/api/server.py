"""Running the Kinesis app on a socket with uvicorn, within bounds fixed before any work.

uvicorn parses HTTP/1.1 with httptools, and the CLI runs ``serve`` on uvloop's event loop: both are required
dependencies (pyproject.toml), imported unconditionally; neither has a fallback here.

uvicorn's HTTP/1.1 protocol has no limit on a request's header block, no deadline for a request that is sent slowly
or never finished, no cap on connections and no deadline for a client that stops reading its response. Each of those
lets one client without credentials hold memory, sockets or open files forever, so ``_BoundedProtocol`` adds them:

- a request's line and headers together: at most ``max_header_bytes`` (431 and close past that);
- a whole request, from its first byte (or the connection's start) to its last body byte: ``request_timeout_s``
  (408 and close, or just close when nothing was sent);
- an idle connection between requests: ``idle_timeout_s`` (closed);
- a response the client does not read: the connection is dropped once writing has stalled for ``write_timeout_s``;
- open connections: ``max_connections`` at most, and never more than half the open-file limit, so the storage engine
  keeps files whatever the clients do (a connection past the cap gets 503 and is closed at once).

HTTP/2 shares the port: a connection whose first bytes are the HTTP/2 preface (h2c with prior knowledge, as the AWS
SDKs speak to an ``http://`` endpoint), or whose TLS handshake chose ALPN ``h2``, is handed to ``h2server``, which
runs the same app within the same bounds. Only a connection's first bytes are looked at; an HTTP/1.1 request's path
is unchanged. ``Upgrade: h2c`` is not taken up: such a request is served as HTTP/1.1 (see ``_ignore_upgrade``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .app import KinesisApp
from .h2server import PREFACE, Http2Connection
from .tls import TlsFiles, alpn_context

__all__ = ["DEFAULT_LIMITS", "ServerLimits", "TlsFiles", "bind", "is_loopback", "serve"]

log = logging.getLogger("shardline.api")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may hold before it is authenticated; ``docs/security.md`` explains each."""

    max_header_bytes: int = 32 * 1024
    request_timeout_s: float = 60.0
    idle_timeout_s: float = 75.0
    write_timeout_s: float = 60.0
    max_connections: int = 1024
    max_streams: int = 100  # concurrent HTTP/2 streams of one connection

    def check(self) -> None:
        for name in ("max_header_bytes", "max_connections", "max_streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        for name in ("request_timeout_s", "idle_timeout_s", "write_timeout_s"):
            value = getattr(self, name)
            if not 0 < value < 86_400:
                raise ValueError(f"{name.removesuffix('_s').replace('_', '-')} must be between 0 and 86400 seconds")

    def effective_max_connections(self) -> int:
        """The cap in force: half the open-file limit at most, the other half is the storage engine's."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return max(1, min(self.max_connections, soft // 2))


DEFAULT_LIMITS = ServerLimits()


def _raise_open_file_limit() -> None:
    """Use the hard limit on open files, as servers do: the soft default (often 1,024) is low for many shards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65_536)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _plain_response(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


_TOO_MANY = _plain_response(b"503 Service Unavailable")
_HEADERS_TOO_LARGE = _plain_response(b"431 Request Header Fields Too Large")
_TIMED_OUT = _plain_response(b"408 Request Timeout")


class _BoundedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with the bounds of the module docstring; one instance per connection."""

    limits: ClassVar[ServerLimits] = DEFAULT_LIMITS
    max_connections: ClassVar[int] = DEFAULT_LIMITS.max_connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_pending = True  # the next bytes belong to a request line or headers
        self._header_bytes = 0
        self._received_any = False
        self._request_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._upgrade_body: int | None = None  # body bytes still due of a request whose Upgrade is ignored
        self._first: bytes | None = b""  # the connection's first bytes, until they show HTTP/1.1 or the preface

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning(
                "refused a connection: %d open, the limit is %d", len(self.connections) - 1, self.max_connections
            )
            self._reject(_TOO_MANY)
            return
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._to_http2(b"")
            return
        self._start_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._first is not None:
            data = self._first + data
            if len(data) < len(PREFACE) and PREFACE.startswith(data):
                self._first = data  # (so far, the preface's start)
                return
            self._first = None
            if data.startswith(PREFACE):
                self._to_http2(data)
                return
        if self._request_timer is None:
            self._start_request_timer()  # the first byte of a request on a kept-alive connection
        self._received_any = True
        if self._upgrade_body is not None:
            self._take_upgrade_body(data)
            return
        if self._headers_pending:
            self._header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            log.warning("refused a request that is not valid HTTP/1.1")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade as exc:
            self._ignore_upgrade(data[exc.args[0] :] if exc.args else b"")
            return
        if (
            self._headers_pending
            and self._header_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            log.warning("refused a request whose headers exceed %d bytes", self.limits.max_header_bytes)
            self._reject(_HEADERS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._headers_pending = False
        self._header_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_request_timer()
        self._headers_pending = True
        self._received_any = False
        super().on_message_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.write_timeout_s, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _to_http2(self, data: bytes) -> None:
        """Hand the connection to an HTTP/2 protocol: it takes this one's place among the connections counted."""
        self._cancel_request_timer()
        self._first = None
        self.connections.discard(self)
        h2 = Http2Connection(
            app=self.app,
            limits=self.limits,
            connections=self.connections,
            tasks=self.tasks,
            default_headers=self.server_state.default_headers,
            app_state=self.app_state,
            root_path=self.root_path,
        )
        self.transport.set_protocol(h2)
        h2.connection_made(self.transport)
        if data:
            h2.data_received(data)

    # ----------------------------------------------------------------- Upgrade
    def _should_upgrade(self) -> bool:
        return False  # no protocol is upgraded to here: the request is served as HTTP/1.1

    def _ignore_upgrade(self, rest: bytes) -> None:
        """Serve a request that asks to upgrade (``Upgrade: h2c`` from Java's HttpClient, or a websocket) as plain
        HTTP/1.1, as RFC 9110 lets a server do: the parser took its headers and stopped where the new protocol
        would start, having ended the message without its body. The body is taken here by its Content-Length, and
        a fresh parser reads what follows."""
        cycle = self.cycle
        length = next((v for k, v in self.headers if k == b"content-length"), b"0")
        due = int(length) if length.isdigit() else 0
        if cycle is None or cycle.response_complete or due == 0:
            self._restart_parser(rest)
            return
        cycle.more_body = True  # (its app task has not run yet: it sees the body as if the parser had read it)
        self._upgrade_body = due
        self._headers_pending = False
        self._take_upgrade_body(rest)

    def _take_upgrade_body(self, data: bytes) -> None:
        due = self._upgrade_body
        assert due is not None
        part, rest = data[:due], data[due:]
        cycle = self.cycle
        if part and not cycle.response_complete:
            cycle.body += part
            if len(cycle.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.message_event.set()
        due -= len(part)
        if due:
            self._upgrade_body = due
            return
        self._upgrade_body = None
        cycle.more_body = False
        cycle.message_event.set()
        self._cancel_request_timer()
        self._headers_pending = True
        self._received_any = False
        self._restart_parser(rest)

    def _restart_parser(self, rest: bytes) -> None:
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # (as uvicorn sets it up)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if rest:
            self.data_received(rest)

    # ----------------------------------------------------------------- internals
    def _start_request_timer(self) -> None:
        self._request_timer = self.loop.call_later(self.limits.request_timeout_s, self._request_timed_out)

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        responding = self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started
        if self._received_any and not responding:
            self._reject(_TIMED_OUT)
        else:
            self.transport.close()

    def _write_stalled(self) -> None:
        self._write_timer = None
        log.warning("dropped a connection whose client stopped reading for %gs", self.limits.write_timeout_s)
        self.transport.abort()

    def _reject(self, response: bytes) -> None:
        self._cancel_request_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        self.transport.write(response)
        self.transport.close()


def _protocol_for(limits: ServerLimits) -> type[_BoundedProtocol]:
    return type(
        "BoundedHttpProtocol",
        (_BoundedProtocol,),
        {"limits": limits, "max_connections": limits.effective_max_connections()},
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after shutting down, turning a clean stop into a signal exit status; the
    handlers installed by ``serve`` make a stop a normal return instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    app: KinesisApp,
    sock: socket.socket,
    *,
    limits: ServerLimits = DEFAULT_LIMITS,
    tls: TlsFiles | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve (over TLS with ``tls``, ALPN offering h2 and http/1.1) until SIGINT/SIGTERM: then stop accepting, let
    in-flight requests finish, close the engine. A second signal forces the exit without waiting for open
    connections."""
    limits.check()
    _raise_open_file_limit()
    config = uvicorn.Config(
        app,
        http=_protocol_for(limits),
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=max(1, round(limits.idle_timeout_s)),
        backlog=1024,
        ssl_certfile=None if tls is None else str(tls.cert),
        ssl_keyfile=None if tls is None else str(tls.key),
        ssl_context_factory=None if tls is None else alpn_context,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()

    # Services with a ``before_shutdown`` coroutine (local worker processes that call this endpoint) finish it while
    # the endpoint still serves; a second signal stops at once.
    hooks = [h for h in (getattr(s, "before_shutdown", None) for s in app.services) if h is not None]
    pending: list[asyncio.Task[None]] = []

    async def shutdown_after_hooks() -> None:
        try:
            await asyncio.gather(*(h() for h in hooks), return_exceptions=True)
        finally:
            server.should_exit = True

    def stop() -> None:
        if hooks and not pending and not server.should_exit:
            pending.append(asyncio.ensure_future(shutdown_after_hooks()))
            return
        if server.should_exit or pending:
            server.force_exit = True
        server.should_exit = True
        app.end_streams()  # open subscriptions end now, as at their lifetime's end, instead of holding the stop

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started and on_ready is not None:
        on_ready()
    await task
