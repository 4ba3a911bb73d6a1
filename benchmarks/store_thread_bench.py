"""What the mapping's store thread costs stream functions with small batches, and what writing checkpoints at once
gives back.

```
.venv/bin/python benchmarks/store_thread_bench.py              # batch sizes 100 and 1,000, 5 rounds
.venv/bin/python benchmarks/store_thread_bench.py --quick      # one batch size, 3 rounds
    --records N     backlog per run (default 40,000)
```

One process: an Engine (fsync=always) with a backlog of 100 B records in 4 shards, read from TRIM_HORIZON by a fresh
mapping per run with an in-process function that returns None (runtime_bench's throughput run). Each round runs the
mapping three times, alternating:

- **shipped**: checkpoints written at once when the SQLite file takes them without waiting
  (``SqliteLeaseStore.checkpoint_now``), every other store call on the mapping's store thread;
- **thread**: every store call on the store thread, checkpoints included (as before ``checkpoint_now``);
- **inline**: every store call made on the event loop (the baseline: what the calls cost with no thread at all).

For the calls made through the store thread it also reports the time the shard waited for each (``await``), and the
wall and CPU time of the call itself where it ran: the gap between the two is time the thread spent not running.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import uvloop

import runtime_bench as rb  # (its backlog, mapping and run helpers; this script's directory is on sys.path)
from shardline import Engine, Settings
from shardline.runtime.functions import InProcessFunction
from shardline.runtime.leases import SqliteLeaseStore
from shardline.runtime.leases.thread import StoreThread

P = ParamSpec("P")
T = TypeVar("T")

SHIPPED = StoreThread.call
AT_ONCE = SqliteLeaseStore.checkpoint_now
TIMES: Counter[str] = Counter()


def _timed(fn: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES["calls"] += 1
            TIMES["call_wall_us"] += round((time.perf_counter() - wall) * 1e6)
            TIMES["call_cpu_us"] += round((time.thread_time() - cpu) * 1e6)

    return run


async def on_thread(self: StoreThread, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    start = time.perf_counter()
    try:
        return await SHIPPED(self, _timed(fn), *args, **kwargs)
    finally:
        TIMES["await_us"] += round((time.perf_counter() - start) * 1e6)


async def inline(self: StoreThread, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    start = time.perf_counter()
    try:
        return _timed(fn)(*args, **kwargs)
    finally:
        TIMES["await_us"] += round((time.perf_counter() - start) * 1e6)


def never_at_once(self: SqliteLeaseStore, lease: Any, position: Any) -> bool:
    return False


# mode -> (StoreThread.call, SqliteLeaseStore.checkpoint_now)
MODES: dict[str, tuple[Any, Any]] = {
    "shipped": (on_thread, AT_ONCE),
    "thread": (on_thread, never_at_once),
    "inline": (inline, never_at_once),
}


async def run(records: int, batch_sizes: list[int], rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="store-thread-bench-"))
    fn = InProcessFunction(lambda event, context: None, name="noop")
    try:
        async with Engine(Settings(data_dir=root / "data", fsync="always")) as engine:
            await engine.create_stream(rb.STREAM, rb.SHARDS)
            await rb.fill(engine, records)
            for bs in batch_sizes:
                rates: dict[str, list[float]] = {m: [] for m in MODES}
                per_call: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
                for r in range(rounds):
                    for mode, (call, at_once) in MODES.items():
                        StoreThread.call = call  # type: ignore[method-assign]
                        SqliteLeaseStore.checkpoint_now = at_once  # type: ignore[method-assign]
                        TIMES.clear()
                        try:
                            got = await rb.run_mapping(
                                engine, fn, pool=None, root=root, tag=f"{mode}-{bs}-{r}", batch_size=bs, n=records
                            )
                        finally:
                            StoreThread.call = SHIPPED  # type: ignore[method-assign]
                            SqliteLeaseStore.checkpoint_now = AT_ONCE  # type: ignore[method-assign]
                        rates[mode].append(got["rec_s"])
                        n = max(1, TIMES["calls"])
                        per_call[mode].append({k: TIMES[k] / n for k in ("await_us", "call_wall_us", "call_cpu_us")})
                report(bs, rates, per_call)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(bs: int, rates: dict[str, list[float]], per_call: dict[str, list[dict[str, float]]]) -> None:
    med = {m: statistics.median(v) for m, v in rates.items()}
    print(f"\nbatch size {bs:,}: records/s, median of {len(rates['thread'])} (min-max)")
    for mode, v in rates.items():
        calls = {k: statistics.median(c[k] for c in per_call[mode]) for k in per_call[mode][0]}
        print(
            f"  {mode:<8}{med[mode]:>10,.0f}  ({min(v):,.0f}-{max(v):,.0f})   per call through the store thread's "
            f"call(): waited {calls['await_us']:,.0f} us; the call itself {calls['call_wall_us']:,.0f} us wall, "
            f"{calls['call_cpu_us']:,.0f} us CPU"
        )
    ratios = (med["shipped"] / med["inline"], med["thread"] / med["inline"])
    print(f"  shipped/inline: {ratios[0]:.2f}   thread/inline: {ratios[1]:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--records", type=int, default=40_000)
    args = ap.parse_args()
    sizes, rounds = ([100], 3) if args.quick else ([100, 1000], 5)
    uvloop.run(run(args.records, sizes, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
