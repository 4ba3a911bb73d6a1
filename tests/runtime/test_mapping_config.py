"""Mapping parameters (spec §2): the CreateEventSourceMapping defaults and every range it rejects."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shardline.runtime.filters import FilterError, RecordFilter
from shardline.runtime.mapping import MappingConfig

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
NOW_MS = 1_700_000_000_000


def config(**kw: Any) -> MappingConfig:
    return replace(MappingConfig("fn", ARN, "TRIM_HORIZON"), **kw)


def problem_params(cfg: MappingConfig) -> list[str]:
    return [p.param for p in cfg.problems(now_ms=NOW_MS)]


def test_defaults_are_the_api_defaults() -> None:
    cfg = MappingConfig("fn", ARN, "TRIM_HORIZON")
    assert cfg.batch_size == 100
    assert cfg.maximum_batching_window_s == 0
    assert cfg.parallelization_factor == 1
    assert cfg.maximum_retry_attempts == -1
    assert cfg.maximum_record_age_s == -1
    assert cfg.bisect_batch_on_function_error is False
    assert cfg.tumbling_window_s == 0
    assert cfg.function_response_types == ()
    assert cfg.on_failure is None
    assert cfg.enabled is True
    assert len(cfg.uuid) == 36 and cfg.uuid != MappingConfig("fn", ARN, "TRIM_HORIZON").uuid
    assert cfg.problems(now_ms=NOW_MS) == []
    assert cfg.stream_name == "s"


REJECTED = [
    ("BatchSize", {"batch_size": 0}),
    ("BatchSize", {"batch_size": 10_001}),
    ("MaximumBatchingWindowInSeconds", {"maximum_batching_window_s": 301}),
    ("MaximumBatchingWindowInSeconds", {"maximum_batching_window_s": -1}),
    ("ParallelizationFactor", {"parallelization_factor": 0}),
    ("ParallelizationFactor", {"parallelization_factor": 11}),
    ("MaximumRetryAttempts", {"maximum_retry_attempts": -2}),
    ("MaximumRetryAttempts", {"maximum_retry_attempts": 10_001}),
    ("MaximumRecordAgeInSeconds", {"maximum_record_age_s": 59}),
    ("MaximumRecordAgeInSeconds", {"maximum_record_age_s": 0}),
    ("MaximumRecordAgeInSeconds", {"maximum_record_age_s": 604_801}),
    ("TumblingWindowInSeconds", {"tumbling_window_s": 901}),
    ("FunctionResponseTypes", {"function_response_types": ("Foo",)}),
    ("StartingPosition", {"starting_position": ""}),
    ("StartingPositionTimestamp", {"starting_position": "AT_TIMESTAMP"}),
    ("StartingPositionTimestamp", {"starting_position": "AT_TIMESTAMP", "starting_position_timestamp_ms": NOW_MS + 1}),
    ("FilterCriteria", {"filter_patterns": ("{}",) * 6}),
    ("FilterCriteria.Filters[0].Pattern", {"filter_patterns": ('{"data": "' + "x" * 4096 + '"}',)}),
]


@pytest.mark.parametrize(("param", "changes"), REJECTED, ids=[f"{p}={v}" for p, v in REJECTED])
def test_out_of_range_values_are_rejected(param: str, changes: dict[str, Any]) -> None:
    assert problem_params(config(**changes)) == [param]


@pytest.mark.parametrize(
    "changes",
    [
        {"maximum_record_age_s": -1},
        {"maximum_record_age_s": 60},
        {"maximum_record_age_s": 604_800},
        {"maximum_retry_attempts": 10_000},
        {"parallelization_factor": 10},
        {"tumbling_window_s": 900},
        {"function_response_types": ("ReportBatchItemFailures",)},
        {"starting_position": "AT_TIMESTAMP", "starting_position_timestamp_ms": NOW_MS},
        {"filter_patterns": ("{}",) * 5},
    ],
)
def test_boundary_values_are_accepted(changes: dict[str, Any]) -> None:
    assert problem_params(config(**changes)) == []


def test_a_filter_pattern_that_is_not_json_is_rejected() -> None:
    with pytest.raises(FilterError):
        RecordFilter(["{not json"])


def test_large_batch_without_a_window_is_accepted_for_streams() -> None:
    assert problem_params(config(batch_size=500, maximum_batching_window_s=0)) == []
