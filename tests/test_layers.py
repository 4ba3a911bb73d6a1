"""The layer direction of docs/architecture.md ("Layers"), enforced by walking every import of the package."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import shardline.engine
import shardline.engine.view
from shardline.engine import Engine

PKG = Path(__file__).resolve().parents[1] / "src" / "shardline"

LEAVES = {"errors", "models", "settings", "clock", "_fsutil", "_config", "_tasks"}
# layer -> the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "leaf": set(),
    "storage": {"leaf"},
    "engine": {"storage", "leaf"},
    "api": {"engine", "leaf"},
    "runtime": {"engine", "storage", "leaf"},
    "sources": {"engine", "leaf"},  # CDC sources: at the runtime's level, writing through the engine or boto3
    "metrics": {"engine", "storage", "runtime", "sources", "leaf"},
    # project files (serverless.yml, SAM, CloudFormation) resolved into the runtime's ProjectConfig
    "projectfile": {"runtime", "engine", "storage", "leaf"},
    # compose: what serve and up run (engine, project, monitor, app on one clock); only the cli imports it
    "compose": {"package", "api", "engine", "storage", "runtime", "sources", "metrics", "projectfile", "leaf"},
    "cli": {"compose", "package", "api", "engine", "storage", "runtime", "sources", "metrics", "projectfile", "leaf"},
    "package": {"api", "engine", "storage", "runtime", "metrics", "projectfile", "leaf"},
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "shardline", module
    if len(parts) == 1 or parts[1] == "__init__":
        return "package"
    head = parts[1]
    if not (PKG / head).is_dir() and not (PKG / f"{head}.py").exists():
        return "package"  # a name defined in shardline/__init__.py
    if head in LEAVES:
        return "leaf"
    if head in ("cli", "__main__"):
        return "cli"
    return head


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("shardline")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    out += [f"{target}.{a.name}" for a in node.names]
                else:
                    out.append(target)
            elif node.module and node.module.startswith("shardline"):
                out.append(node.module)
    return out


FILES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path) -> None:
    here = "package" if path == PKG / "__init__.py" else layer_of(module_name(path) + ".x" * (path.stem == "__init__"))
    for target in imports_of(path):
        there = layer_of(target)
        if there == here and here != "leaf":
            continue
        assert there in ALLOWED[here], f"{module_name(path)} ({here}) imports {target} ({there})"


def test_leaves_import_nothing_from_shardline() -> None:
    for name in LEAVES:
        path = PKG / f"{name}.py"
        assert imports_of(path) == [], f"{name} imports {imports_of(path)}"


def test_nothing_imports_cli() -> None:
    for path in FILES:
        if path.parent == PKG / "cli" or path == PKG / "__main__.py":  # (``python -m shardline`` is the cli itself)
            continue
        assert not any(layer_of(t) == "cli" for t in imports_of(path)), path


def test_only_the_cli_imports_the_composition() -> None:
    for path in FILES:
        if layer_of(module_name(path) + ".x" * (path.stem == "__init__")) == "cli" or path == PKG / "compose.py":
            continue
        assert not any(layer_of(t) == "compose" for t in imports_of(path)), path


# ----------------------------------------------------------------- one way in to the engine
# Outside engine/ and storage/, the engine is read through its façade (its public methods and properties, the
# settings and clock it was made with) and its read view (engine/view.py), never through its state objects.
ENGINE_API = frozenset({n for n in dir(Engine) if not n.startswith("_")} | {"settings", "clock", "view"})
ENGINE_NAMES = frozenset({"engine", "eng"})  # how code above the engine names an Engine
# What may be imported from engine/ and storage/ there (exception classes too): the façade and its read view, the
# pure encodings of sequence numbers and hash keys, and the latency histogram the runtime keeps for its own
# invocations. Every other name there is engine state (streams, shards, logs, journal, counters) or its machinery.
PUBLIC_IMPORTS: dict[str, frozenset[str]] = {
    "shardline.engine": frozenset(shardline.engine.__all__),
    "shardline.engine.view": frozenset(shardline.engine.view.__all__),
    "shardline.engine.sequence": frozenset({"*"}),
    "shardline.engine.hashing": frozenset({"*"}),
    "shardline.engine.stats": frozenset({"Histogram", "LATENCY_BUCKETS_MS"}),
}
ABOVE_ENGINE = [p for p in FILES if not p.is_relative_to(PKG / "engine") and not p.is_relative_to(PKG / "storage")]


def _is_engine(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id in ENGINE_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr in ENGINE_NAMES
    )


def _through_engine(node: ast.expr) -> bool:
    """Whether an expression reaches its value through an engine or its view (``engine.view.x``, ``self.view``)."""
    while True:
        if _is_engine(node) or (isinstance(node, ast.Name) and node.id == "view"):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "view":
            return True
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return False


def _importable(module: str, name: str) -> bool:
    public = PUBLIC_IMPORTS.get(module, frozenset())
    if "*" in public or name in public:
        return True
    obj = getattr(importlib.import_module(module), name, None)
    if inspect.ismodule(obj):
        return "*" in PUBLIC_IMPORTS.get(obj.__name__, frozenset())
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def reach_ins(path: Path) -> list[str]:
    """Every read of engine internals in a module above the engine: an engine attribute outside its API, a private
    attribute of anything reached through an engine, an engine or storage name that is not public."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{mod}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute):
            if _is_engine(node.value) and node.attr not in ENGINE_API:
                found.append(f"{where} reads engine.{node.attr}")
            elif node.attr.startswith("_") and not node.attr.startswith("__") and _through_engine(node.value):
                found.append(f"{where} reads .{node.attr} through an engine")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
            named = node.args[1] if len(node.args) >= 2 and _is_engine(node.args[0]) else None
            if isinstance(named, ast.Constant) and named.value not in ENGINE_API:
                found.append(f"{where} reads engine.{named.value!s} by name")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith(("shardline.engine", "shardline.storage")):
                found += [f"{where} imports {target}.{a.name}" for a in node.names if not _importable(target, a.name)]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(("shardline.engine.", "shardline.storage")) and a.name not in PUBLIC_IMPORTS:
                    found.append(f"{where} imports {a.name}")
    return found


@pytest.mark.parametrize("path", ABOVE_ENGINE, ids=lambda p: str(p.relative_to(PKG)))
def test_layers_above_read_the_engine_only_through_its_api_and_view(path: Path) -> None:
    found = reach_ins(path)
    assert not found, "read through Engine.view (engine/view.py) instead:\n" + "\n".join(found)
