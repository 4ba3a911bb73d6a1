"""examples/cdc/demo.py, the database -> stream -> function example, runs end to end and its replica matches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "cdc" / "demo.py"


@pytest.mark.slow
def test_cdc_example_runs_with_one_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--orders", "200", "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "matches shop.orders" in done.stdout
