"""The compiled record decoder (``storage/_speedups.c``) against the Python reference it replaces.

Both are given the same frames, positions and limits; the records they append, what they return and the exceptions
they raise must be identical. CI builds the extension and sets SHARDLINE_REQUIRE_SPEEDUPS=1, so a build that
silently failed there is a test failure rather than a skipped suite."""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.engine import sequence
from shardline.models import Record
from shardline.storage import framing
from shardline.storage.framing import StoredRecord, encode_frame_body, parse_header

try:
    from shardline.storage import _speedups
except ImportError:  # no C compiler where this was installed: the Python decoder is all there is
    _speedups = None  # type: ignore[assignment]
else:  # (framing configures it only when it uses it: not under SHARDLINE_PURE_PYTHON=1)
    _speedups.configure(Record, StoredRecord, framing._py_decode_into)

_REC = struct.Struct(">IIHBI")


class _Three(NamedTuple):
    a: int
    b: int
    c: int


def test_built_where_required() -> None:
    if os.environ.get("SHARDLINE_REQUIRE_SPEEDUPS") == "1":
        assert _speedups is not None, "the C extension was not built (is a C compiler installed?)"
        # (CI's pure-Python leg sets SHARDLINE_PURE_PYTHON=1 too: built, but the Python decoder runs)
        assert framing.ACCELERATED is (os.environ.get("SHARDLINE_PURE_PYTHON", "") in ("", "0"))


pytestmark_c = pytest.mark.skipif(_speedups is None, reason="the C extension is not built here")


def frame_of(base: int, first_ms: int, records: list[tuple[int, str, str, bytes]]) -> bytes:
    """A frame of (arrival delta, partition key, explicit hash key or "", data) records."""
    body = b"".join(
        _REC.pack(i, adelta, len(pk.encode()), len(ehk), len(data)) + pk.encode() + ehk.encode() + data
        for i, (adelta, pk, ehk, data) in enumerate(records)
    )
    newest = first_ms + max(r[0] for r in records)
    return encode_frame_body(base, len(records), first_ms, newest, body)


def both(*args: Any, out: list[Any] | None = None) -> tuple[Any, Any]:
    """Run the Python and the compiled decoder on copies of ``out``: (python's (out, result), C's (out, result))."""
    results = []
    for fn in (framing._py_decode_into, _speedups.decode_into):
        dest = list(out or [])
        try:
            res: Any = fn(dest, *args)
        except Exception as exc:  # the same exception type and message is part of the contract
            res = (type(exc), str(exc))
        results.append((dest, res))
    return results[0], results[1]


record = st.tuples(
    st.integers(0, 2**32 - 1),
    st.text(min_size=1, max_size=12),
    st.one_of(st.just(""), st.integers(0, 2**128 - 1).map(str)),
    st.binary(max_size=40),
)


@pytestmark_c
@settings(max_examples=400, deadline=None)
@given(
    base=st.one_of(st.integers(0, 2**40), st.integers(2**63 - 2**33, 2**64 - 1 - 2**32)),
    first_ms=st.one_of(st.integers(0, 2**42), st.integers(2**63 - 2**33, 2**64 - 1 - 2**32)),
    records=st.lists(record, min_size=1, max_size=30),
    prefix=st.binary(max_size=20),
    start_at=st.integers(-3, 35),
    stop_at=st.integers(-3, 35),
    max_records=st.integers(0, 40),
    max_bytes=st.one_of(st.integers(0, 400), st.just(1 << 62)),
    id_base=st.one_of(
        st.none(),
        st.builds(sequence.prefix, st.integers(0, 2**36 - 1), st.integers(0, 2**32 - 1)),
        st.integers(0, 10**45),
    ),
    encryption=st.sampled_from([None, "KMS"]),
    already=st.integers(0, 3),
)
def test_same_as_python(
    *,
    base: int,
    first_ms: int,
    records: list[tuple[int, str, str, bytes]],
    prefix: bytes,
    start_at: int,
    stop_at: int,
    max_records: int,
    max_bytes: int,
    id_base: int | None,
    encryption: str | None,
    already: int,
) -> None:
    buf = prefix + frame_of(base, first_ms, records) + b"tail"
    header = parse_header(buf, len(prefix))
    out = [StoredRecord(-1, 0, "earlier", None, b"")] * already
    args = (buf, len(prefix), header, base + start_at, base + stop_at, max_records, max_bytes, id_base, encryption)
    py, c = both(*args, out=out)
    assert c == py
    assert [type(r) for r in c[0]] == [type(r) for r in py[0]]


@pytestmark_c
def test_sequence_numbers_across_a_carry() -> None:
    """Consecutive offsets count up in place, including when a carry runs over every digit."""
    records = [(0, f"k{i}", "", bytes([i])) for i in range(40)]
    buf = frame_of(0, 1_000, records)
    header = parse_header(buf)
    for id_base in (10**40 - 7, 10**41 - 20, 999, 0, sequence.prefix(12345, 7)):
        py, c = both(buf, 0, header, 0, 40, 100, 1 << 62, id_base, None)
        assert c == py
        assert [r.sequence_number for r in c[0]] == [str(id_base + i) for i in range(40)]
        assert all(type(r) is Record for r in c[0])


@pytestmark_c
def test_records_past_the_buffer_go_to_python() -> None:
    """A frame cut short (it never passes a CRC check, but decode_records can be handed one) behaves as in Python."""
    buf = frame_of(5, 0, [(0, "key", "", b"x" * 30), (1, "key2", "", b"y" * 30)])
    header = parse_header(buf)
    for cut in (len(buf) - 10, len(buf) - 40, 40, 37):
        py, c = both(buf[:cut], 0, header, 0, 10, 10, 1 << 62, None, None)
        assert c == py


@pytestmark_c
def test_bad_utf8_key_raises_as_in_python() -> None:
    body = _REC.pack(0, 0, 2, 0, 1) + b"ok" + b"d" + _REC.pack(1, 0, 2, 0, 1) + b"\xff\xfe" + b"d"
    buf = encode_frame_body(0, 2, 0, 0, body)
    for id_base in (None, 10**40):
        py, c = both(buf, 0, parse_header(buf), 0, 2, 5, 1 << 62, id_base, None)
        assert c == py
        assert c[1][0] is UnicodeDecodeError
        assert len(c[0]) == 1  # the record before the bad one is kept, as in Python


@pytestmark_c
def test_unusual_arguments_go_to_python() -> None:
    """A memoryview buffer and limits past 64 bits take the reference path."""
    buf = frame_of(3, 10, [(0, "a", "", b"1"), (2, "b", "9", b"2")])
    header = parse_header(buf)
    py, c = both(memoryview(buf), 0, header, 0, 10, 10, 1 << 62, None, None)
    assert c == py
    py, c = both(buf, 0, header, 0, 2**70, 10, 2**70, 7, "KMS")
    assert c == py
    assert [r.sequence_number for r in c[0]] == ["10", "11"]


@pytestmark_c
def test_no_references_leak() -> None:
    buf = frame_of(0, 0, [(i, f"key-{i}", "", b"payload") for i in range(50)])
    header = parse_header(buf)
    encryption = "".join(["K", "MS"])  # an object of its own, so its count is ours to watch
    id_base = sequence.prefix(99, 3)
    before = (sys.getrefcount(buf), sys.getrefcount(encryption), sys.getrefcount(id_base), sys.getrefcount(header))
    for _ in range(200):
        out: list[Any] = []
        _speedups.decode_into(out, buf, 0, header, 0, 50, 50, 1 << 62, id_base, encryption)
        assert len(out) == 50
        del out
    after = (sys.getrefcount(buf), sys.getrefcount(encryption), sys.getrefcount(id_base), sys.getrefcount(header))
    assert after == before


@pytestmark_c
def test_configure_checks_the_record_types() -> None:
    with pytest.raises(TypeError, match="tuple subclass"):
        _speedups.configure(dict, StoredRecord, framing._py_decode_into)
    with pytest.raises(TypeError, match="must have 5 fields"):
        _speedups.configure(_Three, StoredRecord, framing._py_decode_into)
    with pytest.raises(TypeError, match="callable"):
        _speedups.configure(Record, StoredRecord, None)  # type: ignore[arg-type]


def test_pure_python_switch() -> None:
    """SHARDLINE_PURE_PYTHON=1 keeps the Python decoder, and the engine reads the same records through it."""
    code = (
        "import asyncio, tempfile\n"
        "from shardline import Engine, Settings\n"
        "from shardline.storage import framing\n"
        "async def main():\n"
        "    async with Engine(Settings(data_dir=tempfile.mkdtemp(), fsync='never')) as eng:\n"
        "        await eng.create_stream('s', 1)\n"
        "        await eng.put_records([(bytes([i]) * 3, f'k{i}') for i in range(20)], stream_name='s')\n"
        "        sh = (await eng.list_shards('s')).shards[0].shard_id\n"
        "        it = await eng.get_shard_iterator(stream_name='s', shard_id=sh, shard_iterator_type='TRIM_HORIZON')\n"
        "        res = await eng.get_records(it, limit=7)\n"
        "        print(framing.ACCELERATED, [(r.partition_key, r.data) for r in res.records])\n"
        "asyncio.run(main())\n"
    )
    outputs = {}
    for flag in ("1", "0"):
        env = {**os.environ, "SHARDLINE_PURE_PYTHON": flag}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs[flag] = proc.stdout.split(" ", 1)
    assert outputs["1"][0] == "False"
    assert outputs["0"][0] == str(_speedups is not None)
    assert outputs["1"][1] == outputs["0"][1]
    assert "('k6', b'\\x06\\x06\\x06')" in outputs["1"][1]


@pytestmark_c
def test_ordinary_frames_are_decoded_in_c() -> None:
    """The comparisons above would pass if everything went to Python: check that ordinary frames do not."""

    def refuse(*args: Any) -> tuple[int, int, bool]:
        raise AssertionError("handed to the Python decoder")

    buf = frame_of(10**12, 1_700_000_000_000, [(i, f"k{i}", "5" * (i % 3), b"d" * i) for i in range(30)])
    header = parse_header(buf)
    _speedups.configure(Record, StoredRecord, refuse)
    try:
        for id_base in (None, sequence.prefix(1, 2)):
            out: list[Any] = []
            used, nxt, full = _speedups.decode_into(
                out, buf, 0, header, 10**12 + 3, 10**12 + 20, 10, 1 << 62, id_base, None
            )
            assert (len(out), nxt, full) == (10, 10**12 + 13, True)
            assert used == sum(len(f"k{i}") + i for i in range(3, 13))
    finally:
        _speedups.configure(Record, StoredRecord, framing._py_decode_into)


@pytestmark_c
def test_records_stay_out_of_the_cyclic_gc() -> None:
    """Records of atomic fields cannot form cycles, so the decoder untracks them (GC passes do not walk every record
    a consumer holds); a record holding a container (only possible through an odd ``encryption``) stays tracked."""
    buf = frame_of(0, 0, [(0, "a", "", b"1"), (1, "b", "7", b"2")])
    header = parse_header(buf)
    for id_base, encryption in ((None, None), (5, None), (5, "KMS")):
        out: list[Any] = []
        _speedups.decode_into(out, buf, 0, header, 0, 2, 10, 1 << 62, id_base, encryption)
        assert [gc.is_tracked(r) for r in out] == [False, False]
    odd: list[Any] = []
    _speedups.decode_into(odd, buf, 0, header, 0, 2, 10, 1 << 62, 5, ["container"])  # type: ignore[arg-type]
    assert all(gc.is_tracked(r) for r in odd)
