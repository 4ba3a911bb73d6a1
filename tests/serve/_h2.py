"""A raw HTTP/2 client for the server's bounds, built on the h2 library's client side, which, unlike a real SDK, can
be made to break the rules."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import h2.config
import h2.connection
import h2.events
import h2.settings

from _shardline import UNVERIFIED_SIGNATURE

JSON_TYPE = "application/x-amz-json-1.1"


def request_headers(url: str, op: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    where = urlparse(url)
    return [
        (":method", "POST"),
        (":scheme", where.scheme),
        (":authority", where.netloc),
        (":path", "/"),
        ("content-type", JSON_TYPE),
        ("x-amz-target", f"Kinesis_20131202.{op}"),
        *((k.lower(), v) for k, v in UNVERIFIED_SIGNATURE.items()),
        *extra,
    ]


class RawH2:
    """One h2c connection with prior knowledge; ``wait_for`` reads events until one of a type arrives."""

    def __init__(self, url: str, *, settings: dict[int, int] | None = None) -> None:
        where = urlparse(url)
        assert where.hostname is not None and where.port is not None
        self.sock = socket.create_connection((where.hostname, where.port), timeout=30)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[h2.events.Event] = []
        self.closed = False

    def send_now(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def read(self) -> list[h2.events.Event]:
        """Whatever the next read brings (nothing once the server has closed)."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        self.events.extend(events)
        self.send_now()
        return events

    def wait_for(self, kind: type[h2.events.Event], *, deadline_s: float = 30.0) -> h2.events.Event | None:
        """The first event of ``kind`` seen so far or arriving before the deadline; None if the server closed."""
        end = time.monotonic() + deadline_s
        while True:
            for event in self.events:
                if isinstance(event, kind):
                    return event
            if self.closed:
                return None
            assert time.monotonic() < end, f"no {kind.__name__} within {deadline_s}s: {self.events}"
            self.read()

    def drain_until_closed(self, *, deadline_s: float = 30.0) -> None:
        end = time.monotonic() + deadline_s
        while not self.closed:
            assert time.monotonic() < end, "the server kept the connection open"
            self.read()

    def close(self) -> None:
        self.sock.close()
