"""The event-stream framing (api/eventstream.py): exact bytes, botocore's parser as the reference, a round-trip
property over every header type, and every way a message can be damaged."""

from __future__ import annotations

import json
import struct
import uuid
import zlib

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from hypothesis import given
from hypothesis import strategies as st

from shardline.api.eventstream import (
    MAX_HEADERS_BYTES,
    MAX_PAYLOAD_BYTES,
    Decoder,
    EventStreamError,
    Header,
    HeaderType,
    HeaderValue,
    decode_all,
    encode_headers,
    encode_message,
    error_message,
    event_message,
    exception_message,
)

# The initial-response message, byte for byte (104 bytes: headers 86, payload "{}").
INITIAL_RESPONSE = bytes.fromhex(
    "00000068000000564e6817240b3a6576656e742d74797065070010696e697469616c2d726573706f6e73650d3a636f6e74656e742d"
    "747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b7dd591c62b"
)
EVENT_PAYLOAD = (
    b'{"Records":[{"SequenceNumber":"49","ApproximateArrivalTimestamp":1700000000.123,"Data":"aGk=",'
    b'"PartitionKey":"k"}],"ContinuationSequenceNumber":"49","MillisBehindLatest":0}'
)


def botocore_messages(data: bytes, step: int | None = None) -> list[tuple[dict[str, object], bytes]]:
    """(headers, payload) of every message, parsed by botocore (fed ``step`` bytes at a time)."""
    buf = EventStreamBuffer()
    out = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        buf.add_data(chunk)
        out += [(msg.headers, msg.payload) for msg in buf]
    return out


def test_initial_response_bytes() -> None:
    msg = event_message("initial-response", b"{}", "application/json")
    assert msg == INITIAL_RESPONSE
    total, headers_len, prelude_crc = struct.unpack("!III", msg[:12])
    assert (total, headers_len) == (104, 86)
    assert prelude_crc == zlib.crc32(msg[:8]) == 0x4E681724
    assert struct.unpack("!I", msg[-4:])[0] == zlib.crc32(msg[:-4]) == 0xD591C62B


def test_event_and_exception_bytes() -> None:
    ev = event_message("SubscribeToShardEvent", EVENT_PAYLOAD, "application/json")
    assert len(ev) == 279
    assert ev[:12].hex() == "000001170000005b8007cf22"
    assert ev[12:48] == b"\x0b:event-type\x07\x00\x15SubscribeToShardEvent"
    assert ev[-4:].hex() == "b1382fce"
    exc = exception_message(
        "ResourceInUseException", json.dumps({"message": "Another active subscription"}).encode(), "application/json"
    )
    assert exc[12:53] == b"\x0f:exception-type\x07\x00\x16ResourceInUseException"
    assert exc[-4:] == struct.pack("!I", zlib.crc32(exc[:-4]))


def test_botocore_reads_every_kind_of_message_whole_and_one_byte_at_a_time() -> None:
    body = b"".join(
        [
            INITIAL_RESPONSE,
            event_message("SubscribeToShardEvent", EVENT_PAYLOAD, "application/json"),
            event_message("SubscribeToShardEvent", b"\xa1gRecords\x80", "application/x-amz-cbor-1.1"),
            exception_message("ResourceNotFoundException", b'{"message":"gone"}', "application/json"),
            error_message("InternalFailure", "it broke"),
        ]
    )
    whole = botocore_messages(body)
    assert botocore_messages(body, step=1) == whole
    assert [h.get(":message-type") for h, _ in whole] == ["event", "event", "event", "exception", "error"]
    assert whole[1] == (
        {":event-type": "SubscribeToShardEvent", ":content-type": "application/json", ":message-type": "event"},
        EVENT_PAYLOAD,
    )
    assert whole[4] == (
        {":error-code": "InternalFailure", ":error-message": "it broke", ":message-type": "error"},
        b"",
    )
    ours = decode_all([body[i : i + 7] for i in range(0, len(body), 7)])
    assert [({k: h.value for k, h in m.headers.items()}, m.payload) for m in ours] == whole


def test_botocore_checks_our_crcs() -> None:
    damaged = bytearray(INITIAL_RESPONSE)
    damaged[-10] ^= 1
    with pytest.raises(ChecksumMismatch):
        botocore_messages(bytes(damaged))


# ----------------------------------------------------------------- round trip
_HEADER_VALUES: dict[HeaderType, st.SearchStrategy[HeaderValue]] = {
    HeaderType.TRUE: st.just(True),
    HeaderType.FALSE: st.just(False),
    HeaderType.BYTE: st.integers(-(2**7), 2**7 - 1),
    HeaderType.SHORT: st.integers(-(2**15), 2**15 - 1),
    HeaderType.INTEGER: st.integers(-(2**31), 2**31 - 1),
    HeaderType.LONG: st.integers(-(2**63), 2**63 - 1),
    HeaderType.BYTES: st.binary(max_size=300),
    HeaderType.STRING: st.text(max_size=100),
    HeaderType.TIMESTAMP: st.integers(-(2**63), 2**63 - 1),
    HeaderType.UUID: st.uuids(),
}
_header = st.sampled_from(list(HeaderType)).flatmap(lambda t: st.tuples(st.just(t), _HEADER_VALUES[t]))
_headers = st.dictionaries(
    st.text(min_size=1, max_size=40).filter(lambda n: len(n.encode()) <= 255), _header, max_size=8
)


@given(headers=_headers, payload=st.binary(max_size=2000), step=st.integers(1, 64))
def test_round_trip(headers: dict[str, tuple[HeaderType, HeaderValue]], payload: bytes, step: int) -> None:
    block = encode_headers([(name, kind, value) for name, (kind, value) in headers.items()])
    msg = encode_message(block, payload)
    dec = Decoder()
    got = []
    for i in range(0, len(msg), step):
        got += dec.feed(msg[i : i + step])
    assert dec.pending == 0
    assert len(got) == 1
    assert got[0].payload == payload
    assert got[0].headers == {name: Header(kind, value) for name, (kind, value) in headers.items()}
    # botocore reads the same message (it has no UUID or timestamp types of its own to compare: values only).
    [(boto_headers, boto_payload)] = botocore_messages(msg)
    assert boto_payload == payload
    assert set(boto_headers) == set(headers)


def test_header_types_follow_the_value() -> None:
    u = uuid.uuid4()
    block = encode_headers([("s", "x"), ("b", b"\x00"), ("t", True), ("f", False), ("i", 7), ("u", u)])
    [msg] = decode_all(encode_message(block, b""))
    assert {k: h.type for k, h in msg.headers.items()} == {
        "s": HeaderType.STRING,
        "b": HeaderType.BYTES,
        "t": HeaderType.TRUE,
        "f": HeaderType.FALSE,
        "i": HeaderType.LONG,
        "u": HeaderType.UUID,
    }
    assert msg.header("u") == u and msg.header("missing") is None


# ----------------------------------------------------------------- refused input
def test_the_encoder_refuses_what_clients_would_refuse() -> None:
    with pytest.raises(ValueError, match="duplicate header"):
        encode_headers([("a", "1"), ("a", "2")])
    with pytest.raises(ValueError, match="header name"):
        encode_headers([("", "1")])
    with pytest.raises(ValueError, match="header name"):
        encode_headers([("n" * 256, "1")])
    with pytest.raises(ValueError, match="65535"):
        encode_headers([("a", "x" * 70_000)])
    with pytest.raises(ValueError, match="headers of"):
        encode_headers([(f"h{i}", b"x" * 60_000) for i in range(3)])
    with pytest.raises(ValueError, match="payload of"):
        encode_message(b"", bytes(MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(TypeError):
        encode_headers([("a", HeaderType.BYTE, "not an int")])


def _reframe(prelude: bytes, rest: bytes) -> bytes:
    """A message with the given prelude (its CRC made right) and body (message CRC made right)."""
    head = prelude + struct.pack("!I", zlib.crc32(prelude))
    return head + rest + struct.pack("!I", zlib.crc32(head + rest))


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda m: m[:5] + bytes([m[5] ^ 1]) + m[6:], "prelude CRC"),
        (lambda m: m[:-6] + bytes([m[-6] ^ 1]) + m[-5:], "message CRC"),
        (lambda m: _reframe(struct.pack("!II", 16, 4), b""), "impossible lengths"),
        (lambda m: _reframe(struct.pack("!II", 16 + MAX_HEADERS_BYTES + 1, MAX_HEADERS_BYTES + 1), b""), "impossible"),
        (lambda m: _reframe(struct.pack("!II", 17 + MAX_PAYLOAD_BYTES, 0), b""), "payload of"),
        (lambda m: _reframe(struct.pack("!II", 20, 4), b"\x01a\x07\x00"), "malformed header"),
        (lambda m: _reframe(struct.pack("!II", 19, 3), b"\x01a\x0c"), "unknown header type"),
        (lambda m: _reframe(struct.pack("!II", 22, 6), b"\x01a\x00\x01a\x01"), "duplicate header"),
        (lambda m: _reframe(struct.pack("!II", 22, 6), b"\x01a\x07\x00\x05x"), "runs past"),
    ],
    ids=[
        "prelude-crc",
        "message-crc",
        "short",
        "headers-too-long",
        "payload-too-long",
        "cut-header",
        "type",
        "duplicate",
        "value-past-end",
    ],
)
def test_the_decoder_refuses_damaged_messages(damage: object, error: str) -> None:
    assert callable(damage)
    with pytest.raises(EventStreamError, match=error):
        decode_all(damage(INITIAL_RESPONSE))


def test_a_message_cut_short_is_not_a_message() -> None:
    dec = Decoder()
    assert dec.feed(INITIAL_RESPONSE[:50]) == []
    assert dec.pending == 50
    with pytest.raises(EventStreamError, match="after the last whole message"):
        decode_all(INITIAL_RESPONSE[:-1])
