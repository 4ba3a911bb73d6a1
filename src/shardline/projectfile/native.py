"""shardline.yml, the native form: read with the CloudFormation tags understood (so a stray ``!Ref`` is reported
in words, not as a YAML constructor error), then built by ``shardline.runtime.config``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._config import ConfigFile
from .provenance import Translation

__all__ = ["load_native"]


def load_native(ctx: ConfigFile, doc: Mapping[str, Any]) -> Translation:
    """The file as written; every value present is the file's own."""
    t = Translation("shardline.yml")
    t.native = dict(doc)
    _mark(t, doc.get("streams"), "streams")
    _mark(t, doc.get("functions"), "functions")
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
