"""Event source mapping parameters: every one with its range and default, validated as Lambda validates them.

Defaults are those of the CreateEventSourceMapping API (BatchSize 100, no batching window, retry and record age
unlimited, ...). Validation collects every problem as a ``ParamProblem`` so each front end can word it its own way:
the config loader names the file and key, the Lambda API words it as AWS does.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DestinationConfig", "MappingConfig", "ParamProblem", "RuntimeTuning"]

StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
_STREAM_ARN = re.compile(r"arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/([a-zA-Z0-9_.-]{1,128})(/consumer/.+)?$")
MAX_FILTERS = 5


@dataclass(frozen=True, slots=True)
class ParamProblem:
    """``param`` is the CreateEventSourceMapping member name; ``rule`` says what is allowed."""

    param: str
    value: object
    rule: str


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    """Where discarded batches are reported: ``stream`` (a stream name or ARN), ``file`` (a JSONL path), ``sqs`` or
    ``sns`` (a queue or topic ARN: sent there against AWS, kept in a local stream of that name by the embedded
    engine)."""

    kind: Literal["stream", "file", "sqs", "sns"]
    target: str


@dataclass(frozen=True, slots=True)
class MappingConfig:
    function_name: str
    event_source_arn: str
    starting_position: StartingPosition
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    enabled: bool = True
    batch_size: int = 100
    maximum_batching_window_s: int = 0
    parallelization_factor: int = 1
    starting_position_timestamp_ms: int | None = None
    maximum_record_age_s: int = -1
    maximum_retry_attempts: int = -1
    bisect_batch_on_function_error: bool = False
    on_failure: DestinationConfig | None = None
    function_response_types: tuple[str, ...] = ()
    tumbling_window_s: int = 0
    filter_patterns: tuple[str, ...] = ()

    @property
    def stream_name(self) -> str:
        m = _STREAM_ARN.match(self.event_source_arn)
        return m.group(1) if m else self.event_source_arn

    @property
    def report_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types

    def problems(self, *, now_ms: int | None = None) -> list[ParamProblem]:
        out: list[ParamProblem] = []

        def rng(param: str, value: int, lo: int, hi: int) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                out.append(ParamProblem(param, value, f"an integer from {lo} to {hi}"))

        if not self.function_name or len(self.function_name) > 64:
            out.append(ParamProblem("FunctionName", self.function_name, "a name of 1 to 64 characters"))
        if not _STREAM_ARN.match(self.event_source_arn):
            out.append(
                ParamProblem(
                    "EventSourceArn",
                    self.event_source_arn,
                    "a Kinesis stream ARN (arn:aws:kinesis:<region>:<account>:stream/<name>)",
                )
            )
        rng("BatchSize", self.batch_size, 1, 10_000)
        rng("MaximumBatchingWindowInSeconds", self.maximum_batching_window_s, 0, 300)
        rng("ParallelizationFactor", self.parallelization_factor, 1, 10)
        if self.starting_position not in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
            out.append(ParamProblem("StartingPosition", self.starting_position, "TRIM_HORIZON, LATEST or AT_TIMESTAMP"))
        if self.starting_position == "AT_TIMESTAMP":
            if self.starting_position_timestamp_ms is None:
                out.append(ParamProblem("StartingPositionTimestamp", None, "a timestamp, required with AT_TIMESTAMP"))
            elif now_ms is not None and self.starting_position_timestamp_ms > now_ms:
                out.append(
                    ParamProblem(
                        "StartingPositionTimestamp",
                        self.starting_position_timestamp_ms,
                        "a time that is not in the future",
                    )
                )
        elif self.starting_position_timestamp_ms is not None:
            out.append(
                ParamProblem(
                    "StartingPositionTimestamp",
                    self.starting_position_timestamp_ms,
                    "given only with StartingPosition AT_TIMESTAMP",
                )
            )
        age = self.maximum_record_age_s
        if not isinstance(age, int) or not (age == -1 or 60 <= age <= 604_800):
            out.append(ParamProblem("MaximumRecordAgeInSeconds", age, "-1 (no limit) or an integer from 60 to 604800"))
        rng("MaximumRetryAttempts", self.maximum_retry_attempts, -1, 10_000)
        bad_types = [t for t in self.function_response_types if t != "ReportBatchItemFailures"]
        if bad_types or len(self.function_response_types) > 1:
            out.append(
                ParamProblem(
                    "FunctionResponseTypes", list(self.function_response_types), "empty or [ReportBatchItemFailures]"
                )
            )
        # No rule ties ParallelizationFactor to TumblingWindowInSeconds: AWS documents neither parameter as limiting
        # the other (Lambda Developer Guide, "Lambda parameters for Amazon Kinesis Data Streams event source
        # mappings", docs.aws.amazon.com/lambda/latest/dg/services-kinesis-parameters.html, and "Implementing
        # stateful Kinesis Data Streams processing in Lambda", .../services-kinesis-windows.html). Each concurrent
        # batch of a shard keeps its own window state here.
        rng("TumblingWindowInSeconds", self.tumbling_window_s, 0, 900)
        if len(self.filter_patterns) > MAX_FILTERS:
            out.append(ParamProblem("FilterCriteria", len(self.filter_patterns), f"at most {MAX_FILTERS} filters"))
        for i, p in enumerate(self.filter_patterns):
            if len(p) > 4096:
                out.append(
                    ParamProblem(
                        f"FilterCriteria.Filters[{i}].Pattern", f"{len(p)} characters", "at most 4096 characters"
                    )
                )
        if self.on_failure is not None:
            d = self.on_failure
            if d.kind not in ("stream", "file", "sqs", "sns") or not d.target:
                out.append(
                    ParamProblem(
                        "DestinationConfig.OnFailure",
                        f"{d.kind}:{d.target}",
                        "{type: stream, name: <stream>} or {type: file, path: <file>}",
                    )
                )
        return out


@dataclass(frozen=True, slots=True)
class RuntimeTuning:
    """How the runtime polls and backs off. Not AWS parameters: AWS polls each shard once a second."""

    poll_interval_s: float = 0.02  # idle shard: wait this long between empty GetRecords
    shard_sync_interval_s: float = 10.0  # re-list shards to find new ones (also on every shard end)
    retry_backoff_s: float = 0.1  # first retry after a function error; doubles up to retry_backoff_max_s
    retry_backoff_max_s: float = 5.0
    throttle_backoff_s: float = 1.0  # throttles and service errors: 1 s doubling up to 60 s, with jitter
    throttle_backoff_max_s: float = 60.0
    read_limit: int = 10_000  # GetRecords Limit per poll
