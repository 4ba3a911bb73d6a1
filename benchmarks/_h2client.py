"""api_bench's HTTP/2 client: the raw client's hand-built requests over one h2c connection (prior knowledge, as the
AWS SDKs speak to an http:// endpoint), one stream at a time, framed by the h2 library."""

from __future__ import annotations

import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import orjson

WINDOW = 16 * 1024 * 1024  # what this client lets the server send before it reads (a large GetRecords fits)


class H2Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.conn: h2.connection.H2Connection | None = None

    def _connect(self) -> tuple[socket.socket, h2.connection.H2Connection]:
        sock = socket.create_connection((self.host, self.port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW}
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(WINDOW - conn.inbound_flow_control_window)
        sock.sendall(conn.data_to_send())
        self.sock, self.conn = sock, conn
        return sock, conn

    def request(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.sock is None or self.conn is None:
            sock, conn = self._connect()
        else:
            sock, conn = self.sock, self.conn
        sid = conn.get_next_available_stream_id()
        out = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", f"{self.host}:{self.port}".encode())]
        out += [(b":path", b"/"), *((k.lower().encode(), v.encode()) for k, v in headers.items())]
        conn.send_headers(sid, out)
        view = memoryview(body)
        status, done, ended = 0, False, False
        parts: list[bytes] = []
        while True:
            while view:
                size = min(len(view), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if size == 0:
                    break
                conn.send_data(sid, view[:size].tobytes())
                view = view[size:]
            if not view and not ended:
                conn.end_stream(sid)
                ended = True
            sock.sendall(conn.data_to_send())
            if done:
                return status, b"".join(parts)
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed the HTTP/2 connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers or ())[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    parts.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    done = True
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise ConnectionError(f"HTTP/2: {event}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.conn = None


def call(conn: H2Connection, op: str, headers: dict[str, str], body: bytes, last_used: list[float]) -> Any:
    """One request, reconnecting first when the connection has been idle (as the raw HTTP/1.1 client does)."""
    now = time.monotonic()
    if now - last_used[0] > 2.0:
        conn.close()
    status, data = conn.request(headers, body)
    last_used[0] = time.monotonic()
    if status != 200:
        raise RuntimeError(f"{op}: HTTP/2 {status}: {data[:300]!r}")
    return orjson.loads(data) if data else {}
