"""Functions from CloudFormation-named properties (``AWS::Lambda::Function``, and SAM's ``AWS::Serverless::Function``
after Globals): the handler file, Timeout, MemorySize, Environment, reserved concurrency, a Python runtime; what a
local run does not apply is said once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._config import ConfigFile
from .provenance import Translation

__all__ = ["CFN_FUNCTION_KEYS", "FUNCTION_NOT_APPLIED", "function", "to_int"]


def to_int(value: Any) -> Any:
    """A whole number written as a string (a parameter's value) as an int; anything else as it is."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


FUNCTION_NOT_APPLIED = {
    "Role",
    "Policies",
    "VpcConfig",
    "Layers",
    "ProvisionedConcurrencyConfig",
    "TracingConfig",
    "Tracing",
    "DeadLetterConfig",
    "DeadLetterQueue",
    "KmsKeyArn",
    "FileSystemConfigs",
    "ImageConfig",
    "CodeSigningConfigArn",
    "EphemeralStorage",
    "SnapStart",
    "LoggingConfig",
    "RuntimeManagementConfig",
    "AutoPublishAlias",
    "DeploymentPreference",
    "EventInvokeConfig",
    "PermissionsBoundary",
    "Description",
    "PackageType",
    "RecursiveLoop",
    "FunctionUrlConfig",
    "AutoPublishCodeSha256",
    "VersionDescription",
    "AssumeRolePolicyDocument",
}


def function(
    ctx: ConfigFile,
    t: Translation,
    *,
    name: str,
    props: Mapping[str, Any],
    where: Mapping[str, str],
    origins: Mapping[str, str],
    code: str | None,
    dialect_default: str,
) -> dict[str, Any]:
    """A function in shardline.yml's form from CloudFormation-named properties (``Handler``, ``Runtime``, ``Timeout``,
    ``MemorySize``, ``Environment.Variables``...). ``where``/``origins``: each property's key path and origin;
    ``code``: the code directory relative to the file (SAM's CodeUri)."""
    native = f"functions.{name}"
    out: dict[str, Any] = {}
    runtime = props.get("Runtime")
    if runtime is None:
        raise ctx.fail(where.get("Runtime", where["_"]), f"function {name}: Runtime is required")
    if not str(runtime).startswith("python3"):
        raise ctx.fail(
            where.get("Runtime", where["_"]),
            f"function {name} uses runtime {runtime!r}: only Python runtimes (python3.x) run here",
        )
    t.extras.setdefault(name, {})["runtime"] = (runtime, _o(origins, where, "Runtime"))
    handler = props.get("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise ctx.fail(where.get("Handler", where["_"]), f"function {name}: Handler must be 'module.function'")
    module, _, attr = handler.rpartition(".")
    path = module.replace(".", "/")
    if code:
        path = f"{code.strip('/').removeprefix('./')}/{path}" if code.strip("/.") else path
    t.put(
        out,
        native,
        "handler",
        f"{path}.{attr}",
        source=where.get("Handler", where["_"]),
        origin=_o(origins, where, "Handler"),
    )
    for key, native_key in (("Timeout", "timeout"), ("MemorySize", "memorySize")):
        if key in props:
            t.put(out, native, native_key, to_int(props[key]), source=where[key], origin=_o(origins, where, key))
        else:
            default = 3 if key == "Timeout" else 128
            t.put(out, native, native_key, default, source=where["_"], origin=dialect_default)
    if "ReservedConcurrentExecutions" in props:
        value = to_int(props["ReservedConcurrentExecutions"])
        src = where["ReservedConcurrentExecutions"]
        t.put(
            out,
            native,
            "reservedConcurrency",
            value,
            source=src,
            origin=_o(origins, where, "ReservedConcurrentExecutions"),
        )
    env = props.get("Environment")
    if env is not None:
        variables = env.get("Variables") if isinstance(env, dict) else None
        if not isinstance(variables, dict):
            raise ctx.fail(where["Environment"], "must be {Variables: {NAME: value}}")
        values = {str(k): _env(v) for k, v in variables.items()}
        t.put(
            out,
            native,
            "environment",
            values,
            source=f"{where['Environment']}.Variables",
            origin=origins.get("Environment", "file"),
        )
    for key in ("Architectures", "Tags"):
        if key in props:
            t.extras.setdefault(name, {})[key] = (props[key], _o(origins, where, key))
    for key in props:
        if key in FUNCTION_NOT_APPLIED:
            t.note(f"{where.get(key, where['_'])}: not applied locally (function {name})")
    return out


def _o(origins: Mapping[str, str], where: Mapping[str, str], key: str) -> str:
    return origins.get(key, f"file: {where.get(key, where['_'])}")


def _env(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


CFN_FUNCTION_KEYS = {
    "Handler",
    "Runtime",
    "Timeout",
    "MemorySize",
    "Environment",
    "FunctionName",
    "Code",
    "ReservedConcurrentExecutions",
    "Architectures",
    "Tags",
} | FUNCTION_NOT_APPLIED
