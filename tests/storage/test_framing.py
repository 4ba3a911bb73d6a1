"""Batch frames: round trip, partial decode, header validation, CRC coverage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.storage.framing import (
    HEADER_SIZE,
    MAGIC,
    FrameError,
    check_crc,
    decode_records,
    encode_frame,
    parse_header,
)

from ._util import expected

record = st.tuples(
    st.text(min_size=1, max_size=20).map(str.encode),
    st.one_of(st.just(b""), st.integers(0, 2**128 - 1).map(lambda n: str(n).encode())),
    st.binary(max_size=200),
)
batches = st.lists(record, min_size=1, max_size=20)
offsets = st.integers(0, 2**63 - 1 - 100)
arrivals = st.integers(0, 2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(base=offsets, arrival=arrivals, batch=batches, prefix=st.binary(max_size=50), suffix=st.binary(max_size=50))
def test_round_trip(
    base: int, arrival: int, batch: list[tuple[bytes, bytes, bytes]], prefix: bytes, suffix: bytes
) -> None:
    frame = encode_frame(base, arrival, batch)
    # Frames are read out of larger buffers, at any position.
    buf = prefix + frame + suffix
    h = parse_header(buf, len(prefix))
    assert h.base_offset == base
    assert h.total_size == len(frame)
    assert h.record_count == len(batch)
    assert h.end_offset == base + len(batch)
    assert h.first_arrival_ms == h.max_arrival_ms == arrival
    assert check_crc(buf, len(prefix), h)
    assert check_crc(memoryview(buf), len(prefix), h)
    assert decode_records(buf, len(prefix), h) == expected(base, arrival, batch)


@settings(max_examples=100, deadline=None)
@given(base=offsets, batch=batches, data=st.data())
def test_decode_from_offset(base: int, batch: list[tuple[bytes, bytes, bytes]], data: st.DataObject) -> None:
    frame = encode_frame(base, 5, batch)
    h = parse_header(frame)
    start = data.draw(st.integers(base - 3, base + len(batch) + 3))
    want = [r for r in expected(base, 5, batch) if r.offset >= start]
    assert decode_records(frame, 0, h, start) == want


def test_header_layout_is_37_bytes_big_endian() -> None:
    frame = encode_frame(0x0102030405060708, 99, [(b"k", b"", b"v")])
    assert HEADER_SIZE == 37
    assert frame[:8] == bytes(range(1, 9))
    (length,) = struct.unpack(">I", frame[8:12])
    assert length == len(frame) - 12
    assert frame[12] == MAGIC


def _frame() -> bytes:
    return encode_frame(7, 1000, [(b"a", b"", b"xyz"), (b"b", b"123", b"")])


@pytest.mark.parametrize("magic", [0, 2, 0xFF])
def test_parse_header_rejects_unknown_magic(magic: int) -> None:
    raw = bytearray(_frame())
    raw[12] = magic
    with pytest.raises(FrameError, match="magic"):
        parse_header(bytes(raw))


@pytest.mark.parametrize(
    "length",
    [
        0,  # shorter than the header itself
        HEADER_SIZE - 13,
        (1 << 31) - 11,  # more than any frame may hold
        0xFFFFFFFF,
    ],
)
def test_parse_header_rejects_impossible_length(length: int) -> None:
    raw = bytearray(_frame())
    raw[8:12] = struct.pack(">I", length)
    with pytest.raises(FrameError, match="impossible"):
        parse_header(bytes(raw))


def test_parse_header_accepts_the_extreme_possible_lengths() -> None:
    raw = bytearray(_frame())
    raw[8:12] = struct.pack(">I", HEADER_SIZE - 12)
    assert parse_header(bytes(raw)).total_size == HEADER_SIZE
    raw[8:12] = struct.pack(">I", (1 << 31) - 12)
    assert parse_header(bytes(raw)).total_size == 1 << 31


def test_parse_header_rejects_zero_records() -> None:
    raw = bytearray(_frame())
    raw[17:21] = struct.pack(">I", 0)
    with pytest.raises(FrameError):
        parse_header(bytes(raw))


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1])
def test_parse_header_rejects_short_buffer(cut: int) -> None:
    with pytest.raises(FrameError, match="short"):
        parse_header(_frame()[:cut])
    with pytest.raises(FrameError, match="short"):
        parse_header(_frame(), len(_frame()) - cut)


def test_check_crc_false_for_a_cut_frame() -> None:
    frame = _frame()
    h = parse_header(frame)
    assert not check_crc(frame[:-1], 0, h)


@settings(max_examples=300, deadline=None)
@given(base=offsets, batch=batches, data=st.data())
def test_any_flipped_byte_after_the_base_offset_is_detected(
    base: int, batch: list[tuple[bytes, bytes, bytes]], data: st.DataObject
) -> None:
    # The base offset is outside the CRC (it is checked against the expected offset by recovery); every byte after
    # it (length, magic, crc, count, times, records) must make the frame untrustworthy on its own.
    frame = encode_frame(base, 123456, batch)
    following = encode_frame(base + len(batch), 123457, batch)
    pos = data.draw(st.integers(8, len(frame) - 1))
    mask = data.draw(st.integers(1, 255))
    raw = bytearray(frame + following)
    raw[pos] ^= mask
    buf = bytes(raw)
    try:
        h = parse_header(buf)
    except FrameError:
        return
    assert not check_crc(buf, 0, h)
    assert not check_crc(buf[: len(frame)], 0, h)
