"""The ``shardline`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .api import KinesisApp
from .api.auth import SigV4Verifier, load_credentials
from .api.server import bind, is_loopback, run
from .engine import Engine
from .errors import ResourceInUseException
from .models import ShardIteratorType
from .settings import Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardline", description="Self-hosted streams with Kinesis semantics.")
    p.add_argument("--version", action="version", version=f"shardline {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded engine end to end on a local data directory")
    demo.add_argument("--data-dir", type=Path, default=Path("shardline-data"), help="default: ./shardline-data")
    demo.add_argument("--records", type=int, default=20_000, help="records to put (default 20000)")
    demo.add_argument("--fsync", choices=["always", "interval", "never"], default="always")
    srv = sub.add_parser("serve", help="serve the Kinesis API (boto3, the AWS CLI and the SDKs work against it)")
    srv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, loopback only)")
    srv.add_argument("--port", type=int, default=4567, help="TCP port (default 4567; 0 picks a free port)")
    srv.add_argument("--data-dir", type=Path, default=Path("shardline-data"), help="default: ./shardline-data")
    srv.add_argument("--region", default="us-east-1")
    srv.add_argument("--account-id", default="000000000000")
    srv.add_argument("--enforce-limits", action="store_true", help="apply Kinesis per-shard throughput limits")
    srv.add_argument("--fsync", choices=["always", "interval", "never"], default="always")
    srv.add_argument("--auth", choices=["none", "sigv4"], default="none")
    srv.add_argument("--credentials", type=Path, help="AWS credentials file whose keys --auth sigv4 accepts")
    srv.add_argument("--log-requests", action="store_true", help="write a JSON access-log line per request")
    srv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _serve(args: argparse.Namespace) -> int:
    verifier = None
    if args.auth == "sigv4":
        if args.credentials is None:
            print("shardline serve: --auth sigv4 needs --credentials FILE", file=sys.stderr)
            return 2
        try:
            verifier = SigV4Verifier(load_credentials(args.credentials))
        except ValueError as exc:
            print(f"shardline serve: {exc}", file=sys.stderr)
            return 2
    try:
        settings = Settings(
            data_dir=args.data_dir,
            region=args.region,
            account_id=args.account_id,
            enforce_limits=args.enforce_limits,
            fsync=args.fsync,
        )
    except ValueError as exc:
        print(f"shardline serve: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"shardline serve: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    if not is_loopback(args.host):
        logging.getLogger("shardline").warning("listening on %s: reachable from other machines", args.host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    app = KinesisApp(Engine(settings), verifier=verifier, log_requests=args.log_requests)

    def ready() -> None:
        print(
            f"shardline {__version__} serving Kinesis at {url} "
            f"(data {args.data_dir}, fsync={args.fsync}, auth={args.auth})",
            flush=True,
        )
        print(f'  boto3.client("kinesis", endpoint_url="{url}", region_name="{args.region}")', flush=True)

    run(app, sock, on_ready=ready)
    return 0


async def _demo(data_dir: Path, total: int, fsync: str) -> int:
    settings = Settings(data_dir=data_dir, fsync=fsync)  # type: ignore[arg-type]
    stream = "orders-demo"
    rng = random.Random(7)
    async with Engine(settings) as engine:
        print(f"data directory {data_dir} (previous close clean: {engine.was_clean})")
        try:
            await engine.create_stream(stream, 2)
            print(f"created stream {stream} with 2 shards")
        except ResourceInUseException:
            print(f"stream {stream} exists; appending to it")
        t0 = time.perf_counter()
        put = 0
        while put < total:
            n = min(500, total - put)
            batch = [
                (
                    json.dumps(
                        {
                            "order_id": put + i,
                            "customer": f"c-{rng.randrange(1000)}",
                            "amount": rng.randrange(1, 50_000),
                        }
                    ).encode(),
                    f"c-{rng.randrange(1000)}",
                )
                for i in range(n)
            ]
            res = await engine.put_records(batch, stream_name=stream)
            put += n - res.failed_record_count
            if put >= total // 2 and put - n < total // 2:
                desc = await engine.describe_stream(stream)
                first_open = next(s for s in desc.shards if s.sequence_number_range.ending_sequence_number is None)
                r = first_open.hash_key_range
                mid = (r.starting_hash_key + r.ending_hash_key) // 2
                await engine.split_shard(
                    stream_name=stream, shard_to_split=first_open.shard_id, new_starting_hash_key=str(mid)
                )
                print(f"split {first_open.shard_id} half-way through the load")
        elapsed = time.perf_counter() - t0
        print(f"put {put} records in {elapsed:.2f}s ({put / elapsed:,.0f} records/s, fsync={fsync})")

        # Read every shard, parents before children, as a consumer must to keep per-key order.
        shards = (await engine.list_shards(stream)).shards
        done: set[str] = set()
        read = 0
        pending = list(shards)
        while pending:
            for sh in list(pending):
                parents = {p for p in (sh.parent_shard_id, sh.adjacent_parent_shard_id) if p}
                if not parents <= done | {p for p in parents if p not in {s.shard_id for s in shards}}:
                    continue
                it: str | None = await engine.get_shard_iterator(
                    stream_name=stream, shard_id=sh.shard_id, shard_iterator_type=ShardIteratorType.TRIM_HORIZON
                )
                n_shard = 0
                while it is not None:
                    out = await engine.get_records(it)
                    n_shard += len(out.records)
                    if not out.records and out.millis_behind_latest == 0 and out.next_shard_iterator is not None:
                        break  # an open shard, read to its end
                    it = out.next_shard_iterator
                read += n_shard
                state = "open" if sh.sequence_number_range.ending_sequence_number is None else "closed"
                print(f"  {sh.shard_id} ({state}, parent {sh.parent_shard_id or '-'}): {n_shard} records")
                done.add(sh.shard_id)
                pending.remove(sh)
        print(f"read back {read} records across {len(shards)} shards")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", "warning").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        return asyncio.run(_demo(args.data_dir, args.records, args.fsync))
    return 2


if __name__ == "__main__":
    sys.exit(main())
