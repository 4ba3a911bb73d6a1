"""serverless.yml (Serverless Framework v3/v4, osls): ``functions.<name>.events[].stream``, ``provider`` defaults,
variables, and ``resources.Resources`` (raw CloudFormation: its streams are created).

The Serverless Framework's own defaults apply: a stream event reads from TRIM_HORIZON with a batch of 10 and is
enabled; a function gets 1024 MB and 6 s unless ``provider`` or the function says otherwise; ``provider.environment``
is merged under the function's. ``functionResponseType`` is a scalar here (a list in CloudFormation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._config import ConfigFile
from .cloudformation import Template
from .provenance import Translation
from .variables import Variables

__all__ = ["load_serverless"]

_SILENT_TOP = {
    "service",
    "frameworkVersion",
    "provider",
    "plugins",
    "custom",
    "functions",
    "resources",
    "package",
    "params",
    "useDotenv",
    "variablesResolutionMode",
    "configValidationMode",
    "deprecationNotificationMode",
    "disabledDeprecations",
    "org",
    "app",
    "console",
    "dashboard",
}
_PROVIDER_APPLIED = {
    "name",
    "runtime",
    "stage",
    "region",
    "memorySize",
    "timeout",
    "environment",
    "architecture",
    "tags",
}
_FUNCTION_APPLIED = {
    "handler",
    "runtime",
    "memorySize",
    "timeout",
    "environment",
    "reservedConcurrency",
    "events",
    "description",
    "architecture",
    "tags",
    "name",
}
_EVENT_KEYS = {
    "arn",
    "type",
    "batchSize",
    "batchWindow",
    "startingPosition",
    "startingPositionTimestamp",
    "maximumRetryAttempts",
    "maximumRecordAgeInSeconds",
    "bisectBatchOnFunctionError",
    "parallelizationFactor",
    "tumblingWindowInSeconds",
    "functionResponseType",
    "destinations",
    "consumer",
    "filterPatterns",
    "enabled",
}
# the Serverless Framework's defaults for a stream event (its compiler's, not the API's)
_EVENT_DEFAULTS = {"batchSize": 10, "startingPosition": "TRIM_HORIZON", "enabled": True}
_CONSUMER_ARN = re.compile(r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/([a-zA-Z0-9_.-]+)/consumer/([^:]+):\d+$")


def load_serverless(
    ctx: ConfigFile,
    doc: Mapping[str, Any],
    *,
    region: str,
    account_id: str,
    stage: str | None,
    params: Mapping[str, str],
) -> Translation:
    t = Translation("Serverless Framework")
    provider_raw = doc.get("provider") or {}
    if not isinstance(provider_raw, dict):
        raise ctx.fail("provider", "must be a mapping")
    if provider_raw.get("name", "aws") != "aws":
        raise ctx.fail("provider.name", f"{provider_raw.get('name')!r}: only the aws provider runs here")
    # the stage and region first: variables need them
    cli_stage = stage
    seed = Variables(ctx, doc, stage=stage or "dev", region=region, account_id=account_id, options=_opts(stage))
    if stage is None:
        stage = str(seed.resolve(provider_raw.get("stage", "dev"), "provider.stage"))
        t.inputs["stage"] = (stage, "provider.stage" if "stage" in provider_raw else "Serverless default")
    else:
        t.inputs["stage"] = (stage, "--stage")
    file_region = str(seed.resolve(provider_raw.get("region", region), "provider.region"))
    variables = Variables(
        ctx, doc, stage=stage, region=file_region, account_id=account_id, options=_opts(cli_stage), params=params
    )
    resolved = variables.resolve(dict(doc), "")
    for note in variables.notes:
        t.note(note)
    t.inputs.update(variables.used)
    for path, names in variables.at.items():
        t.via.setdefault(path, []).extend(names)
    for key in resolved:
        if key not in _SILENT_TOP:
            t.note(f"{key}: not applied locally")
    for plugin in _list(resolved.get("plugins")):
        t.note(f"plugins: {plugin} is not run locally")
    resources = resolved.get("resources") or {}
    if not isinstance(resources, dict):
        raise ctx.fail("resources", "must be a mapping with Resources (CloudFormation)")
    tpl = Template(
        ctx,
        resources,
        t,
        region=file_region,
        account_id=account_id,
        stack_name=f"{resolved.get('service', 'service')}-{stage}",
        overrides={},
        prefix="resources.Resources",
    )
    tpl.streams()
    tpl.others(set())
    provider = resolved.get("provider") or {}
    for key in provider:
        if key not in _PROVIDER_APPLIED:
            t.note(f"provider.{key}: not applied locally")
    functions = resolved.get("functions") or {}
    if not isinstance(functions, dict):
        raise ctx.fail("functions", "must be a mapping of function name to settings")
    for name, spec in functions.items():
        t.native["functions"][str(name)] = _function(ctx, t, tpl, str(name), spec=spec, provider=provider)
    return t


def _opts(stage: str | None) -> dict[str, str]:
    return {"stage": stage} if stage is not None else {}


def _list(value: Any) -> list[Any]:
    if isinstance(value, dict):  # plugins: {modules: [...], localPath: ...}
        value = value.get("modules")
    return value if isinstance(value, list) else []


def _function(
    ctx: ConfigFile, t: Translation, tpl: Template, name: str, *, spec: Any, provider: Mapping[str, Any]
) -> dict[str, Any]:
    where = f"functions.{name}"
    native = where
    t.paths[native] = where
    if not isinstance(spec, dict):
        raise ctx.fail(where, "must be a mapping with at least 'handler'")
    spec = tpl.resolver.resolve(spec, where)
    out: dict[str, Any] = {}
    for key in spec:
        if key not in _FUNCTION_APPLIED:
            t.note(f"{where}.{key}: not applied locally")
    if "name" in spec:
        t.note(f"{where}.name: the function is named {name!r} locally, not {spec['name']!r}")
    runtime, origin = _inherit(spec, provider, "runtime", None)
    if runtime is None:
        raise ctx.fail(f"{where}.runtime", f"function {name}: no runtime (set provider.runtime or the function's)")
    if not str(runtime).startswith("python3"):
        key = f"{where}.runtime" if "runtime" in spec else "provider.runtime"
        raise ctx.fail(key, f"function {name} uses runtime {runtime!r}: only Python runtimes (python3.x) run here")
    t.extras.setdefault(name, {})["runtime"] = (runtime, origin)
    if "handler" in spec:
        t.put(out, native, "handler", spec["handler"], source=f"{where}.handler", origin="file")
    for key, default in (("timeout", 6), ("memorySize", 1024)):
        value, origin = _inherit(spec, provider, key, default)
        source = f"{where}.{key}" if key in spec else f"provider.{key}" if key in provider else where
        t.put(out, native, key, value, source=source, origin=origin)
    env: dict[str, Any] = {}
    sources = []
    for owner, path in ((provider, "provider.environment"), (spec, f"{where}.environment")):
        values = owner.get("environment")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ctx.fail(path, "must be a mapping of variable name to value")
        env.update({str(k): _text(v) for k, v in values.items()})
        sources.append(path)
    if env:
        origin = " + ".join(s if s.startswith("provider") else "file" for s in sources)
        t.put(out, native, "environment", env, source=sources[-1], origin=origin)
    if "reservedConcurrency" in spec:
        value = spec["reservedConcurrency"]
        t.put(out, native, "reservedConcurrency", value, source=f"{where}.reservedConcurrency", origin="file")
    for key in ("architecture", "tags"):
        value, origin = _inherit(spec, provider, key, "x86_64" if key == "architecture" else None)
        if value is not None:
            t.extras[name][key] = (value, origin)
    events = spec.get("events") or []
    if not isinstance(events, list):
        raise ctx.fail(f"{where}.events", "must be a list of events")
    out_events: list[dict[str, Any]] = []
    for i, ev in enumerate(events):
        ew = f"{where}.events[{i}]"
        if not isinstance(ev, dict) or len(ev) != 1:
            raise ctx.fail(ew, "each event is '- <type>: ...'")
        ((kind, body),) = ev.items()
        if kind != "stream":
            t.note(f"{ew} ({kind}): not applied locally (only stream events run here)")
            continue
        native_ev = f"{native}.events[{len(out_events)}].stream"
        out_events.append({"stream": _event(ctx, t, name, body=body, where=f"{ew}.stream", native=native_ev)})
    if out_events:
        out["events"] = out_events
    return out


def _inherit(spec: Mapping[str, Any], provider: Mapping[str, Any], key: str, default: Any) -> tuple[Any, str]:
    if key in spec:
        return spec[key], "file"
    if key in provider:
        return provider[key], f"provider.{key}"
    return default, "Serverless default"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _event(ctx: ConfigFile, t: Translation, function: str, *, body: Any, where: str, native: str) -> dict[str, Any]:
    t.paths[native] = where
    if isinstance(body, str):
        body = {"arn": body}
    if not isinstance(body, dict):
        raise ctx.fail(where, "must be a stream ARN or a mapping with 'arn'")
    out: dict[str, Any] = {}
    for key in body:
        if key not in _EVENT_KEYS:
            raise ctx.fail(
                f"{where}.{key}", f"unknown key of a stream event (allowed: {', '.join(sorted(_EVENT_KEYS))})"
            )
    arn = body.get("arn")
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise ctx.fail(f"{where}.arn", f"{arn!r} is not an ARN (a stream ARN, or Fn::GetAtt [Stream, Arn])")
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    kind = body.get("type", service)
    if kind != "kinesis" or service != "kinesis":
        key = f"{where}.type" if "type" in body and kind != "kinesis" else f"{where}.arn"
        raise ctx.fail(key, f"{arn!r} (type {kind}) is not a Kinesis stream: only Kinesis streams run here")
    if _CONSUMER_ARN.match(arn):  # an EventSourceArn that is already a consumer's: read through it
        t.put(out, native, "consumer", arn, source=f"{where}.arn", origin="file")
        arn = arn.split("/consumer/", 1)[0]
    for key, value in body.items():
        if key in ("type", "consumer", "destinations", "arn"):
            continue
        t.put(out, native, key, value, source=f"{where}.{key}", origin="file")
    t.put(out, native, "arn", arn, source=f"{where}.arn", origin="file")
    for key, default in _EVENT_DEFAULTS.items():
        if key not in out:
            t.put(out, native, key, default, source=where, origin="Serverless default")
    if "destinations" in body:
        out["destinations"] = {"onFailure": _on_failure(ctx, body["destinations"], f"{where}.destinations")}
        t.paths[f"{native}.destinations"] = f"{where}.destinations"
        t.origins[f"{native}.destinations"] = "file"
    value = body.get("consumer")
    if value is not None and value is not False:
        if value is not True and not (isinstance(value, str) and _CONSUMER_ARN.match(value)):
            raise ctx.fail(f"{where}.consumer", f"{value!r} is not allowed (allowed: true, or a stream consumer ARN)")
        # read through SubscribeToShard; ``true`` registers the function's own consumer, as Serverless does
        t.put(out, native, "consumer", value, source=f"{where}.consumer", origin="file")
    return out


def _on_failure(ctx: ConfigFile, value: Any, where: str) -> Any:
    if not isinstance(value, dict) or set(value) - {"onFailure", "onSuccess"}:
        raise ctx.fail(where, "must be {onFailure: <ARN> or {arn, type: sqs|sns}}")
    if "onSuccess" in value:
        raise ctx.fail(f"{where}.onSuccess", "stream events have no on-success destination")
    d = value.get("onFailure")
    if isinstance(d, str):
        return d
    if not isinstance(d, dict) or not isinstance(d.get("arn"), str):
        raise ctx.fail(f"{where}.onFailure", "must be an ARN, or {arn: <ARN>, type: sqs|sns}")
    kind = d.get("type")
    service = d["arn"].split(":")[2] if d["arn"].count(":") >= 5 else ""
    if kind is not None and kind != service:
        raise ctx.fail(f"{where}.onFailure.type", f"{kind!r} does not match the ARN's service ({service!r})")
    return d["arn"]
