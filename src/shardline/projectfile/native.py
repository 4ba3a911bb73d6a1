"""shardline.yml, the native form: read with the CloudFormation tags understood (so a stray ``!Ref`` is reported
in words, not as a YAML constructor error), then built by ``shardline.runtime.config``.

A ``provider:`` section gives every function its ``timeout``, ``memorySize`` and ``environment`` (merged under the
function's own), as in a serverless.yml; its ``runtime`` must be Python; anything else in it is said not applied.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .._config import ConfigFile
from .provenance import Translation

__all__ = ["load_native"]

_INHERITED = ("timeout", "memorySize", "environment")


def load_native(ctx: ConfigFile, doc: Mapping[str, Any]) -> Translation:
    """The file as written; every value present is the file's own, or ``provider``'s."""
    t = Translation("shardline.yml")
    t.native = copy.deepcopy(dict(doc))
    _mark(t, doc.get("streams"), "streams")
    _mark(t, doc.get("functions"), "functions")
    provider = doc.get("provider")
    if provider is None:
        return t
    if not isinstance(provider, dict):
        raise ctx.fail("provider", "must be a mapping (timeout, memorySize, environment, runtime)")
    runtime = provider.get("runtime")
    if runtime is not None and not str(runtime).startswith("python3"):
        raise ctx.fail("provider.runtime", f"{runtime!r}: only Python runtimes (python3.x) run here")
    for key in provider:
        if key not in (*_INHERITED, "runtime", "name", "stage", "region"):
            t.note(f"provider.{key}: not applied locally")
    functions = t.native.get("functions")
    if not isinstance(functions, dict):
        return t
    for name, spec in functions.items():
        if not isinstance(spec, dict):
            continue
        for key in _INHERITED:
            if key not in provider:
                continue
            path = f"functions.{name}.{key}"
            if key == "environment" and isinstance(provider[key], dict):
                own = spec.get(key) or {}
                spec[key] = {**provider[key], **own} if isinstance(own, dict) else own
                t.origins[path] = "provider.environment + file" if own else "provider.environment"
                t.paths.setdefault(path, "provider.environment")
            elif key not in spec:
                spec[key] = provider[key]
                t.origins[path] = f"provider.{key}"
                t.paths[path] = f"provider.{key}"
    return t


def _mark(t: Translation, node: Any, path: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}"
            t.origins[sub] = "file"
            t.paths[sub] = sub
            _mark(t, value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _mark(t, value, f"{path}[{i}]")
