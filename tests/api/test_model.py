"""src/shardline/api/model.json is what tools/gen_api_model.py derives from the botocore installed here: an upgrade of
botocore that changes Kinesis's model fails this test until the file is regenerated."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_model_matches_the_installed_botocore() -> None:
    spec = importlib.util.spec_from_file_location("gen_api_model", ROOT / "tools" / "gen_api_model.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    shipped = json.loads((ROOT / "src" / "shardline" / "api" / "model.json").read_text())
    assert shipped == gen.build(), "regenerate with: .venv/bin/python tools/gen_api_model.py"
