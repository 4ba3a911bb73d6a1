"""Regenerate src/shardline/api/model.json from the Kinesis service model that ships with botocore.

The API layer validates requests against these shapes, so its constraint messages match what AWS derives from the
same model. Run after upgrading botocore: ``.venv/bin/python tools/gen_api_model.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.loaders

OUT = Path(__file__).resolve().parents[1] / "src" / "shardline" / "api" / "model.json"
KEEP = ("type", "required", "min", "max", "pattern", "enum", "member", "key", "value", "members")


def build() -> dict[str, Any]:
    """model.json's content, from the botocore installed here."""
    model: dict[str, Any] = botocore.loaders.Loader().load_service_model("kinesis", "service-2")
    shapes: dict[str, Any] = model["shapes"]
    out_shapes: dict[str, Any] = {}

    def visit(name: str) -> None:
        if name in out_shapes:
            return
        src = shapes[name]
        dst = {k: src[k] for k in KEEP if k in src}
        out_shapes[name] = dst
        if "members" in src:
            dst["members"] = {m: {"shape": spec["shape"]} for m, spec in src["members"].items()}
            for spec in src["members"].values():
                visit(spec["shape"])
        for k in ("member", "key", "value"):
            if k in src:
                dst[k] = {"shape": src[k]["shape"]}
                visit(src[k]["shape"])

    ops: dict[str, Any] = {}
    for op_name, op in sorted(model["operations"].items()):
        entry: dict[str, Any] = {}
        if "input" in op:
            entry["input"] = op["input"]["shape"]
            visit(op["input"]["shape"])
        if "output" in op:  # only its name: an operation without one answers an empty body
            entry["output"] = op["output"]["shape"]
        ops[op_name] = entry
    return {
        "metadata": {k: model["metadata"][k] for k in ("apiVersion", "targetPrefix", "jsonVersion")},
        "operations": ops,
        "shapes": dict(sorted(out_shapes.items())),
    }


def main() -> None:
    doc = build()
    ops = doc["operations"]
    out_shapes = doc["shapes"]
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT} ({len(ops)} operations, {len(out_shapes)} shapes)")


if __name__ == "__main__":
    main()
