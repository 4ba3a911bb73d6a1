"""The compiled stage table (``storage/_stagetable.c``) against the Python reference (``staging.PyStageTable``).

Both get the same random sequences of calls; every result, every exception (type and message) and the whole
observable state of every slot after each call must be the same. The reference is also checked on its own against
what a staged batch must be: records that decode as a frame with dense offset deltas."""

from __future__ import annotations

import errno
import gc
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.storage import staging
from shardline.storage.framing import check_crc, decode_records, encode_frame_body, parse_header
from shardline.storage.staging import PyStageTable

from ._util import file_size_limit

try:
    from shardline.storage import _stagetable
except ImportError:  # no C compiler where this was installed: the reference is all there is
    _stagetable = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_stagetable is None, reason="the C extension is not built here")
FULL_AT = 4
SLOTS = 4


def test_built_where_required() -> None:
    if os.environ.get("SHARDLINE_REQUIRE_SPEEDUPS") == "1":
        assert _stagetable is not None, "the C extension was not built (is a C compiler installed?)"
        # (CI's pure-Python leg sets SHARDLINE_PURE_PYTHON=1 too: built, but the reference runs)
        compiled = os.environ.get("SHARDLINE_PURE_PYTHON", "") in ("", "0")
        assert staging.ACCELERATED is compiled
        assert cast(object, staging.StageTable) is (_stagetable.StageTable if compiled else staging.PyStageTable)


def test_the_reference_is_kept_under_pure_python() -> None:
    code = "from shardline.storage import staging; print(staging.ACCELERATED, staging.StageTable.__name__)"
    env = {**os.environ, "SHARDLINE_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "PyStageTable"]


def tables() -> list[Any]:
    kinds: list[Any] = [PyStageTable]
    if _stagetable is not None:
        kinds.append(_stagetable.StageTable)
    return kinds


class Result(NamedTuple):
    name: str | None
    id: str | None
    error: str | None = None


def snapshot(t: Any) -> list[tuple[Any, ...]]:
    return [
        (
            t.count(s),
            t.nbytes(s),
            t.base(s),
            t.next_offset(s),
            t.first(s),
            t.newest(s),
            t.put_bytes(s),
            t.records(s),
            t.body(s),
        )
        for s in range(len(t))
    ]


def outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except Exception as exc:  # the same exception type and message is part of the contract
        return ("raised", type(exc).__name__, str(exc))


class Owner:
    """What the journal does in the callbacks: write a slot's batch on on_span, refuse closed slots on on_first."""

    def __init__(self, table: Any, closed: frozenset[int]) -> None:
        self.table = table
        self.closed = closed
        self.calls: list[tuple[str, int]] = []

    def on_span(self, slot: int) -> None:
        self.calls.append(("span", slot))
        self.table.consume(slot, self.table.count(slot))

    def on_first(self, slot: int) -> None:
        self.calls.append(("first", slot))
        if slot in self.closed:
            raise RuntimeError(f"slot {slot} has no open log")


entry = st.tuples(
    st.integers(0, SLOTS - 1),
    st.binary(min_size=1, max_size=6),
    st.sampled_from([b"", b"12345"]),
    st.binary(max_size=20),
)
# Now and then a bad entry: which record's error the tables raise (the first bad one) must agree too.
bad_entry = st.one_of(
    st.tuples(st.sampled_from([-1, SLOTS + 3]), st.just(b"k"), st.just(b""), st.just(b"")),
    st.tuples(st.integers(0, SLOTS - 1), st.just("k"), st.just(b""), st.just(b"")),
    st.tuples(st.integers(0, SLOTS - 1), st.just(b"k"), st.just(b"9" * 256), st.just(b"")),
)
plan = st.one_of(
    st.lists(entry, max_size=9),
    st.lists(entry, max_size=9),
    st.lists(entry, max_size=9),
    st.lists(st.one_of(entry, bad_entry), min_size=1, max_size=4),
)
op = st.one_of(
    st.tuples(
        st.just("stage"),
        st.integers(0, 3_000),  # now
        st.sampled_from([0, 5, 1_000]),  # span
        plan,
        st.frozensets(st.integers(0, SLOTS - 1), max_size=1),  # closed slots
        st.booleans(),  # results
    ),
    st.tuples(
        st.just("name"),
        st.integers(0, SLOTS - 1),
        st.sampled_from(["shardId-000000000001", "s", "é", "x" * 21, "x" * 22]),
        st.sampled_from([0, 1, 9, 10**40 * 2 + 10**19 - 1, 10**41 - 1, 10**41, -1]),
    ),
    st.tuples(st.just("consume"), st.integers(0, SLOTS), st.integers(-1, 6)),
    st.tuples(st.just("drop_last"), st.integers(0, SLOTS - 1), st.integers(-1, 6)),
    st.tuples(st.just("set_base"), st.integers(-1, SLOTS - 1), st.integers(-1, 2**40)),
    st.tuples(st.just("set_newest"), st.integers(0, SLOTS - 1), st.integers(-1, 5_000)),
    st.tuples(st.just("reset"), st.integers(0, SLOTS - 1)),
    st.tuples(st.just("grow"), st.integers(0, SLOTS + 2)),
    st.tuples(st.just("view"), st.integers(0, SLOTS)),
    st.tuples(st.just("frame_header"), st.integers(0, SLOTS), st.integers(0, 5), st.sampled_from([0, 40, 10**6])),
    st.tuples(
        st.just("write_frames"),
        st.one_of(
            st.lists(st.integers(0, SLOTS - 1), unique=True, min_size=1, max_size=SLOTS),
            st.lists(st.integers(-1, SLOTS), max_size=3),  # (out of range, or twice)
        ),
        st.sampled_from([0, 5, 1_000]),
        st.sampled_from([0, 40, 10**6]),
    ),
)


def write_frames(t: Any, directory: Path, slots: list[int], max_records: int, max_bytes: int) -> Any:
    """write_frames to one file per slot in ``directory``: the result, and what each file then holds."""
    fds = {slot: os.open(directory / f"slot{slot}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for slot in slots}
    try:
        jobs = [(slot, fds[slot], os.fstat(fds[slot]).st_size) for slot in slots]
        res = outcome(lambda: t.write_frames(jobs, max_records, max_bytes))
    finally:
        for fd in fds.values():
            os.close(fd)
    return res, {slot: (directory / f"slot{slot}").read_bytes() for slot in slots}


def apply(t: Any, step: tuple[Any, ...], directory: Path | None = None) -> Any:
    name = step[0]
    if name == "write_frames":
        assert directory is not None
        return write_frames(t, directory, *step[1:])
    if name == "stage":
        _, now, span, plan, closed, results = step
        owner = Owner(t, closed)
        full: list[int] = []
        res = outcome(lambda: t.stage(now, span, plan, owner.on_span, owner.on_first, full, results))
        return res, owner.calls, full
    if name == "view":

        def viewed() -> tuple[bytes, bool]:
            with t.view(step[1]) as view:
                return bytes(view), view.readonly

        return outcome(viewed)
    return outcome(lambda: getattr(t, name)(*step[1:]))


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=25))
def test_the_compiled_table_does_what_the_reference_does(steps: list[tuple[Any, ...]]) -> None:
    py, c = PyStageTable(FULL_AT, Result), _stagetable.StageTable(FULL_AT, Result)
    py.grow(SLOTS)
    c.grow(SLOTS)
    for t in (py, c):
        t.name(0, "zero", 2 * 10**40)
    with tempfile.TemporaryDirectory() as tmp:  # (files for write_frames, one set per table)
        (Path(tmp) / "py").mkdir()
        (Path(tmp) / "c").mkdir()
        for step in steps:
            assert apply(c, step, Path(tmp) / "c") == apply(py, step, Path(tmp) / "py"), step
            assert snapshot(c) == snapshot(py), step
            assert 0 <= c.idle_bytes <= _stagetable.IDLE_BUDGET
    for slot in range(len(c)):  # a buffer counted as kept is exactly one held by a slot without records
        c.reset(slot)
    assert c.idle_bytes == 0


frames_op = st.one_of(
    st.tuples(
        st.just("stage"),
        st.integers(0, 3_000),
        st.just(1_000),
        st.lists(entry, max_size=9),
        st.just(frozenset()),
        st.just(False),
    ),
    st.tuples(
        st.just("write_frames"),
        st.lists(st.integers(0, SLOTS - 1), unique=True, min_size=1),
        st.sampled_from([1, 5, 1_000]),
        st.sampled_from([40, 10**6]),
    ),
    st.tuples(st.just("consume"), st.integers(0, SLOTS - 1), st.integers(0, 3)),
)


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.lists(frames_op, min_size=1, max_size=20))
def test_write_frames_writes_what_the_reference_writes(steps: list[tuple[Any, ...]]) -> None:
    """Frames written without the GIL (the compiled write_frames, with its own CRC) are byte for byte the
    reference's, and every frame in the files checks."""
    py, c = PyStageTable(FULL_AT, Result), _stagetable.StageTable(FULL_AT, Result)
    with tempfile.TemporaryDirectory() as tmp:
        for t, name in ((py, "py"), (c, "c")):
            t.grow(SLOTS)
            (Path(tmp) / name).mkdir()
        for step in steps:
            assert apply(c, step, Path(tmp) / "c") == apply(py, step, Path(tmp) / "py"), step
            assert snapshot(c) == snapshot(py), step
        for path in (Path(tmp) / "c").iterdir():
            data, pos = path.read_bytes(), 0
            while pos < len(data):
                head = parse_header(data, pos)
                assert check_crc(data, pos, head)
                pos += head.total_size


@pytest.mark.parametrize("kind", tables())
def test_a_staged_batch_is_a_frame_body_with_dense_offsets(kind: Any) -> None:
    t = kind(FULL_AT)
    t.grow(2)
    t.set_base(1, 40)
    plan = [(1, b"k1", b"", b"a"), (0, b"k2", b"77", b"b"), (1, b"k3", b"", b"c"), (1, b"k4", b"", b"d")]
    body, offsets, made = t.stage(1_000, 500, plan, lambda s: None, lambda s: None, [], False)
    assert offsets == [40, 0, 41, 42] and made is None
    later, more, _ = t.stage(1_250, 500, [(1, b"k5", b"", b"e")], lambda s: None, lambda s: None, [], False)
    assert more == [43]
    assert later == struct.pack(">IQIIHBI", 1, 43, 3, 250, 2, 0, 1) + b"k5e"  # shard, offset, then as a segment
    assert len(body) == sum(12 + 15 + len(pk) + len(ehk) + len(d) for _, pk, ehk, d in plan)
    assert (t.first(1), t.newest(1), t.count(1)) == (1_000, 1_250, 4)

    def frame_of(slot: int) -> list[Any]:
        frame = encode_frame_body(t.base(slot), t.count(slot), t.first(slot), t.newest(slot), t.body(slot))
        return list(decode_records(frame, 0, parse_header(frame), 0))

    recs = frame_of(1)
    assert [(r.offset, r.arrival_ms, r.partition_key, r.data) for r in recs] == [
        (40, 1_000, "k1", b"a"),
        (41, 1_000, "k3", b"c"),
        (42, 1_000, "k4", b"d"),
        (43, 1_250, "k5", b"e"),
    ]
    t.consume(1, 3)  # the rest counts its offset deltas from the new base
    assert [(r.offset, r.arrival_ms, r.data) for r in frame_of(1)] == [(43, 1_250, b"e")]
    assert [(r.offset, r.explicit_hash_key, r.data) for r in frame_of(0)] == [(0, "77", b"b")]


@pytest.mark.parametrize("kind", tables())
def test_results_name_each_record_by_its_slot_and_offset(kind: Any) -> None:
    t = kind(FULL_AT, Result)
    t.grow(3)
    prefix = 2 * 10**40 + 5 * 10**30
    t.name(1, "shardId-000000000001", prefix)
    t.name(2, "two", 10**19 - 2)  # sums that carry into new digits
    t.set_base(1, 2**62)
    plan = [(1, b"key", b"", b"data"), (2, b"k", b"", b""), (2, b"k", b"", b"x"), (1, b"k", b"9", b"")]
    _, offsets, made = t.stage(7, 10, plan, lambda s: None, lambda s: None, [], True)
    assert offsets == [2**62, 0, 1, 2**62 + 1]
    assert made == [
        Result("shardId-000000000001", str(prefix + 2**62)),
        Result("two", "9999999999999999998"),
        Result("two", "9999999999999999999"),
        Result("shardId-000000000001", str(prefix + 2**62 + 1)),
    ]
    assert [type(r) for r in made] == [Result] * 4
    assert (t.put_bytes(1), t.put_bytes(2)) == (8, 3)  # key + data, never the explicit hash key
    assert t.stage(8, 10, [(1, b"k", b"", b"")], lambda s: None, lambda s: None, [], False)[2] is None
    with pytest.raises(ValueError, match="slot 0 has no name"):
        t.stage(8, 10, [(1, b"k", b"", b""), (0, b"k", b"", b"")], lambda s: None, lambda s: None, [], True)
    t.drop_last(2, 1)
    assert t.put_bytes(2) == 1 and t.count(2) == 1
    assert kind(FULL_AT).stage(1, 1, [], lambda s: None, lambda s: None, [], True)[2] is None  # no entry type
    with pytest.raises(TypeError):
        kind(FULL_AT, dict)


@needs_c
def test_compiled_results_stay_out_of_the_cyclic_gc() -> None:
    t = _stagetable.StageTable(FULL_AT, Result)
    t.grow(1)
    t.name(0, "s", 0)
    _, _, made = t.stage(1, 1, [(0, b"k", b"", b"")], lambda s: None, lambda s: None, [], True)
    assert made is not None
    assert not gc.is_tracked(made[0]) and made[0].error is None


@pytest.mark.parametrize("kind", tables())
def test_a_failed_stage_leaves_every_slot_as_it_was(kind: Any) -> None:
    t = kind(FULL_AT)
    t.grow(3)
    t.stage(100, 1_000, [(0, b"k", b"", b"old")], lambda s: None, lambda s: None, [], False)
    before = snapshot(t)

    def refuse_2(slot: int) -> None:
        if slot == 2:
            raise RuntimeError("no open log")

    plan = [(0, b"k", b"", b"x"), (1, b"k", b"", b"y"), (0, b"k", b"", b"z"), (2, b"k", b"", b"w")]
    with pytest.raises(RuntimeError, match="no open log"):
        t.stage(900, 1_000, plan, lambda s: None, refuse_2, [], False)
    assert snapshot(t) == before
    for bad, exc in (
        ([(0, b"k", b"", "text")], TypeError),
        ([(3, b"k", b"", b"x")], IndexError),
        ([(0, b"k" * 70_000, b"", b"x")], ValueError),
        ([(0, b"k", b"")], (TypeError, ValueError)),
    ):
        with pytest.raises(exc):
            t.stage(900, 1_000, [(1, b"k", b"", b"fine"), *bad], lambda s: None, lambda s: None, [], False)
        assert snapshot(t) == before


@pytest.mark.parametrize("kind", tables())
def test_full_batches_and_old_batches_are_reported(kind: Any) -> None:
    t = kind(3)
    t.grow(2)
    full: list[int] = []
    spans: list[int] = []

    def on_span(slot: int) -> None:
        spans.append(slot)
        t.consume(slot, t.count(slot))

    plan = [(0, b"k", b"", b"%d" % i) for i in range(7)] + [(1, b"k", b"", b"x")]
    t.stage(10, 100, plan, on_span, lambda s: None, full, False)
    assert full == [0] and spans == []  # once, at its 3rd record (the owner writes it then)
    t.stage(200, 100, [(0, b"k", b"", b"late"), (1, b"k", b"", b"late")], on_span, lambda s: None, full, False)
    assert spans == [0, 1]  # 190 ms after each batch began: written before the record is staged
    assert [(t.base(s), t.count(s), t.first(s)) for s in (0, 1)] == [(7, 1, 200), (1, 1, 200)]


@pytest.mark.parametrize("kind", tables())
def test_a_stepped_back_clock_never_puts_a_record_before_its_batch(kind: Any) -> None:
    t = kind(FULL_AT)
    t.grow(1)
    t.stage(5_000, 1_000, [(0, b"k", b"", b"a")], lambda s: None, lambda s: None, [], False)
    t.stage(4_000, 1_000, [(0, b"k", b"", b"b")], lambda s: None, lambda s: None, [], False)
    frame = encode_frame_body(t.base(0), t.count(0), t.first(0), t.newest(0), t.body(0))
    assert [r.arrival_ms for r in decode_records(frame, 0, parse_header(frame), 0)] == [5_000, 5_000]
    t.drop_last(0, 1)
    assert (t.count(0), t.newest(0)) == (1, 5_000)


@needs_c
def test_no_record_moves_while_a_view_of_them_is_held() -> None:
    t = _stagetable.StageTable(FULL_AT)
    t.grow(2)
    t.stage(1, 10, [(0, b"k", b"", b"abc")], lambda s: None, lambda s: None, [], False)
    view = t.view(0)
    assert bytes(view) == t.body(0) and view.readonly
    for change in (
        lambda: t.stage(2, 10, [(1, b"k", b"", b"x")], lambda s: None, lambda s: None, [], False),
        lambda: t.consume(0, 1),
        lambda: t.drop_last(0, 1),
        lambda: t.reset(0),
    ):
        with pytest.raises(BufferError, match="still held"):
            change()
    assert (t.count(0), t.count(1), bytes(view)) == (1, 0, t.body(0))
    view.release()
    t.consume(0, 1)
    assert t.count(0) == 0 and bytes(t.view(0)) == b""
    with pytest.raises(BufferError, match="view"):
        memoryview(t)  # type: ignore[arg-type]  # only through view(slot)


@needs_c
def test_buffers_kept_for_the_next_batch_stay_within_a_budget() -> None:
    slots = 2 * _stagetable.IDLE_BUDGET // 100_000
    t = _stagetable.StageTable(FULL_AT)
    t.grow(slots)
    plan = [(s, b"k", b"", bytes(100_000)) for s in range(slots)]
    t.stage(1, 10, plan, lambda s: None, lambda s: None, [], False)
    big = [(0, b"k", b"", bytes(_stagetable.KEEP_BYTES))]
    t.stage(2, 10, big, lambda s: None, lambda s: None, [], False)
    assert t.idle_bytes == 0  # every buffer holds records
    for s in range(slots):
        t.consume(s, t.count(s))
    assert 0 < t.idle_bytes <= _stagetable.IDLE_BUDGET  # some kept, the rest (and the oversized one) freed
    kept = t.idle_bytes
    t.stage(3, 10, plan[:3], lambda s: None, lambda s: None, [], False)  # reuses kept buffers (or makes new ones)
    assert t.idle_bytes <= kept
    for s in range(slots):
        t.drop_last(s, t.count(s))
    for s in range(slots):
        t.reset(s)
    assert t.idle_bytes == 0


@needs_c
def test_the_compiled_table_holds_no_reference_to_what_it_staged() -> None:
    t = _stagetable.StageTable(FULL_AT)
    t.grow(2)
    pk, data = b"key-" + os.urandom(4), os.urandom(64)
    plan = [(0, pk, b"", data), (1, pk, b"", data)]
    before = (sys.getrefcount(pk), sys.getrefcount(data), sys.getrefcount(plan[0]))
    for _ in range(100):
        staged = t.stage(1, 10, plan, lambda s: None, lambda s: None, [], False)
        del staged
    assert (sys.getrefcount(pk), sys.getrefcount(data), sys.getrefcount(plan[0])) == before
    assert t.count(0) == 100 and t.records(0)[99].endswith(data)


@pytest.mark.parametrize("kind", tables())
def test_a_failed_frame_write_is_cut_back_and_reported(kind: Any, tmp_path: Path) -> None:
    """A write that fails part way (the file size limit here, a full disk in life) is cut back off the file, and
    the job reports the errno; one whose cut fails too reports both. Either way nothing is consumed."""
    t = kind(FULL_AT)
    t.grow(3)
    plan = [(0, b"k", b"", b"x" * 3000), (1, b"k", b"", b"small"), (2, b"k", b"", b"y")]
    t.stage(1, 10, plan, lambda s: None, lambda s: None, [], False)
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(b"z" * 1000)
    small.write_bytes(b"")
    fds = [os.open(p, os.O_WRONLY | os.O_APPEND) for p in (big, small)]
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        with file_size_limit(2048):
            res = t.write_frames([(0, fds[0], 1000), (1, fds[1], 0), (2, full, 0)], 10, 1 << 20)
    finally:
        for fd in (*fds, full):
            os.close(fd)
    assert res[0] == (errno.EFBIG, 0) and big.read_bytes() == b"z" * 1000  # part written, then cut back
    assert res[1] is not None and len(res[1]) == 6 and small.stat().st_size == res[1][5]
    assert res[2] is not None and res[2][0] == errno.ENOSPC and res[2][1] != 0  # /dev/full cannot be cut
    assert [t.count(s) for s in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("kind", tables())
def test_write_frames_checks_every_job_before_it_writes(kind: Any, tmp_path: Path) -> None:
    t = kind(FULL_AT)
    t.grow(2)
    t.stage(1, 10, [(0, b"k", b"", b"x")], lambda s: None, lambda s: None, [], False)
    path = tmp_path / "seg"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    bad: list[tuple[list[Any], type[Exception], str]] = [
        ([(0, fd, 0), (0, fd, 0)], ValueError, "slot 0 is in write_frames twice"),
        ([(0, fd, 0), (5, fd, 0)], IndexError, "stage slot 5 out of range"),
        ([(0, fd, 0), (1, 2**40, 0)], OverflowError, "fd out of range"),
        ([(0, fd, 0), (1, fd, "x")], TypeError, "cannot be interpreted as an integer"),
        ([(0, fd, 0), (1, fd)], TypeError, "a write_frames job is (slot, fd, position)"),
    ]
    try:
        for jobs, error, message in bad:
            with pytest.raises(error, match=re.escape(message)):
                t.write_frames(jobs, 10, 1 << 20)
            assert path.stat().st_size == 0  # nothing written, the good job neither
        (result,) = t.write_frames([[0, fd, 0]], 10, 1 << 20)  # (any sequence of three numbers)
        assert result is not None and path.stat().st_size == result[5]
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", tables())
def test_write_frames_reads_the_table_as_it_is_once_every_number_is_read(kind: Any, tmp_path: Path) -> None:
    """A job's numbers may run Python code (``__index__``) that changes the table: what is written is the table
    after all of them, never a buffer taken before (which that code may have freed)."""
    t = kind(FULL_AT)
    t.grow(2)
    t.stage(1, 10, [(0, b"k", b"", b"old" * 100)], lambda s: None, lambda s: None, [], False)

    class Meddling:
        def __index__(self) -> int:
            t.reset(0)
            t.grow(4)
            t.stage(2, 10, [(0, b"k", b"", b"new")], lambda s: None, lambda s: None, [], False)
            return 3

    fd = os.open(tmp_path / "seg", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        results = t.write_frames([(0, fd, 0), (Meddling(), fd, 0)], 10, 1 << 20)
    finally:
        os.close(fd)
    assert results[1] is None  # slot 3: nothing staged
    data = (tmp_path / "seg").read_bytes()
    head = parse_header(data, 0)
    assert head.total_size == len(data) and check_crc(data, 0, head)
    assert [r.data for r in decode_records(data, 0, head)] == [b"new"]


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 15), st.sampled_from([0, 1, 0xDEADBEEF, 2**32 - 1]))
def test_the_crc_of_write_frames_is_zlibs(data: bytes, skip: int, start: int) -> None:
    """Both CRCs write_frames may use (zlib's, found at import, and the table-driven one used when it is not
    found) give zlib.crc32, at every length, alignment and starting value."""
    view = memoryview(data)[min(skip, len(data)) :]
    want = zlib.crc32(view, start)
    # The C function takes any buffer (its stub says bytes).
    assert _stagetable.crc32(view, start) == want  # type: ignore[arg-type]
    assert _stagetable.crc32(view, start, True) == want  # type: ignore[arg-type]


@needs_c
def test_the_system_crc_is_found_here() -> None:
    assert _stagetable.SYSTEM_CRC32  # (zlib's library is loaded: the zlib module needs it)
