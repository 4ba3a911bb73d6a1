"""The layer direction of DESIGN.md, enforced by walking every import of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "shardline"

LEAVES = {"errors", "models", "settings", "clock", "_fsutil", "_config"}
# layer -> the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "leaf": set(),
    "storage": {"leaf"},
    "engine": {"storage", "leaf"},
    "api": {"engine", "leaf"},
    "runtime": {"engine", "storage", "leaf"},
    "metrics": {"engine", "storage", "runtime", "leaf"},
    "cli": {"package", "api", "engine", "storage", "runtime", "metrics", "leaf"},
    "package": {"api", "engine", "storage", "runtime", "metrics", "leaf"},
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
        if path.name == "cli.py":
            continue
        assert not any(layer_of(t) == "cli" for t in imports_of(path)), path
