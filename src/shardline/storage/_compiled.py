"""The optional compiled accelerators of the storage layer (built by setup.py where a C compiler is present)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["compiled"]


def compiled(name: str) -> ModuleType | None:
    """The compiled module ``shardline.storage.<name>``, or None when it was not built or SHARDLINE_PURE_PYTHON=1
    asks for the pure-Python references (which give the same results: the tests compare them)."""
    if os.environ.get("SHARDLINE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        return None
