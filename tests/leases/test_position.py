"""The typed checkpoint position: parsing the stored text, writing it back, and the iterator it resumes with."""

from __future__ import annotations

import pytest

from shardline.runtime.position import LATEST, SHARD_END, TRIM_HORIZON, Position

SEQ = "49590338271490256608559692538361571095921575989136588898"


@pytest.mark.parametrize(
    "text", [SEQ, "0", "TRIM_HORIZON", "LATEST", "SHARD_END", "AT_TIMESTAMP:1700000000000", "AT_TIMESTAMP:0"]
)
def test_text_round_trips(text: str) -> None:
    assert str(Position.parse(text)) == text


@pytest.mark.parametrize("text", ["", "12a", "AT_TIMESTAMP:", "AT_TIMESTAMP:-1", "AT_TIMESTAMP:x", "latest", "-5"])
def test_bad_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Position.parse(text)


def test_kinds_and_iterators() -> None:
    seq = Position.parse(SEQ, 3)
    assert seq.is_sequence and seq.started and seq.sub_sequence == 3
    assert seq.iterator() == ("AFTER_SEQUENCE_NUMBER", SEQ, None)
    assert Position.at_timestamp(5).iterator() == ("AT_TIMESTAMP", None, 5)
    assert TRIM_HORIZON.iterator() == ("TRIM_HORIZON", None, None)
    assert LATEST.iterator() == ("LATEST", None, None)
    assert SHARD_END.is_shard_end and SHARD_END.started and not TRIM_HORIZON.started
    with pytest.raises(ValueError):
        SHARD_END.iterator()


def test_inconsistent_values_are_refused() -> None:
    with pytest.raises(ValueError):
        Position("SEQUENCE")
    with pytest.raises(ValueError):
        Position("LATEST", sequence_number="1")
    with pytest.raises(ValueError):
        Position("AT_TIMESTAMP")
    with pytest.raises(ValueError):
        Position("TRIM_HORIZON", sub_sequence=1)
