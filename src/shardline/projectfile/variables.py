"""Serverless Framework variables: ``${self:...}``, ``${opt:...}``, ``${sls:...}``, ``${env:...}``,
``${aws:region}``, ``${aws:accountId}``, ``${param:...}``, nested (``${self:custom.${sls:stage}.arn}``) and with
fallbacks (``${opt:stage, 'dev'}``, ``${env:A, ${self:custom.a}}``).

Sources a local run cannot reach (``ssm``, ``cf``, ``s3``, ``file``...) take their fallback when one is written, and
are an error naming the key otherwise. A variable that is the whole value keeps its type (a mapping, a number).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._config import ConfigFile

__all__ = ["Variables"]

_INNER = re.compile(r"\$\{([^${}]*)\}")  # a variable with no variable inside it
_WHOLE = re.compile(r"^\$\{([^${}]*)\}$")
_MAX_DEPTH = 20
_UNSET = object()


@dataclass
class Variables:
    """Resolves the variables of one serverless.yml. ``options``: ``--stage`` (and any ``opt:``); ``params``:
    ``--param KEY=VALUE``; ``used`` records every variable read and its value, for ``validate``."""

    ctx: ConfigFile
    doc: Mapping[str, Any]
    stage: str
    region: str
    account_id: str
    options: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    used: dict[str, tuple[Any, str]] = field(default_factory=dict)
    at: dict[str, list[str]] = field(default_factory=dict)  # key path -> the variables read there
    notes: list[str] = field(default_factory=list)

    def resolve(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise self.ctx.fail(where, "variables refer to each other in a cycle")
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}" if where else str(k), depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        text = value
        while True:
            whole = _WHOLE.match(text)
            if whole:
                return self._one(whole.group(1), where, depth)
            m = _INNER.search(text)
            if m is None:
                return text
            got = self._one(m.group(1), where, depth)
            if isinstance(got, dict | list):
                raise self.ctx.fail(where, f"${{{m.group(1)}}} is a {type(got).__name__}, inside a string")
            piece = _text(got)
            before = text[: m.start()]
            if before.rstrip().endswith(",") and before.count("${") > before.count("}") and "'" not in piece:
                piece = f"'{piece}'"  # a fallback of another variable: a value, never a source
            text = before + piece + text[m.end() :]

    def _one(self, expr: str, where: str, depth: int) -> Any:
        """``source:address, fallback, ...`` -> the first that resolves."""
        parts = _split_fallbacks(expr)
        for i, written in enumerate(parts):
            got = self._source(written.strip(), where, depth, has_fallback=i < len(parts) - 1)
            if got is not _UNSET:
                return got
        raise self.ctx.fail(where, f"${{{expr}}} does not resolve and has no fallback")

    def _source(self, ref: str, where: str, depth: int, *, has_fallback: bool) -> Any:
        literal = _literal(ref)
        if literal is not _UNSET:
            return literal
        source, sep, address = ref.partition(":")
        if not sep:
            raise self.ctx.fail(where, f"'{ref}' is not a variable (source:address) nor a quoted value")
        address = address.strip()
        value: Any = _UNSET
        if source == "self":
            value = self._self(address, where, depth)
        elif source == "opt":
            value = self.options.get(address, _UNSET)
        elif source == "sls":
            value = {"stage": self.stage, "instanceId": "local"}.get(address, _UNSET)
        elif source == "env":
            value = self.env.get(address, _UNSET)
        elif source == "aws":
            value = {"region": self.region, "accountId": self.account_id}.get(address, _UNSET)
        elif source == "param":
            value = self._param(address)
        else:
            if not has_fallback:
                raise self.ctx.fail(
                    where,
                    f"${{{ref}}}: the '{source}' source is not available in a local run; write a fallback "
                    f"(${{{ref}, 'value'}}) or the value itself",
                )
            self.notes.append(f"{where}: ${{{ref}}} is not resolved locally (its fallback is used)")
            return _UNSET
        if value is not _UNSET:
            self.used[f"${{{ref}}}"] = (value, _origin(source, address, self))
            self.at.setdefault(where, []).append(f"${{{ref}}}")
        return value

    def _self(self, address: str, where: str, depth: int) -> Any:
        node: Any = self.doc
        for key in address.split(".") if address else []:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return _UNSET
        if address == "provider.stage":
            return self.stage
        return self.resolve(node, f"{where} (via self:{address})", depth + 1)

    def _param(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        section = self.doc.get("params")
        if isinstance(section, dict):
            for stage in (self.stage, "default"):
                values = section.get(stage)
                if isinstance(values, dict) and name in values:
                    return values[name]
        return _UNSET


def _origin(source: str, address: str, v: Variables) -> str:
    if source == "opt":
        return f"--{address}"
    if source == "param":
        return f"--param {address}" if address in v.params else f"params.{v.stage}"
    if source == "env":
        return f"environment variable {address}"
    return f"{source}:{address}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _literal(ref: str) -> Any:
    if len(ref) >= 2 and ref[0] == ref[-1] and ref[0] in "'\"":
        return ref[1:-1]
    try:
        return int(ref)
    except ValueError:
        pass
    if ref in ("true", "false"):
        return ref == "true"
    return _UNSET


def _split_fallbacks(expr: str) -> list[str]:
    """Split on commas outside quotes."""
    parts, buf, quote = [], "", ""
    for ch in expr:
        if quote:
            buf += ch
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            buf += ch
        elif ch == ",":
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return parts
