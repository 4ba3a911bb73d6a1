"""``shardline.yml``: streams, functions and their stream events, in the Serverless Framework's key names.

```yaml
streams:
  orders: {shards: 2, retentionHours: 24}          # mode: PROVISIONED (default) or ON_DEMAND
functions:
  process:
    handler: handlers/orders.handler               # handlers/orders.py, function handler; relative to this file
    timeout: 30                                    # seconds, 1..900 (default 3)
    memorySize: 256                                # MB, 128..10240 (default 128)
    environment: {LOG_LEVEL: INFO}
    reservedConcurrency: 4
    events:
      - stream:
          arn: arn:aws:kinesis:us-east-1:000000000000:stream/orders   # or `stream: orders`
          batchSize: 100                           # 1..10000 (default 100)
          batchWindow: 1                           # seconds, 0..300 (default 0)
          startingPosition: TRIM_HORIZON           # TRIM_HORIZON | LATEST | AT_TIMESTAMP (default TRIM_HORIZON)
          startingPositionTimestamp: 1700000000    # epoch seconds, with AT_TIMESTAMP; not in the future
          maximumRetryAttempts: 2                  # -1..10000 (default -1: until the record expires)
          maximumRecordAgeInSeconds: 3600          # -1, or 60..604800 (default -1)
          bisectBatchOnFunctionError: true         # default false
          parallelizationFactor: 1                 # 1..10 (default 1)
          functionResponseType: ReportBatchItemFailures
          tumblingWindowInSeconds: 0               # 0..900 (default 0)
          filterPatterns: [{data: {kind: [order]}}]
          destinations:
            onFailure: {type: stream, name: orders-failed}   # or {type: file, path: failures.jsonl}
          enabled: true
```
Omitted keys take the CreateEventSourceMapping API defaults (not the Serverless plugin's). Every problem is
reported with the file, the key path and what is allowed, before anything starts.

serverless.yml, SAM and CloudFormation templates are translated into this form by ``shardline.projectfile`` and built
here by ``build_config`` (their key paths mapped back to the file's own); the runtime never sees a dialect.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._config import ConfigError, ConfigFile
from .filters import FilterError, RecordFilter
from .functions import FunctionConfig
from .mapping import DestinationConfig, MappingConfig

__all__ = ["ConfigError", "ConsumerSpec", "FunctionSpec", "ProjectConfig", "StreamSpec", "build_config", "load_config"]

_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NAMESPACE = uuid.UUID("6f1c2b9e-3a51-4d8e-9d43-2f6c3b8a7e10")

# Serverless key -> (MappingConfig field, API parameter name as ParamProblem reports it)
_EVENT_KEYS: dict[str, tuple[str, str]] = {
    "batchSize": ("batch_size", "BatchSize"),
    "batchWindow": ("maximum_batching_window_s", "MaximumBatchingWindowInSeconds"),
    "startingPosition": ("starting_position", "StartingPosition"),
    "startingPositionTimestamp": ("starting_position_timestamp_ms", "StartingPositionTimestamp"),
    "maximumRetryAttempts": ("maximum_retry_attempts", "MaximumRetryAttempts"),
    "maximumRecordAgeInSeconds": ("maximum_record_age_s", "MaximumRecordAgeInSeconds"),
    "bisectBatchOnFunctionError": ("bisect_batch_on_function_error", "BisectBatchOnFunctionError"),
    "parallelizationFactor": ("parallelization_factor", "ParallelizationFactor"),
    "functionResponseType": ("function_response_types", "FunctionResponseTypes"),
    "tumblingWindowInSeconds": ("tumbling_window_s", "TumblingWindowInSeconds"),
    "filterPatterns": ("filter_patterns", "FilterCriteria"),
    "destinations": ("on_failure", "DestinationConfig.OnFailure"),
    "enabled": ("enabled", "Enabled"),
}
_PARAM_TO_KEY = {api: key for key, (_f, api) in _EVENT_KEYS.items()}
_CONSUMER_NAME = re.compile(
    r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[a-zA-Z0-9_.-]+/consumer/([a-zA-Z0-9_.-]+):\d+$"
)
_OTHER_EVENT_KEYS = {"arn", "type", "stream", "consumer"}
_STREAM_ARN = re.compile(
    r"^arn:aws[a-z-]*:kinesis:([a-z0-9-]+):\d{12}:stream/([a-zA-Z0-9_.-]{1,128})(/consumer/[a-zA-Z0-9_.-]+:\d+)?$"
)
_FUNCTION_KEYS = {"handler", "timeout", "memorySize", "environment", "reservedConcurrency", "events", "description"}
_QUEUE_ARN = re.compile(r"^arn:aws[a-z-]*:(sqs|sns):[a-z0-9-]+:\d{12}:([a-zA-Z0-9_.-]{1,256})$")
_STREAM_KEYS = {"shards", "retentionHours", "mode"}
# the top-level keys of shardline.yml (shardline.projectfile checks the same set)
# CDC: `sources` is kept as written for shardline.sources.config (it is parsed there, beside the sources).
TOP_KEYS = {"streams", "functions", "service", "provider", "alarms", "sources"}


@dataclass(frozen=True)
class StreamSpec:
    """A stream the project declares under ``streams`` (``shards`` None: ON_DEMAND sizes it)."""

    name: str
    shards: int | None
    retention_hours: int
    mode: str


@dataclass(frozen=True)
class FunctionSpec:
    """A function and the event source mappings that invoke it."""

    config: FunctionConfig
    mappings: list[MappingConfig] = field(default_factory=list)


@dataclass(frozen=True)
class ConsumerSpec:
    """An enhanced fan-out consumer the project registers on ``stream`` (``consumer:``, a StreamConsumer)."""

    stream: str
    name: str


@dataclass(frozen=True)
class ProjectConfig:
    path: Path
    streams: dict[str, StreamSpec]
    functions: dict[str, FunctionSpec]
    alarms: object = None  # the raw `alarms:` section, parsed by the monitoring layer
    sources: object = None  # CDC: the raw `sources:` section, parsed by shardline.sources.config.parse_sources
    dialect: str = "shardline.yml"
    # what a local run does not apply, or applies differently (said once at startup)
    notices: tuple[str, ...] = ()
    consumers: tuple[ConsumerSpec, ...] = ()
    # mapping uuid -> the enhanced fan-out consumer it reads through (SubscribeToShard)
    mapping_consumers: dict[str, ConsumerSpec] = field(default_factory=dict)
    # mapping uuid -> the error to raise when its stream, used by the file but not declared in it, does not exist when
    # the project starts
    undeclared: dict[str, str] = field(default_factory=dict)

    @property
    def mappings(self) -> list[tuple[FunctionSpec, MappingConfig]]:
        return [(f, m) for f in self.functions.values() for m in f.mappings]


def load_config(
    path: Path, *, region: str = "us-east-1", account_id: str = "000000000000", now_ms: int | None = None
) -> ProjectConfig:
    """``now_ms`` (default: the wall clock) is what a StartingPositionTimestamp must not be after."""
    ctx = ConfigFile(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ctx.fail("", "the file must be a mapping with 'streams' and 'functions'")
    # `alarms` belongs to monitoring (shardline.metrics.alarms.parse_alarms); it is kept here as written.
    ctx.check_keys("", raw, TOP_KEYS)
    return build_config(ctx, raw, region=region, account_id=account_id, now_ms=now_ms)


def build_config(
    ctx: ConfigFile,
    raw: dict[str, Any],
    *,
    region: str,
    account_id: str,
    now_ms: int | None = None,
    strict: bool = True,
    dialect: str = "shardline.yml",
    notices: tuple[str, ...] = (),
    consumers: tuple[ConsumerSpec, ...] = (),
) -> ProjectConfig:
    """The project of ``raw`` (this file's form). ``strict``: a stream ARN of this region and account must name a
    declared stream; otherwise an undeclared stream is only required to exist when the project starts. Either way, an
    ARN of another region or account is served under the local ones, and said in ``notices``."""
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    streams = _streams(ctx, raw.get("streams") or {})
    functions: dict[str, FunctionSpec] = {}
    fns = raw.get("functions") or {}
    if not isinstance(fns, dict):
        raise ctx.fail("functions", "must be a mapping of function name to settings")
    build = _Build(streams, region, account_id, now_ms, strict)
    for name, spec in fns.items():
        functions[str(name)] = _function(ctx, str(name), spec, build)
    return ProjectConfig(
        ctx.path,
        streams,
        functions,
        raw.get("alarms"),
        raw.get("sources"),
        dialect=dialect,
        notices=(*notices, *build.notices),
        consumers=tuple(dict.fromkeys((*consumers, *build.mapping_consumers.values()))),
        mapping_consumers=build.mapping_consumers,
        undeclared=build.undeclared,
    )


@dataclass
class _Build:
    """One build of a project: what every function and mapping is checked against, and what building them learnt
    beyond the mappings themselves."""

    streams: dict[str, StreamSpec]
    region: str
    account_id: str
    now_ms: int
    strict: bool
    notices: list[str] = field(default_factory=list)
    undeclared: dict[str, str] = field(default_factory=dict)
    mapping_consumers: dict[str, ConsumerSpec] = field(default_factory=dict)

    def note(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)


def _streams(ctx: ConfigFile, data: Any) -> dict[str, StreamSpec]:
    if not isinstance(data, dict):
        raise ctx.fail("streams", "must be a mapping of stream name to settings")
    out: dict[str, StreamSpec] = {}
    for name, spec in data.items():
        where = f"streams.{name}"
        settings = ctx.entry(
            where,
            name,
            spec or {},
            pattern=_NAME,
            naming="a stream name is 1-128 characters of letters, digits, '_', '.' and '-'",
            shape="must be a mapping such as {shards: 2, retentionHours: 24}",
            keys=_STREAM_KEYS,
        )
        mode = settings.get("mode", "PROVISIONED")
        if mode not in ("PROVISIONED", "ON_DEMAND"):
            raise ctx.fail(f"{where}.mode", f"{mode!r} is not PROVISIONED or ON_DEMAND")
        shards = ctx.integer(f"{where}.shards", settings["shards"], 1, 10_000) if "shards" in settings else None
        if shards is None and mode == "PROVISIONED":
            shards = 1
        retention = ctx.integer(f"{where}.retentionHours", settings.get("retentionHours", 24), 24, 8760)
        out[str(name)] = StreamSpec(str(name), shards, retention, mode)
    return out


def _function(ctx: ConfigFile, name: str, spec: Any, build: _Build) -> FunctionSpec:
    where = f"functions.{name}"
    ctx.entry(
        where,
        name,
        spec,
        pattern=_FUNCTION_NAME,
        naming="a function name is 1-64 characters of letters, digits, '_' and '-'",
        shape="must be a mapping with at least 'handler'",
        keys=_FUNCTION_KEYS,
    )
    handler = spec.get("handler")
    if not isinstance(handler, str) or "." not in handler:
        raise ctx.fail(f"{where}.handler", "must be 'path/to/module.function', relative to the config file")
    module_path, _, _fn = handler.rpartition(".")
    base = ctx.path.parent.resolve()
    file = (base / f"{module_path}.py").resolve()
    if base not in file.parents:
        raise ctx.fail(f"{where}.handler", f"{module_path}.py is outside the project directory")
    if not file.exists():
        raise ctx.fail(f"{where}.handler", f"{file.relative_to(base)} does not exist")
    env = spec.get("environment") or {}
    if not isinstance(env, dict):
        raise ctx.fail(f"{where}.environment", "must be a mapping of variable name to value")
    reserved = spec.get("reservedConcurrency")
    config = FunctionConfig(
        name=name,
        handler=handler,
        code_dir=base,
        timeout_s=float(ctx.integer(f"{where}.timeout", spec.get("timeout", 3), 1, 900)),
        memory_mb=ctx.integer(f"{where}.memorySize", spec.get("memorySize", 128), 128, 10_240),
        environment={str(k): str(v) for k, v in env.items()},
        reserved_concurrency=None
        if reserved is None
        else ctx.integer(f"{where}.reservedConcurrency", reserved, 0, 1000),
        region=build.region,
        account_id=build.account_id,
    )
    events = spec.get("events") or []
    if not isinstance(events, list):
        raise ctx.fail(f"{where}.events", "must be a list of '- stream: ...' entries")
    mappings = []
    for i, ev in enumerate(events):
        ew = f"{where}.events[{i}]"
        if not isinstance(ev, dict) or list(ev) != ["stream"]:
            raise ctx.fail(ew, "each event must be '- stream: <stream name or ARN>' or '- stream: {arn: ..., ...}'")
        mappings.append(_mapping(ctx, f"{ew}.stream", ev["stream"], build, function=name, index=i))
    return FunctionSpec(config, mappings)


def _mapping(ctx: ConfigFile, where: str, ev: Any, build: _Build, *, function: str, index: int) -> MappingConfig:
    if isinstance(ev, str):
        ev = {"arn": ev}
    if not isinstance(ev, dict):
        raise ctx.fail(where, "must be a stream name, a stream ARN, or a mapping with 'arn'")
    ctx.check_keys(where, ev, set(_EVENT_KEYS) | _OTHER_EVENT_KEYS)
    if ev.get("type", "kinesis") != "kinesis":
        raise ctx.fail(f"{where}.type", f"{ev['type']!r} is not supported; only kinesis streams")
    target = ev.get("arn", ev.get("stream"))
    if not isinstance(target, str) or not target:
        raise ctx.fail(f"{where}.arn", "the stream to read: a name declared under 'streams', or its ARN")
    prefix = f"arn:aws:kinesis:{build.region}:{build.account_id}:stream/"
    arn = target if target.startswith("arn:") else prefix + target
    foreign = _STREAM_ARN.match(arn)
    consumer: Any = ev.get("consumer")
    if foreign and foreign.group(3):  # a consumer's ARN: read through that consumer
        arn = arn.removesuffix(foreign.group(3))
        if consumer is None or consumer is False:
            consumer = target
    if foreign and not arn.startswith(prefix):
        # an ARN of another region or account (a real file's): served as the stream of that name here
        local = prefix + foreign.group(2)
        build.note(f"{arn} is served as {local} (region {build.region}, account {build.account_id})")
        arn = local
    elif arn.startswith("arn:") and not foreign:
        raise ctx.fail(
            f"{where}.arn",
            f"{arn!r} is not a Kinesis stream ARN (arn:aws:kinesis:<region>:<account>:stream/<name>)",
        )
    stream_name = arn[len(prefix) :].split("/", 1)[0]
    mapping_id = str(uuid.uuid5(_NAMESPACE, f"{function}:{arn}:{index}"))
    if consumer is not None and consumer is not False:
        if consumer is True:
            consumer_name = f"{function}-{stream_name}-consumer"  # as Serverless names the consumer it registers
        elif isinstance(consumer, str) and (named := _CONSUMER_NAME.match(consumer)):
            consumer_name = named.group(1)
        else:
            raise ctx.fail(
                f"{where}.consumer", f"{consumer!r} is not allowed (allowed: true, or a stream consumer ARN)"
            )
        build.mapping_consumers[mapping_id] = ConsumerSpec(stream_name, consumer_name)
    if stream_name not in build.streams:
        if build.strict:
            raise ctx.fail(f"{where}.arn", f"stream '{stream_name}' is not declared under 'streams'")
        # the error the project raises at start unless the stream exists by then
        build.undeclared[mapping_id] = str(
            ctx.fail(f"{where}.arn", f"stream '{stream_name}' is neither declared in the file nor present")
        )
    kwargs: dict[str, Any] = {}
    for key, (fld, _api) in _EVENT_KEYS.items():
        if key not in ev:
            continue
        value = ev[key]
        if key == "functionResponseType":
            value = (value,) if isinstance(value, str) else tuple(value or ())
        elif key == "filterPatterns":
            if not isinstance(value, list):
                raise ctx.fail(f"{where}.filterPatterns", "must be a list of patterns")
            value = tuple(p if isinstance(p, str) else json.dumps(p) for p in value)
        elif key == "destinations":
            value = _destination(ctx, f"{where}.destinations", value, build.streams, ctx.path.parent)
        elif key == "startingPositionTimestamp":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ctx.fail(f"{where}.{key}", "must be epoch seconds")
            value = round(value * 1000)
        kwargs[fld] = value
    kwargs.setdefault("starting_position", "TRIM_HORIZON")
    cfg = MappingConfig(function_name=function, event_source_arn=arn, uuid=mapping_id, **kwargs)
    problems = cfg.problems()
    if problems:
        p = problems[0]
        key = _PARAM_TO_KEY.get(p.param.split(".")[0], p.param)
        raise ctx.fail(f"{where}.{key}", f"{p.value!r} is not allowed (allowed: {p.rule})")
    start_ms = cfg.starting_position_timestamp_ms
    if start_ms is not None and start_ms > build.now_ms:
        # AWS's rule for CreateEventSourceMapping, in its words; the value is shown as written (epoch seconds).
        raise ctx.fail(
            f"{where}.startingPositionTimestamp",
            f"{ev['startingPositionTimestamp']!r} is after the current time ({build.now_ms // 1000}): "
            "StartingPositionTimestamp cannot be in the future.",
        )
    if cfg.filter_patterns:
        try:
            RecordFilter(list(cfg.filter_patterns))
        except FilterError as exc:
            raise ctx.fail(f"{where}.filterPatterns", str(exc)) from None
    return cfg


def _destination(
    ctx: ConfigFile, where: str, value: Any, streams: dict[str, StreamSpec], base: Path
) -> DestinationConfig:
    if not isinstance(value, dict) or set(value) != {"onFailure"}:
        raise ctx.fail(where, "must be {onFailure: {type: stream, name: ...}} or {onFailure: {type: file, path: ...}}")
    d = value["onFailure"]
    if isinstance(d, str):
        queue = _QUEUE_ARN.match(d)
        if d.startswith("arn:aws:kinesis:"):
            d = {"type": "stream", "name": d.rsplit("/", 1)[-1]}
        elif queue:
            d = {"type": queue.group(1), "arn": d}
    if not isinstance(d, dict):
        raise ctx.fail(
            f"{where}.onFailure",
            f"{d!r} is not an SQS queue, SNS topic or Kinesis stream ARN, nor {{type: stream|file|sqs|sns, ...}}",
        )
    kind = d.get("type")
    if kind in ("sqs", "sns"):
        ctx.check_keys(f"{where}.onFailure", d, {"type", "arn"})
        arn = d.get("arn")
        queue = _QUEUE_ARN.match(arn) if isinstance(arn, str) else None
        if queue is None or queue.group(1) != kind:
            service = "an SQS queue" if kind == "sqs" else "an SNS topic"
            raise ctx.fail(f"{where}.onFailure.arn", f"{arn!r} is not the ARN of {service}")
        assert isinstance(arn, str)
        return DestinationConfig(kind, arn)
    if kind == "stream":
        ctx.check_keys(f"{where}.onFailure", d, {"type", "name", "arn"})
        name = d.get("name") or str(d.get("arn", "")).rsplit("/", 1)[-1]
        if name not in streams:
            raise ctx.fail(f"{where}.onFailure.name", f"stream '{name}' is not declared under 'streams'")
        return DestinationConfig("stream", name)
    if kind == "file":
        ctx.check_keys(f"{where}.onFailure", d, {"type", "path"})
        path = d.get("path")
        if not isinstance(path, str) or not path:
            raise ctx.fail(f"{where}.onFailure.path", "the JSONL file to append failure records to")
        return DestinationConfig("file", str((base / path).resolve()))
    raise ctx.fail(f"{where}.onFailure.type", f"{kind!r} is not supported (allowed: stream, file, sqs, sns)")
