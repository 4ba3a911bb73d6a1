"""``application/vnd.amazon.eventstream``: the framing of SubscribeToShard's response body.

A response is a sequence of messages; a message may span chunks (or HTTP/2 DATA frames) and a chunk may hold several.
All integers are big-endian.

```
 0             4              8              12                    12+H              total-4     total
 +-------------+--------------+--------------+---------------------+-----------------+-----------+
 | total len   | headers len  | prelude CRC  | headers (H bytes)   | payload         | message   |
 | u32         | u32 (H)      | u32          |                     | total - H - 16  | CRC u32   |
 +-------------+--------------+--------------+---------------------+-----------------+-----------+
 prelude CRC = CRC-32 (zlib) of bytes 0..7
 message CRC = CRC-32 of bytes 0..total-5 (prelude and prelude CRC included)

 header: name length u8 | name, UTF-8 (1..255 bytes) | type u8 | value
 type  value
 0, 1  none (true, false)
 2..5  int8, int16, int32, int64
 6, 7  u16 length, then bytes / UTF-8 text
 8     int64 milliseconds since the epoch
 9     16 bytes (a UUID)
```
A header name appears at most once; order carries no meaning. Headers are at most 128 KiB and a payload at most
24 MiB (botocore refuses more). SubscribeToShard only sends string headers: ``:message-type`` (``event``,
``exception`` or ``error``), ``:event-type`` or ``:exception-type``, and ``:content-type`` of the payload.

``Decoder`` reads messages back (tests, tools); the server only encodes.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "MAX_HEADERS_BYTES",
    "MAX_PAYLOAD_BYTES",
    "Decoder",
    "EventStreamError",
    "Header",
    "HeaderType",
    "HeaderValue",
    "Message",
    "decode_all",
    "encode_headers",
    "encode_message",
    "error_message",
    "event_message",
    "exception_message",
]

MAX_HEADERS_BYTES = 128 * 1024
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
PRELUDE_BYTES = 12
_MIN_MESSAGE = PRELUDE_BYTES + 4
_PRELUDE = struct.Struct("!II")
_U32 = struct.Struct("!I")


class HeaderType(IntEnum):
    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8  # milliseconds since the epoch
    UUID = 9


HeaderValue = bool | int | bytes | str | uuid.UUID


class Header(NamedTuple):
    type: HeaderType
    value: HeaderValue


_INTS = {
    HeaderType.BYTE: struct.Struct("!b"),
    HeaderType.SHORT: struct.Struct("!h"),
    HeaderType.INTEGER: struct.Struct("!i"),
    HeaderType.LONG: struct.Struct("!q"),
    HeaderType.TIMESTAMP: struct.Struct("!q"),
}
_U16 = struct.Struct("!H")


class EventStreamError(ValueError):
    """Bytes that are not a valid event-stream message."""


def _infer(value: HeaderValue) -> HeaderType:
    if isinstance(value, bool):
        return HeaderType.TRUE if value else HeaderType.FALSE
    if isinstance(value, int):
        return HeaderType.LONG
    if isinstance(value, bytes):
        return HeaderType.BYTES
    if isinstance(value, str):
        return HeaderType.STRING
    return HeaderType.UUID


def _encode_header(name: str, kind: HeaderType, value: HeaderValue) -> bytes:
    raw = name.encode()
    if not 1 <= len(raw) <= 255:
        raise ValueError(f"header name of {len(raw)} bytes (1..255 allowed)")
    head = bytes((len(raw),)) + raw + bytes((kind,))
    if kind in (HeaderType.TRUE, HeaderType.FALSE):
        return head
    if kind in _INTS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"header {name}: {kind.name} needs an int")
        return head + _INTS[kind].pack(value)
    if kind is HeaderType.UUID:
        if not isinstance(value, uuid.UUID):
            raise TypeError(f"header {name}: UUID needs a uuid.UUID")
        return head + value.bytes
    data = value.encode() if kind is HeaderType.STRING and isinstance(value, str) else value
    if not isinstance(data, bytes):
        raise TypeError(f"header {name}: {kind.name} needs {'str' if kind is HeaderType.STRING else 'bytes'}")
    if len(data) > 0xFFFF:
        raise ValueError(f"header {name}: value of {len(data)} bytes (65535 allowed)")
    return head + _U16.pack(len(data)) + data


def encode_headers(headers: Iterable[tuple[str, HeaderValue] | tuple[str, HeaderType, HeaderValue]]) -> bytes:
    """The header block of ``(name, value)`` pairs (the type follows the value: str, bytes, bool, int as int64,
    uuid.UUID) or ``(name, type, value)`` triples."""
    out: list[bytes] = []
    seen: set[str] = set()
    for h in headers:
        name = h[0]
        if name in seen:
            raise ValueError(f"duplicate header {name}")
        seen.add(name)
        if len(h) == 3:
            out.append(_encode_header(name, HeaderType(h[1]), h[2]))
        else:
            out.append(_encode_header(name, _infer(h[1]), h[1]))
    block = b"".join(out)
    if len(block) > MAX_HEADERS_BYTES:
        raise ValueError(f"headers of {len(block)} bytes (at most {MAX_HEADERS_BYTES})")
    return block


def encode_message(headers: bytes, payload: bytes) -> bytes:
    """One message from an encoded header block (``encode_headers``) and its payload."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    prelude = _PRELUDE.pack(_MIN_MESSAGE + len(headers) + len(payload), len(headers))
    prelude_crc = zlib.crc32(prelude)
    crc = zlib.crc32(payload, zlib.crc32(headers, zlib.crc32(_U32.pack(prelude_crc), prelude_crc)))
    return b"".join((prelude, _U32.pack(prelude_crc), headers, payload, _U32.pack(crc)))


_EVENT_HEADERS: dict[tuple[str, str], bytes] = {}


def event_message(event_type: str, payload: bytes, content_type: str) -> bytes:
    """An ``event`` message (``:event-type`` names a member of the operation's event stream union, or
    ``initial-response``)."""
    key = (event_type, content_type)
    headers = _EVENT_HEADERS.get(key)
    if headers is None:
        headers = encode_headers(
            [(":event-type", event_type), (":content-type", content_type), (":message-type", "event")]
        )
        if len(_EVENT_HEADERS) < 64:  # (a handful of pairs in practice)
            _EVENT_HEADERS[key] = headers
    return encode_message(headers, payload)


def exception_message(exception_type: str, payload: bytes, content_type: str) -> bytes:
    """A modeled error inside the stream: ``exception_type`` names an error member of the event stream union; the
    payload holds ``{"message": ...}`` in the request's protocol."""
    headers = encode_headers(
        [(":exception-type", exception_type), (":content-type", content_type), (":message-type", "exception")]
    )
    return encode_message(headers, payload)


def error_message(code: str, text: str) -> bytes:
    """An unmodeled error inside the stream: code and text in headers, no payload."""
    headers = encode_headers([(":error-code", code), (":error-message", text), (":message-type", "error")])
    return encode_message(headers, b"")


# ----------------------------------------------------------------- decoding
@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, Header]
    payload: bytes

    def header(self, name: str) -> HeaderValue | None:
        h = self.headers.get(name)
        return h.value if h is not None else None


def _decode_headers(block: bytes) -> dict[str, Header]:
    out: dict[str, Header] = {}
    pos, end = 0, len(block)
    try:
        while pos < end:
            n = block[pos]
            name = block[pos + 1 : pos + 1 + n].decode()
            pos += 1 + n
            kind = HeaderType(block[pos])
            pos += 1
            value: HeaderValue
            if kind is HeaderType.TRUE or kind is HeaderType.FALSE:
                value = kind is HeaderType.TRUE
            elif kind in _INTS:
                fmt = _INTS[kind]
                (value,) = fmt.unpack_from(block, pos)
                pos += fmt.size
            elif kind is HeaderType.UUID:
                if pos + 16 > end:
                    raise EventStreamError("header value runs past the header block")
                value = uuid.UUID(bytes=block[pos : pos + 16])
                pos += 16
            else:
                (length,) = _U16.unpack_from(block, pos)
                raw = block[pos + 2 : pos + 2 + length]
                if len(raw) != length:
                    raise EventStreamError("header value runs past the header block")
                value = raw.decode() if kind is HeaderType.STRING else raw
                pos += 2 + length
            if not name or name in out:
                raise EventStreamError(f"empty or duplicate header name {name!r}")
            out[name] = Header(kind, value)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed header block: {exc}") from None
    except ValueError as exc:
        if isinstance(exc, EventStreamError):
            raise
        raise EventStreamError(f"unknown header type: {exc}") from None
    if pos != end:
        raise EventStreamError("header value runs past the header block")
    return out


class Decoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get back the messages they complete. A CRC mismatch or an
    impossible length raises EventStreamError (the stream cannot be resynchronised after that)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole message yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= PRELUDE_BYTES:
            total, hlen = _PRELUDE.unpack_from(self._buf, 0)
            (prelude_crc,) = _U32.unpack_from(self._buf, 8)
            if zlib.crc32(self._buf[:8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if hlen > MAX_HEADERS_BYTES or total < _MIN_MESSAGE + hlen:
                raise EventStreamError(f"impossible lengths: total {total}, headers {hlen}")
            if total - _MIN_MESSAGE - hlen > MAX_PAYLOAD_BYTES:
                raise EventStreamError(f"payload of {total - _MIN_MESSAGE - hlen} bytes (at most {MAX_PAYLOAD_BYTES})")
            if len(self._buf) < total:
                break
            msg = bytes(self._buf[:total])
            del self._buf[:total]
            (crc,) = _U32.unpack_from(msg, total - 4)
            if zlib.crc32(msg[: total - 4]) != crc:
                raise EventStreamError("message CRC mismatch")
            headers = _decode_headers(msg[PRELUDE_BYTES : PRELUDE_BYTES + hlen])
            out.append(Message(headers, msg[PRELUDE_BYTES + hlen : total - 4]))
        return out


def decode_all(data: bytes | Sequence[bytes]) -> list[Message]:
    """Every message of a complete body (or of its chunks); raises EventStreamError on a partial message at the end."""
    dec = Decoder()
    out: list[Message] = []
    for part in [data] if isinstance(data, bytes) else data:
        out += dec.feed(part)
    if dec.pending:
        raise EventStreamError(f"{dec.pending} bytes after the last whole message")
    return out
