"""The example project files (written as each dialect's own documentation writes them) and a helper to write
small variations of them."""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERLESS = HERE / "serverless" / "serverless.yml"
SAM = HERE / "sam" / "template.yaml"
CLOUDFORMATION = HERE / "cloudformation" / "template.yaml"


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of the example project of ``src`` in ``dst``; returns the copied file."""
    shutil.copytree(src.parent, dst, dirs_exist_ok=True)
    return dst / src.name


def write(dir: Path, text: str, name: str = "template.yaml", handler: str = "app.py") -> Path:
    """A project file with a Python handler file beside it."""
    (dir / handler).write_text("def handler(event, context):\n    return None\n")
    path = dir / name
    path.write_text(text)
    return path
