"""LogTable: a stream's shard logs keep their write state in shared lists, one slot a log. A slot belongs to one
open log at a time, a log's next offset is its staged batch's base plus the batch, and closing frees the slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardline.storage.journal import Journal
from shardline.storage.log import FileCache, LogTable

from ._util import open_log, read_all


def test_logs_of_one_table_keep_separate_slots(tmp_path: Path) -> None:
    files = FileCache(8)
    table = LogTable()
    a, _ = open_log(tmp_path / "a", files, table=table, slot=0)
    b, _ = open_log(tmp_path / "b", files, table=table, slot=5)
    assert table.logs[0] is a and table.logs[5] is b and table.logs[1:5] == [None] * 4
    a.append([(b"k", b"", b"one"), (b"k", b"", b"two")], 1_000)
    b.append([(b"k", b"", b"three")], 1_000)
    assert (a.next_offset, b.next_offset) == (2, 1)
    assert [r.data for r in read_all(b)] == [b"three"]


def test_a_slot_held_by_an_open_log_cannot_be_taken(tmp_path: Path) -> None:
    files = FileCache(8)
    table = LogTable()
    a, _ = open_log(tmp_path / "a", files, table=table, slot=3)
    with pytest.raises(ValueError, match="log slot 3 is held"):
        open_log(tmp_path / "b", files, table=table, slot=3)
    with pytest.raises(ValueError, match="negative"):
        open_log(tmp_path / "c", files, table=table, slot=-1)
    a.append([(b"k", b"", b"x")], 1_000)
    a.close()  # frees the slot; the closed log's offsets stay readable
    assert table.logs[3] is None and a.next_offset == 1
    again, _ = open_log(tmp_path / "a", files, table=table, slot=3)
    assert again.next_offset == 1 and [r.data for r in read_all(again)] == [b"x"]


def test_next_offset_counts_staged_records_and_cannot_be_moved_under_them(tmp_path: Path) -> None:
    lg, _ = open_log(tmp_path / "s", FileCache(4))
    journal, _ = Journal.open(tmp_path / "journal", lambda tag, index: None, file_bytes=1 << 20, durable=False)
    lg.append([(b"k", b"", b"in a segment")], 1_000)
    assert journal.put(1, 1_001, lg.table, [(0, b"k", b"", b"a"), (0, b"k", b"", b"b")]).offsets == [1, 2]
    assert (lg.written_offset, lg.next_offset, len(lg.pending)) == (1, 3, 2)
    with pytest.raises(RuntimeError, match="staged records"):
        lg.next_offset = 7
    assert lg.materialize() > 0
    assert (lg.written_offset, lg.next_offset, lg.pending) == (3, 3, [])
    assert [r.data for r in read_all(lg)] == [b"in a segment", b"a", b"b"]
    journal.close()


def test_staging_into_a_slot_without_an_open_log_is_refused_and_stages_nothing(tmp_path: Path) -> None:
    files = FileCache(4)
    table = LogTable()
    lg, _ = open_log(tmp_path / "s", files, table=table, slot=0)
    journal, _ = Journal.open(tmp_path / "journal", lambda tag, index: None, file_bytes=1 << 20, durable=False)
    lg.seal()
    with pytest.raises(RuntimeError, match="no open log"):
        journal.put(1, 1_000, table, [(0, b"k", b"", b"x")])
    assert lg.next_offset == 0 and lg.pending == []
    journal.close()
