"""The frame layout is defined once, in framing.py (journal_scan.py adds the journal's own fields): the C
accelerators compile the same numbers in and export them, and these tests hold the two sides together."""

from __future__ import annotations

import pytest

from shardline.storage import framing, journal_scan

try:
    from shardline.storage import _speedups, _stagetable
except ImportError:  # no C compiler where this was installed: there is no C side to check
    _speedups = _stagetable = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_speedups is None or _stagetable is None, reason="the C extensions are not built here")


def test_the_header_fields_add_up() -> None:
    assert framing.CRC_AT == framing.PREFIX.size == framing.LEN_PREFIX + 1  # the magic byte follows len
    assert framing.CRC_AT + framing.CRC.size == framing.CRC_START
    assert framing.HEADER_SIZE == framing.HEADER.size == 37
    assert framing.REC_SIZE == framing.REC.size == 15


def test_journal_frames_share_the_segment_frame_prefix() -> None:
    assert journal_scan.HEAD.size == journal_scan.HEADER_SIZE == framing.HEADER_SIZE
    assert journal_scan.HEAD.format.startswith(framing.PREFIX.format + framing.CRC.format[1:])
    assert journal_scan.REC.size == journal_scan.ID.size + framing.REC_SIZE


@needs_c
def test_the_record_decoder_is_compiled_with_the_python_layout() -> None:
    assert (_speedups.HEADER_SIZE, _speedups.REC_SIZE) == (framing.HEADER_SIZE, framing.REC_SIZE)


@needs_c
def test_the_stage_table_is_compiled_with_the_python_layout() -> None:
    compiled = {
        name: getattr(_stagetable, name)
        for name in ("HEADER_SIZE", "REC_SIZE", "MAGIC", "LEN_PREFIX", "CRC_AT", "CRC_START", "ID_SIZE")
    }
    assert compiled == {
        "HEADER_SIZE": framing.HEADER_SIZE,
        "REC_SIZE": framing.REC_SIZE,
        "MAGIC": framing.MAGIC,
        "LEN_PREFIX": framing.LEN_PREFIX,
        "CRC_AT": framing.CRC_AT,
        "CRC_START": framing.CRC_START,
        "ID_SIZE": journal_scan.ID.size,
    }
