"""Shard iterators: opaque, signed, self-contained tokens.

A token carries the stream (name and random tag), the shard index, the next offset and when it was issued,
signed with the data directory's secret, so it survives restarts, cannot be forged or pointed at another stream,
and needs no server-side state.

```
 base64( v(1) | shard index u32 | offset u64 | issued ms u64 | stream tag u64 | name UTF-8 | HMAC-SHA256[:16] )
```
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from hashlib import sha256
from typing import NamedTuple

__all__ = ["IteratorCodec", "IteratorPosition"]

_HEAD = struct.Struct(">BIQQQ")
_VERSION = 1
_MAC_BYTES = 16


class IteratorPosition(NamedTuple):
    stream_name: str
    stream_tag: int
    shard_index: int
    offset: int
    issued_ms: int


class IteratorCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, sha256).digest()[:_MAC_BYTES]

    def encode(self, pos: IteratorPosition) -> str:
        payload = _HEAD.pack(_VERSION, pos.shard_index, pos.offset, pos.issued_ms, pos.stream_tag)
        payload += pos.stream_name.encode()
        return base64.b64encode(payload + self.sign(payload)).decode("ascii")

    def decode(self, token: str) -> IteratorPosition | None:
        """The position a token names, or None when it is not a token this engine issued."""
        try:
            raw = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _HEAD.size + 1 + _MAC_BYTES:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self.sign(payload)):
            return None
        version, shard_index, offset, issued_ms, tag = _HEAD.unpack_from(payload, 0)
        if version != _VERSION:
            return None
        try:
            name = payload[_HEAD.size :].decode()
        except UnicodeDecodeError:
            return None
        return IteratorPosition(name, tag, shard_index, offset, issued_ms)
