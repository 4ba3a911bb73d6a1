"""AWS SAM templates: ``AWS::Serverless::Function`` with ``Events: {Type: Kinesis}``, ``Globals.Function``, plus
everything a CloudFormation template has (cloudformation.py).

SAM sets no event source mapping defaults of its own (the API's apply) and requires ``StartingPosition``; a
function's Timeout defaults to 3 s and MemorySize to 128 MB. ``Globals.Function`` gives every function its values
(Environment variables and Tags merged, the function's own winning). ``DestinationConfig.OnFailure.Type`` is SAM's
hint for the IAM policy: accepted, the destination ARN decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .cloudformation import FunctionStep, Template, TemplateDialect, esm_event
from .functions import CFN_FUNCTION_KEYS, function

__all__ = ["SAM"]

_SAM_FUNCTION_KEYS = CFN_FUNCTION_KEYS | {"CodeUri", "InlineCode", "Events", "Handler", "Runtime"}
_MERGED = ("Environment", "Tags")


def _functions(tpl: Template, doc: Mapping[str, Any]) -> FunctionStep:
    ctx, t = tpl.ctx, tpl.t
    globals_ = doc.get("Globals") or {}
    if not isinstance(globals_, dict):
        raise ctx.fail("Globals", "must be a mapping")
    for section in globals_:
        if section != "Function":
            t.note(f"Globals.{section}: not applied locally")
    gfn = tpl.resolver.resolve(globals_.get("Function") or {}, "Globals.Function")
    if not isinstance(gfn, dict):
        raise ctx.fail("Globals.Function", "must be a mapping")
    for key in gfn:
        if key not in _SAM_FUNCTION_KEYS or key == "Events":
            raise ctx.fail(f"Globals.Function.{key}", "not a property Globals.Function can set")

    def add(lid: str) -> str:
        prefix = f"Resources.{lid}.Properties"
        own = tpl.properties(lid)
        for key in own:
            if key not in _SAM_FUNCTION_KEYS:
                raise ctx.fail(f"{prefix}.{key}", "unknown AWS::Serverless::Function property")
        props: dict[str, Any] = {}
        where: dict[str, str] = {"_": f"Resources.{lid}"}
        origins: dict[str, str] = {}
        for key, value in gfn.items():
            if key == "Events":
                continue
            props[key] = value
            where[key] = f"Globals.Function.{key}"
            origins[key] = f"Globals.Function.{key}"
        for key, written in own.items():
            value = written
            if key in _MERGED and isinstance(props.get(key), dict) and isinstance(value, dict):
                value = _merge(props[key], value)
                origins[key] = f"Globals.Function.{key} + {prefix}.{key}"
            else:
                origins.pop(key, None)
            props[key] = value
            where[key] = f"{prefix}.{key}"
        name = tpl.resolver.names.get(lid, lid)
        code = props.get("CodeUri")
        if isinstance(code, dict):
            t.note(
                f"{where['CodeUri']}: an S3 location is not applied locally (the handler is looked up beside the "
                "template)"
            )
            code = None
        if "InlineCode" in props:
            raise ctx.fail(where["InlineCode"], "InlineCode is not run locally: put the code in a file and set CodeUri")
        fn = function(
            ctx,
            t,
            name=name,
            props=props,
            where=where,
            origins=origins,
            code=str(code) if code else None,
            dialect_default="SAM default",
        )
        t.native["functions"][name] = fn
        t.paths[f"functions.{name}"] = f"Resources.{lid}"
        events = own.get("Events") or {}
        if not isinstance(events, dict):
            raise ctx.fail(f"{prefix}.Events", "must be a mapping of event id to {Type, Properties}")
        for eid, ev in events.items():
            ew = f"{prefix}.Events.{eid}"
            if not isinstance(ev, dict) or "Type" not in ev:
                raise ctx.fail(ew, "an event needs a Type")
            if ev["Type"] != "Kinesis":
                t.note(f"{ew} (Type {ev['Type']}): not applied locally (only Kinesis events run here)")
                continue
            ev_props = ev.get("Properties") or {}
            if not isinstance(ev_props, dict):
                raise ctx.fail(f"{ew}.Properties", "must be a mapping")
            evs = fn.setdefault("events", [])
            native = f"functions.{name}.events[{len(evs)}].stream"
            evs.append(
                {
                    "stream": esm_event(
                        ctx, t, ev_props, where=f"{ew}.Properties", native=native, arn_key="Stream", dialect="AWS SAM"
                    )
                }
            )
        return name

    return add


SAM = TemplateDialect("AWS SAM", "AWS::Serverless::Function", _functions)


def _merge(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in own.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
