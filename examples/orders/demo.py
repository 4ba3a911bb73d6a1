"""The example end to end, in one command: run the project, produce orders (one in a legacy format the function
cannot parse), watch the bad record get isolated into `orders-failed`, then redrive it with the fixed handler.

Usage: python examples/orders/demo.py [--orders 2000] [--data-dir DIR]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def shardline(*args: str) -> list[str]:
    return [sys.executable, "-m", "shardline.cli", *args]


def ledger_ids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(line)["order_id"] for line in path.read_text().splitlines() if line.strip()]


def failure_messages(kinesis) -> list[dict]:
    out = []
    for shard in kinesis.list_shards(StreamName="orders-failed")["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName="orders-failed", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out += [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=it)["Records"]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--data-dir", type=Path, help="default: a new temporary directory")
    args = ap.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="shardline-orders-"))
    ledger = data / "ledger.jsonl"
    env = {**os.environ, "ORDERS_LEDGER": str(ledger)}
    config = str(HERE / "shardline.yml")
    log_path = data / "up.log"
    data.mkdir(parents=True, exist_ok=True)

    print(
        f"1. shardline up {HERE.relative_to(Path.cwd()) if HERE.is_relative_to(Path.cwd()) else HERE}/shardline.yml"
        f"  (data in {data}, log in {log_path})"
    )
    with log_path.open("w") as log:
        up = subprocess.Popen(
            shardline("up", config, "--port", "0", "--data-dir", str(data)),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    try:
        assert up.stdout is not None
        first = up.stdout.readline()
        match = re.search(r"serving Kinesis at (\S+)", first)
        if not match:
            print(f"shardline up did not start; see {log_path}", file=sys.stderr)
            return 1
        endpoint = match.group(1)
        for _ in range(3):  # the boto3 line, the project summary and its one mapping
            print("   " + up.stdout.readline().rstrip())
        kinesis = boto3.client(
            "kinesis",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

        print(f"2. producer: {args.orders} orders through boto3 at {endpoint}")
        subprocess.run([sys.executable, str(HERE / "producer.py"), endpoint, str(args.orders)], check=True, env=env)

        print("3. the function books them; the legacy record fails, is bisected out and reported")
        deadline = time.monotonic() + 120
        failures: list[dict] = []
        while time.monotonic() < deadline:
            booked = len(ledger_ids(ledger))
            failures = failure_messages(kinesis)
            print(f"\r   booked {booked}/{args.orders}, failure reports {len(failures)}", end="", flush=True)
            if booked >= args.orders - 1 and failures:
                break
            time.sleep(0.3)
        print()
        if not failures:
            print("   no failure report arrived in time", file=sys.stderr)
            return 1
        info = failures[0]["KinesisBatchInfo"]
        print(
            f"   orders-failed holds: condition {failures[0]['requestContext']['condition']}, "
            f"{info['batchSize']} record, {info['shardId']} {info['startSequenceNumber']}"
            f" after {failures[0]['requestContext']['approximateInvokeCount']} invocations"
        )
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
        if up.stdout is not None:
            up.stdout.close()

    print("4. shardline redrive stream:orders-failed --function process --handler handlers/orders_fixed.handler")
    subprocess.run(
        shardline(
            "redrive",
            "stream:orders-failed",
            "--config",
            config,
            "--function",
            "process",
            "--handler",
            "handlers/orders_fixed.handler",
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
        ),
        check=True,
        env=env,
    )
    ids = ledger_ids(ledger)
    exact = sorted(ids) == list(range(args.orders))
    print(
        f"5. ledger: {len(ids)} bookings for {args.orders} orders -> "
        f"{'every order booked exactly once' if exact else 'MISMATCH'}"
    )
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
