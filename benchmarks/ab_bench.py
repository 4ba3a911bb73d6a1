"""The same benchmark against two versions of shardline in one run: an earlier commit (the base) and this tree.

```
.venv/bin/python benchmarks/ab_bench.py --base REF                 # api_bench and engine_bench, --quick, 3 rounds
.venv/bin/python benchmarks/ab_bench.py --base REF --bench api_bench --rounds 5 --full
    --base REF        the commit to compare with (a tag, a branch, a hash)
    --head REF        check this commit out too, beside the base, instead of running this tree (default: this tree)
    --bench NAME      api_bench, engine_bench, runtime_bench or put_path_bench (repeatable; default the first two)
    --rounds N        rounds per side (default 3); the two sides alternate, the first side alternating too
    --full            each benchmark's full run instead of --quick
    --json FILE       also write every round's figures as JSON
```

The base is checked out into a scratch git worktree and its C extensions are built in place; each round then runs
this tree's benchmark script with ``PYTHONPATH`` pointing at one side's ``src`` (the benchmark's own child processes,
such as the ``shardline serve`` that api_bench starts, inherit it). Both sides run the same script on the same
machine, alternating, so a busy neighbour falls on both alike. Printed per figure: the median of each side and
head/base. Figures are the numeric results whose names end in ``_per_s``, ``rec_s``, ``_ms``, ``_us`` or ``ratio``;
a row of a table of results is named by its record size, fsync mode, writers, shards or kind.

Where the code is imported from moves the figures by about 5% on some hosts (the same code ran slower from the
worktree than from a scratch directory). For a comparison finer than that, give ``--head`` too: both sides are then
checked out and built the same way, side by side in the scratch directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIGURE = re.compile(r"(_per_s|rec_s|_ms|_us|ratio|ratio_to_1)$")
ROW_KEYS = ("record_bytes", "fsync", "writers", "shards", "kind")  # what names a row of a table of results
SKIP = re.compile(r"(^|\.)(rss_fill|max_ms)($|\.)")  # sampled series and single outliers: not comparable figures


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, row in enumerate(value):
            label = ",".join(f"{k}={row[k]}" for k in ROW_KEYS if k in row) or str(i)
            out.update(flatten(row, f"{prefix}[{label}]"))
    elif (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and FIGURE.search(prefix)
        and not SKIP.search(prefix)
    ):
        out[prefix] = float(value)
    return out


def checkout(ref: str, scratch: Path, name: str = "base") -> Path:
    tree = scratch / name
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), ref], check=True)
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        check=False,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        print(f"the {name}'s C extensions did not build; it runs its pure-Python references:\n{build.stderr[-2000:]}")
    return tree


def run_once(bench: str, src: Path, full: bool, scratch: Path) -> dict[str, float]:
    out = scratch / f"{bench}.json"
    args = [sys.executable, str(HERE / f"{bench}.py"), "--json", str(out), "--dir", str(scratch)]
    if not full:
        args.append("--quick")
    if bench == "api_bench":
        args.append("--no-peer")
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{bench} failed against {src}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    figures = flatten(json.loads(out.read_text()))
    out.unlink()
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description="one benchmark, two versions of shardline, alternating in one run")
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument(
        "--bench",
        action="append",
        choices=["api_bench", "engine_bench", "runtime_bench", "put_path_bench"],
        default=None,
    )
    ap.add_argument("--head", default=None, help="a commit to check out as the head (default: this tree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    benches = args.bench or ["api_bench", "engine_bench"]
    scratch = Path(tempfile.mkdtemp(prefix="shardline-ab-"))
    head_rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.head or "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        base = checkout(args.base, scratch)
        head = checkout(args.head, scratch, "head") if args.head else ROOT
        sides = {"base": base / "src", "head": head / "src"}
        for bench in benches:
            results[bench] = {"base": [], "head": []}
            for i in range(args.rounds):
                order = ["base", "head"] if i % 2 == 0 else ["head", "base"]
                for side in order:
                    print(f"{bench} round {i + 1}/{args.rounds}: {side}", flush=True)
                    results[bench][side].append(run_once(bench, sides[side], args.full, scratch))
    finally:
        for name in ("base", "head"):
            if (scratch / name).exists():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(scratch / name)], check=False
                )
        shutil.rmtree(scratch, ignore_errors=True)
    where = "checked out beside the base" if args.head else "this tree, with its uncommitted changes"
    print(f"\nbase {args.base}, head {head_rev} ({where}); medians of {args.rounds}")
    for bench, sides_res in results.items():
        names = sorted(set.intersection(*(set(r) for r in sides_res["base"] + sides_res["head"])))
        width = max((len(n) for n in names), default=10)
        print(f"\n{bench}\n{'figure':<{width}}  {'base':>12}  {'head':>12}  head/base")
        for name in names:
            b = statistics.median(r[name] for r in sides_res["base"])
            h = statistics.median(r[name] for r in sides_res["head"])
            ratio = f"{h / b:9.3f}" if b else "        -"
            print(f"{name:<{width}}  {b:12.4g}  {h:12.4g}  {ratio}")
    if args.json is not None:
        args.json.write_text(json.dumps({"base": args.base, "head": head_rev, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
