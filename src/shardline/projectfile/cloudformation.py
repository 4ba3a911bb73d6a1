"""CloudFormation templates: ``AWS::Kinesis::Stream``, ``AWS::Kinesis::StreamConsumer``, ``AWS::Lambda::Function``
and ``AWS::Lambda::EventSourceMapping``, with Parameters, Conditions and Mappings.

The resource handling here is shared: SAM templates are CloudFormation plus ``AWS::Serverless::Function``, and a
serverless.yml's ``resources.Resources`` are raw CloudFormation. CloudFormation's defaults are the
CreateEventSourceMapping API's (BatchSize 100...), and ``StartingPosition`` is required for a stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._config import ConfigFile
from ..runtime.config import ConsumerSpec
from .functions import CFN_FUNCTION_KEYS, function
from .intrinsics import Resolver
from .provenance import Translation

__all__ = ["CLOUDFORMATION", "Template", "TemplateDialect", "esm_event", "load_template"]

# CloudFormation property -> shardline.yml event key
ESM_KEYS = {
    "BatchSize": "batchSize",
    "MaximumBatchingWindowInSeconds": "batchWindow",
    "StartingPosition": "startingPosition",
    "StartingPositionTimestamp": "startingPositionTimestamp",
    "MaximumRetryAttempts": "maximumRetryAttempts",
    "MaximumRecordAgeInSeconds": "maximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError": "bisectBatchOnFunctionError",
    "ParallelizationFactor": "parallelizationFactor",
    "FunctionResponseTypes": "functionResponseType",
    "TumblingWindowInSeconds": "tumblingWindowInSeconds",
    "Enabled": "enabled",
}
_INTS = {
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "ParallelizationFactor",
    "TumblingWindowInSeconds",
    "StartingPositionTimestamp",
}
_BOOLS = {"BisectBatchOnFunctionError", "Enabled"}
ESM_NOT_APPLIED = {"KmsKeyArn", "MetricsConfig", "LoggingConfig", "ScalingConfig", "ProvisionedPollerConfig", "Tags"}
ESM_NOT_KINESIS = {
    "Queues",
    "Topics",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
}
_STREAM_PROPS = {
    "Name",
    "ShardCount",
    "RetentionPeriodHours",
    "StreamModeDetails",
    "StreamEncryption",
    "Tags",
    "DesiredShardLevelMetrics",
    "MaxRecordSizeInKiB",
    "WarmThroughputMiBps",
    "RecordDistributionStrategy",
}
_CONSUMER_ARN = re.compile(r"^(arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[a-zA-Z0-9_.-]+)/consumer/([^:]+):\d+$")
_ANY_ARN = re.compile(r"^arn:aws[a-z-]*:([a-z0-9-]+):")
# resources that only exist to be referred to (their ARNs and names resolve), or that a local run has no use for
_REFERRED = {"AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"}


class Template:
    """A template's resources, resolved: streams and consumers into ``t``, functions by logical id, mappings."""

    def __init__(
        self,
        ctx: ConfigFile,
        doc: Mapping[str, Any],
        t: Translation,
        *,
        region: str,
        account_id: str,
        stack_name: str,
        overrides: Mapping[str, str],
        prefix: str = "Resources",
    ) -> None:
        self.ctx, self.t, self.prefix = ctx, t, prefix
        resources = doc.get("Resources") or {}
        if not isinstance(resources, dict):
            raise ctx.fail(prefix, "must be a mapping of logical id to resource")
        self.resources: dict[str, Any] = resources
        self.resolver = Resolver(
            ctx,
            region=region,
            account_id=account_id,
            stack_name=stack_name,
            parameters=self._parameters(doc.get("Parameters") or {}, overrides),
            mappings=doc.get("Mappings") or {},
            conditions=doc.get("Conditions") or {},
            resources=resources,
        )
        for lid, res in resources.items():
            if not isinstance(res, dict) or "Type" not in res:
                raise ctx.fail(f"{prefix}.{lid}", "a resource needs a Type")
            name_key = {
                "AWS::Kinesis::Stream": "Name",
                "AWS::SQS::Queue": "QueueName",
                "AWS::SNS::Topic": "TopicName",
                "AWS::Lambda::Function": "FunctionName",
                "AWS::Serverless::Function": "FunctionName",
            }.get(str(res["Type"]))
            props = res.get("Properties") or {}
            if name_key and isinstance(props, dict) and name_key in props:
                where = f"{prefix}.{lid}.Properties.{name_key}"
                self.resolver.names[lid] = str(self.resolver.resolve(props[name_key], where))

    def _parameters(self, params: Any, overrides: Mapping[str, str]) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise self.ctx.fail("Parameters", "must be a mapping of parameter name to definition")
        out: dict[str, Any] = {}
        for name, declared in params.items():
            where = f"Parameters.{name}"
            spec = declared if isinstance(declared, dict) else {}
            if name in overrides:
                value: Any = overrides[name]
                self.t.inputs[name] = (value, f"--parameter-overrides {name}")
            elif "Default" in spec:
                value = spec["Default"]
                self.t.inputs[name] = (value, f"{where}.Default")
            else:
                raise self.ctx.fail(where, f"no Default: give one, or --parameter-overrides {name}=VALUE")
            allowed = spec.get("AllowedValues")
            if isinstance(allowed, list) and str(value) not in [str(a) for a in allowed]:
                raise self.ctx.fail(where, f"{value!r} is not one of its AllowedValues {allowed}")
            if spec.get("Type") == "Number":
                try:
                    value = int(str(value)) if re.fullmatch(r"-?\d+", str(value)) else float(str(value))
                except ValueError:
                    raise self.ctx.fail(where, f"{value!r} is not a Number") from None
            elif spec.get("Type") == "CommaDelimitedList":
                value = [v.strip() for v in str(value).split(",")]
            out[str(name)] = value
        unknown = set(overrides) - set(out)
        if unknown:
            raise self.ctx.fail("Parameters", f"--parameter-overrides names {sorted(unknown)}, not declared here")
        return out

    def active(self, lid: str, res: Mapping[str, Any]) -> bool:
        cond = res.get("Condition")
        if cond is None:
            return True
        on = self.resolver.condition(str(cond), f"{self.prefix}.{lid}.Condition")
        if not on:
            self.t.note(f"{self.prefix}.{lid}: condition {cond} is false, so it is left out")
        return on

    def properties(self, lid: str) -> dict[str, Any]:
        where = f"{self.prefix}.{lid}.Properties"
        props = self.resolver.resolve(self.resources[lid].get("Properties") or {}, where)
        if not isinstance(props, dict):
            raise self.ctx.fail(where, "must be a mapping")
        return props

    # ----------------------------------------------------------------- streams
    def streams(self) -> None:
        for lid, res in self.resources.items():
            if not self.active(lid, res):
                continue
            kind = res["Type"]
            if kind == "AWS::Kinesis::Stream":
                self._stream(lid)
            elif kind == "AWS::Kinesis::StreamConsumer":
                props = self.properties(lid)
                stream_arn = str(props.get("StreamARN", ""))
                self.t.consumers.append(ConsumerSpec(stream_arn.rsplit("/", 1)[-1], str(props.get("ConsumerName"))))

    def _stream(self, lid: str) -> None:
        where = f"{self.prefix}.{lid}.Properties"
        props = self.properties(lid)
        for key in props:
            if key not in _STREAM_PROPS:
                raise self.ctx.fail(
                    f"{where}.{key}",
                    f"unknown AWS::Kinesis::Stream property (allowed: {', '.join(sorted(_STREAM_PROPS))})",
                )
        name = self.resolver.names.get(lid, lid)
        t = self.t
        spec: dict[str, Any] = {}
        native = f"streams.{name}"
        t.paths[native] = f"{self.prefix}.{lid}"
        mode_details = props.get("StreamModeDetails") or {}
        mode = mode_details.get("StreamMode", "PROVISIONED") if isinstance(mode_details, dict) else mode_details
        origin = "file" if "StreamModeDetails" in props else "CloudFormation default"
        t.put(spec, native, "mode", mode, source=f"{where}.StreamModeDetails.StreamMode", origin=origin)
        if "ShardCount" in props:
            t.put(spec, native, "shards", _int(props["ShardCount"]), source=f"{where}.ShardCount", origin="file")
        elif mode == "PROVISIONED":
            t.put(spec, native, "shards", 1, source=f"{where}.ShardCount", origin="CloudFormation default")
        if "RetentionPeriodHours" in props:
            hours = _int(props["RetentionPeriodHours"])
            t.put(spec, native, "retentionHours", hours, source=f"{where}.RetentionPeriodHours", origin="file")
        else:
            t.put(
                spec,
                native,
                "retentionHours",
                24,
                source=f"{where}.RetentionPeriodHours",
                origin="CloudFormation default",
            )
        for key in (
            "StreamEncryption",
            "DesiredShardLevelMetrics",
            "MaxRecordSizeInKiB",
            "WarmThroughputMiBps",
            "RecordDistributionStrategy",
        ):
            if key in props:
                t.note(f"{where}.{key}: accepted, not applied locally")
        t.native["streams"][name] = spec

    # ----------------------------------------------------------------- the rest
    def others(self, handled: set[str]) -> None:
        """Say once what is not applied: every resource of a type this run has no use for."""
        for lid, res in self.resources.items():
            kind = res["Type"]
            if kind in handled or kind in _REFERRED or kind.startswith("AWS::Kinesis::"):
                continue
            self.t.note(f"{self.prefix}.{lid} ({kind}): not applied locally")

    def function_names(self) -> dict[str, str]:
        """Function name -> logical id, for every function resource."""
        return {
            self.resolver.names.get(lid, lid): lid
            for lid, res in self.resources.items()
            if res["Type"] in ("AWS::Lambda::Function", "AWS::Serverless::Function")
        }

    def event_source_mappings(self, functions: Mapping[str, str]) -> None:
        """Every AWS::Lambda::EventSourceMapping, as an event of its function (``functions``: name -> native name)."""
        for lid, res in self.resources.items():
            if res["Type"] != "AWS::Lambda::EventSourceMapping" or not self.active(lid, res):
                continue
            where = f"{self.prefix}.{lid}.Properties"
            props = self.properties(lid)
            target = str(props.get("FunctionName", ""))
            # a name, an ARN (…:function:name) or name:alias
            name = target.split(":function:", 1)[-1].split(":", 1)[0]
            if name not in functions:
                raise self.ctx.fail(f"{where}.FunctionName", f"{target!r} is not a function declared in this template")
            fn = self.t.native["functions"][functions[name]]
            events = fn.setdefault("events", [])
            native = f"functions.{functions[name]}.events[{len(events)}].stream"
            rest = {k: v for k, v in props.items() if k != "FunctionName"}
            event = esm_event(
                self.ctx, self.t, rest, where=where, native=native, arn_key="EventSourceArn", dialect="CloudFormation"
            )
            events.append({"stream": event})


def esm_event(
    ctx: ConfigFile, t: Translation, props: Mapping[str, Any], *, where: str, native: str, arn_key: str, dialect: str
) -> dict[str, Any]:
    """An event source mapping's properties (CloudFormation's names, already resolved) as a shardline.yml event."""
    event: dict[str, Any] = {}
    t.paths[native] = where
    for key, written in props.items():
        kw = f"{where}.{key}"
        value = written
        if key == arn_key:
            continue
        if key in ESM_NOT_KINESIS:
            raise ctx.fail(kw, f"{key} does not apply to a Kinesis stream")
        if key in ESM_NOT_APPLIED:
            t.note(f"{kw}: accepted, not applied locally")
            continue
        if key in ESM_KEYS:
            if key in _INTS:
                value = _int(value) if key != "StartingPositionTimestamp" else _number(value)
            elif key in _BOOLS:
                value = _bool(value)
            t.put(event, native, ESM_KEYS[key], value, source=kw, origin="file")
        elif key == "FilterCriteria":
            filters = value.get("Filters") if isinstance(value, dict) else None
            if not isinstance(filters, list):
                raise ctx.fail(kw, "must be {Filters: [{Pattern: '<JSON>'}]}")
            patterns = []
            for i, f in enumerate(filters):
                if not isinstance(f, dict) or set(f) != {"Pattern"}:
                    raise ctx.fail(f"{kw}.Filters[{i}]", "must be {Pattern: '<JSON>'}")
                patterns.append(f["Pattern"])
            t.put(event, native, "filterPatterns", patterns, source=kw, origin="file")
        elif key == "DestinationConfig":
            event["destinations"] = {"onFailure": _on_failure(ctx, value, kw)}
            t.paths[f"{native}.destinations"] = kw
            t.paths[f"{native}.destinations.onFailure"] = f"{kw}.OnFailure.Destination"
            t.origins[f"{native}.destinations"] = "file"
        else:
            raise ctx.fail(kw, f"unknown property of a Kinesis event source mapping ({dialect})")
    if arn_key not in props:
        raise ctx.fail(where, f"{arn_key} is required: the stream (or stream consumer) ARN")
    arn = props[arn_key]
    if not isinstance(arn, str):
        raise ctx.fail(f"{where}.{arn_key}", f"{arn!r} is not an ARN")
    consumer = _CONSUMER_ARN.match(arn)
    if consumer:  # read through that consumer (SubscribeToShard)
        t.put(event, native, "consumer", arn, source=f"{where}.{arn_key}", origin="file")
        arn = consumer.group(1)
    service = _ANY_ARN.match(arn)
    if service is None or service.group(1) != "kinesis":
        raise ctx.fail(f"{where}.{arn_key}", f"{arn!r} is not a Kinesis stream ARN (only Kinesis streams run here)")
    t.put(event, native, "arn", arn, source=f"{where}.{arn_key}", origin="file")
    if "StartingPosition" not in props:
        raise ctx.fail(where, f"StartingPosition is required for a Kinesis stream ({dialect} has no default)")
    return event


def _on_failure(ctx: ConfigFile, value: Any, where: str) -> str:
    if not isinstance(value, dict):
        raise ctx.fail(where, "must be {OnFailure: {Destination: <ARN>}}")
    if "OnSuccess" in value:
        raise ctx.fail(f"{where}.OnSuccess", "Kinesis event source mappings have no on-success destination")
    on_failure = value.get("OnFailure")
    if not isinstance(on_failure, dict) or not isinstance(on_failure.get("Destination"), str):
        raise ctx.fail(f"{where}.OnFailure", "must be {Destination: <SQS queue, SNS topic or Kinesis stream ARN>}")
    arn: str = on_failure["Destination"]
    service = _ANY_ARN.match(arn)
    if service is None or service.group(1) not in ("sqs", "sns", "kinesis"):
        kind = service.group(1) if service else "?"
        raise ctx.fail(
            f"{where}.OnFailure.Destination",
            f"{arn!r}: a {kind} destination is not supported here (allowed: an SQS queue, SNS topic or Kinesis stream)",
        )
    return arn


def _int(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return value


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            return value
    return value


def _bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


FunctionStep = Callable[[str], str]  # one function resource (by logical id) into the translation; its name


@dataclass(frozen=True, slots=True)
class TemplateDialect:
    """What sets a template dialect apart: its name, the resource type of its functions, and ``functions``, which
    reads what every function of a template shares (once per template) and returns the step for one function."""

    name: str
    function_type: str
    functions: Callable[[Template, Mapping[str, Any]], FunctionStep]


def load_template(
    ctx: ConfigFile,
    doc: Mapping[str, Any],
    dialect: TemplateDialect,
    *,
    region: str,
    account_id: str,
    overrides: Mapping[str, str],
) -> Translation:
    """A SAM or CloudFormation template: streams and consumers, the dialect's functions, the event source mappings,
    and a note for every resource not applied."""
    t = Translation(dialect.name)
    tpl = Template(ctx, doc, t, region=region, account_id=account_id, stack_name=ctx.path.stem, overrides=overrides)
    tpl.streams()
    add = dialect.functions(tpl, doc)
    names: dict[str, str] = {}
    for lid, res in tpl.resources.items():
        if res["Type"] == dialect.function_type and tpl.active(lid, res):
            name = add(lid)
            names[name] = name
    tpl.event_source_mappings(names)
    tpl.others({dialect.function_type, "AWS::Lambda::EventSourceMapping"})
    t.link_parameters(tpl.resolver.refs)
    return t


def _functions(tpl: Template, doc: Mapping[str, Any]) -> FunctionStep:
    ctx, t = tpl.ctx, tpl.t

    def add(lid: str) -> str:
        props = tpl.properties(lid)
        prefix = f"Resources.{lid}.Properties"
        for key in props:
            if key not in CFN_FUNCTION_KEYS:
                raise ctx.fail(f"{prefix}.{key}", "unknown AWS::Lambda::Function property")
        name = tpl.resolver.names.get(lid, lid)
        code = props.get("Code")
        code_dir = code if isinstance(code, str) else None
        if isinstance(code, dict):
            t.note(f"{prefix}.Code: not applied locally (the handler is looked up beside the template)")
        where = {"_": f"Resources.{lid}", **{k: f"{prefix}.{k}" for k in props}}
        t.native["functions"][name] = function(
            ctx,
            t,
            name=name,
            props=props,
            where=where,
            origins={},
            code=code_dir,
            dialect_default="CloudFormation default",
        )
        t.paths[f"functions.{name}"] = f"Resources.{lid}"
        return name

    return add


CLOUDFORMATION = TemplateDialect("AWS CloudFormation", "AWS::Lambda::Function", _functions)
