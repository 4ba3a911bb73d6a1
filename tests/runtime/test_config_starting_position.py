"""``startingPositionTimestamp`` in shardline.yml: CreateEventSourceMapping refuses a time in the future, and so does
the loader, before anything starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shardline.runtime.config import ConfigError, load_config

NOW_S = 1_700_000_000
WHERE = "functions.f.events[0].stream.startingPositionTimestamp"


def project(tmp_path: Path, timestamp: float) -> Path:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "h.py").write_text("def handler(event, context):\n    return None\n")
    path = tmp_path / "shardline.yml"
    path.write_text(
        "streams:\n  s: {shards: 1}\nfunctions:\n  f:\n    handler: handlers/h.handler\n    events:\n"
        f"      - stream: {{arn: s, startingPosition: AT_TIMESTAMP, startingPositionTimestamp: {timestamp}}}\n"
    )
    return path


def test_a_timestamp_in_the_future_is_refused_in_aws_words(tmp_path: Path) -> None:
    path = project(tmp_path, NOW_S + 1)
    with pytest.raises(ConfigError) as err:
        load_config(path, now_ms=NOW_S * 1000)
    assert str(err.value) == (
        f"{path}: {WHERE}: {NOW_S + 1} is after the current time ({NOW_S}): "
        "StartingPositionTimestamp cannot be in the future."
    )


def test_without_an_injected_time_the_wall_clock_decides(tmp_path: Path) -> None:
    future_s = int(time.time()) + 86_400
    with pytest.raises(ConfigError, match="StartingPositionTimestamp cannot be in the future"):
        load_config(project(tmp_path, future_s))


@pytest.mark.parametrize("timestamp", [NOW_S, NOW_S - 0.5, NOW_S - 86_400])
def test_now_and_the_past_are_accepted(tmp_path: Path, timestamp: float) -> None:
    config = load_config(project(tmp_path, timestamp), now_ms=NOW_S * 1000)
    [(_fn, mapping)] = config.mappings
    assert mapping.starting_position_timestamp_ms == round(timestamp * 1000)
