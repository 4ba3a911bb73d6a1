"""Each dialect run as written under a real `shardline up`: records in through boto3, the handler invoked with the
effective settings (memory, timeout, environment, as its context and environment show them), failures kept in the
on-failure queue's or topic's local stream, and what is not applied said once at startup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _shardline import CLI, kinesis, shardline

from ._files import CLOUDFORMATION, SAM, SERVERLESS, copy_project, write

WAIT_S = 60.0


@dataclass
class Up:
    client: Any
    observed: Path
    banner: list[str]


def wait_for(what: str, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def up(file: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Up]:
    observed = tmp / "observed.jsonl"
    observed.touch()
    environ = {**os.environ, "OBSERVED": str(observed), **(env or {})}
    data = tmp / "data"
    cmd = ("up", str(file), "--port", "0", "--data-dir", str(data), "--no-metrics", "--log-level", "warning", *args)
    with shardline(*cmd, env=environ, cwd=tmp) as srv:
        run = Up(kinesis(srv.url), observed, [])
        yield run
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.stdout is not None
        run.banner[:] = srv.proc.stdout.read().splitlines()
        assert srv.proc.wait(timeout=WAIT_S) == 0


def observations(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def put(client: Any, stream: str, *bodies: dict[str, Any]) -> list[str]:
    return [
        client.put_record(StreamName=stream, Data=json.dumps(b).encode(), PartitionKey=str(b["id"]))["SequenceNumber"]
        for b in bodies
    ]


def failure_messages(client: Any, stream: str) -> list[dict[str, Any]]:
    shard = client.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    it = client.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [json.loads(r["Data"]) for r in client.get_records(ShardIterator=it)["Records"]]


def test_serverless_yml_runs_as_written(tmp_path: Path) -> None:
    file = copy_project(SERVERLESS, tmp_path / "project")
    with up(file, tmp_path, "--stage", "dev", env={"ORDERS_LOG_LEVEL": "DEBUG"}) as run:
        seqs = put(run.client, "orders-dev", {"id": 1}, {"id": 2}, {"id": 3, "poison": True})
        seen = wait_for(
            "both functions to see every record",
            lambda: (obs := observations(run.observed)) and len({(o["function"], o["id"]) for o in obs}) >= 6 and obs,
        )
        process = next(o for o in seen if o["function"] == "processOrders")
        assert process["memory"] == "1024"  # the function's memorySize
        assert 6_000 < process["remaining_ms"] <= 30_000  # provider.timeout 30 s, not Serverless's 6 s
        assert (process["stage"], process["region"], process["table"]) == ("dev", "eu-west-1", "orders-dev")
        assert process["log_level"] == "DEBUG"  # ${env:ORDERS_LOG_LEVEL, 'INFO'}
        assert process["batch"] <= 25
        audit = next(o for o in seen if o["function"] == "auditOrders")
        assert audit["memory"] == "512"  # provider.memorySize
        # the poison record, reported failed, retried once (maximumRetryAttempts: 1), then sent to the SQS
        # queue's local stream
        (msg,) = wait_for("the on-failure record", lambda: failure_messages(run.client, "orders-dlq-dev"))
        assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert msg["KinesisBatchInfo"]["startSequenceNumber"] == seqs[2]
        consumers = run.client.list_stream_consumers(
            StreamARN=run.client.describe_stream_summary(StreamName="orders-dev")["StreamDescriptionSummary"][
                "StreamARN"
            ]
        )["Consumers"]
        assert [c["ConsumerName"] for c in consumers] == ["auditOrders-orders-dev-consumer"]
    text = "\n".join(run.banner)
    assert "on-failure arn:aws:sqs:eu-west-1:000000000000:orders-dlq-dev -> local stream orders-dlq-dev" in text
    assert "not applied locally (Serverless Framework):" in text
    # the queue's local stream is what `shardline redrive` reads: the fixed handler gets the poison record
    (file.parent / "src" / "fixed.py").write_text(
        "import os\n\ndef handler(event, context):\n"
        "    open(os.environ['OBSERVED'] + '.fixed', 'a').write(str(len(event['Records'])))\n"
    )
    redrive = subprocess.run(
        [
            *CLI,
            "redrive",
            "stream:orders-dlq-dev",
            "--config",
            str(file),
            "--function",
            "processOrders",
            "--handler",
            "src/fixed.handler",
            "--data-dir",
            str(tmp_path / "data"),
            "--log-level",
            "warning",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
        env={**os.environ, "OBSERVED": str(run.observed)},
    )
    assert redrive.returncode == 0, redrive.stderr
    assert "redrove 1 of 1 messages" in redrive.stdout
    assert Path(f"{run.observed}.fixed").read_text() == "1"
    assert "plugins: serverless-python-requirements is not run locally" in text
    assert "fan-out delivery not applied" not in text  # a consumer: true event reads through its consumer
    assert text.count("provider.iam: not applied locally") == 1


def test_sam_template_runs_as_written(tmp_path: Path) -> None:
    file = copy_project(SAM, tmp_path / "project")
    with up(file, tmp_path) as run:
        seqs = put(
            run.client,
            "orders-dev",
            {"id": 1, "kind": "order_created"},
            {"id": 2, "kind": "order_shipped"},  # filtered out by FilterCriteria
            {"id": 3, "kind": "order_created", "poison": True},
            {"id": 4, "kind": "order_created"},
        )
        seen = wait_for(
            "records 1, 3 and 4", lambda: (obs := observations(run.observed)) and {1, 3, 4} <= {o["id"] for o in obs}
        )
        (msg,) = wait_for("the on-failure record", lambda: failure_messages(run.client, "orders-dlq-dev"))
        assert msg["KinesisBatchInfo"]["startSequenceNumber"] == seqs[2]
        seen = observations(run.observed)
        assert 2 not in {o["id"] for o in seen}
        first = seen[0]
        assert first["memory"] == "1024"
        assert 3_000 < first["remaining_ms"] <= 20_000  # Globals.Function.Timeout
        assert (first["environment"], first["table"], first["service"]) == ("dev", "orders-dev", "orders")
        assert first["function"] == "ProcessOrdersFunction"
    text = "\n".join(run.banner)
    assert "on-failure arn:aws:sqs:us-east-1:000000000000:orders-dlq-dev -> local stream orders-dlq-dev" in text
    assert "Resources.OrdersStream.Properties.StreamEncryption: accepted, not applied locally" in text


def test_cloudformation_template_runs_as_written(tmp_path: Path) -> None:
    file = copy_project(CLOUDFORMATION, tmp_path / "project")
    with up(file, tmp_path, "--parameter-overrides", "StreamName=clicks") as run:
        seqs = put(run.client, "clicks", {"id": 1}, {"id": 2, "poison": True})
        (msg,) = wait_for("the on-failure record", lambda: failure_messages(run.client, "clicks-failures"))
        # retries 0 and bisect: the poison record alone is reported
        assert msg["KinesisBatchInfo"]["startSequenceNumber"] == seqs[1]
        assert msg["KinesisBatchInfo"]["batchSize"] == 1
        # ParallelizationFactor 2: the two keys are processed concurrently, so record 1 is waited for too
        (first,) = wait_for("record 1", lambda: [o for o in observations(run.observed) if o["id"] == 1][:1])
        assert first["memory"] == "128"  # CloudFormation's default
        assert 3_000 < first["remaining_ms"] <= 15_000
        assert (first["function"], first["stream"]) == ("click-counter", "clicks")
    text = "\n".join(run.banner)
    assert "on-failure arn:aws:sns:us-east-1:000000000000:clicks-failures -> local stream clicks-failures" in text
    assert "Resources.ClickRole (AWS::IAM::Role): not applied locally" in text


def test_up_refuses_a_stream_neither_declared_nor_present(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "service: s\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: app.handler\n"
        "    events:\n      - stream: arn:aws:kinesis:eu-west-1:123456789012:stream/legacy\n",
        name="serverless.yml",
    )
    done = subprocess.run(
        [*CLI, "up", str(file), "--port", "0", "--data-dir", str(tmp_path / "data"), "--no-metrics"],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 2
    assert "serving Kinesis" not in done.stdout
    assert (
        f"shardline up: {file}: functions.f.events[0].stream.arn: stream 'legacy' is neither declared in the file "
        "nor present"
    ) in done.stderr


def test_validate_prints_the_resolved_project_without_starting_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "validate", str(SAM), "--parameter-overrides", "Environment=prod", "BatchSize=200"],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"{SAM} (AWS SAM)" in lines
    assert "  Environment = 'prod'  [--parameter-overrides Environment]" in lines
    assert "    shards 4  [file: Resources.OrdersStream.Properties.ShardCount]" in lines
    assert "    timeout 20 s  [Globals.Function.Timeout]" in lines
    assert "      MaximumRecordAgeInSeconds -1  [AWS default]" in lines
    assert not (tmp_path / "shardline-data").exists()  # nothing started
    bad = subprocess.run(
        [*CLI, "validate", str(SERVERLESS), "--param", "no-equals-sign"],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "shardline validate: --param 'no-equals-sign': expected KEY=VALUE"


def test_run_refuses_a_stream_missing_on_the_endpoint(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "service: s\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: app.handler\n"
        "    events:\n      - stream: arn:aws:kinesis:eu-west-1:123456789012:stream/legacy\n",
        name="serverless.yml",
    )
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "serve")) as srv:
        cmd = [*CLI, "run", str(file), "--endpoint-url", srv.url, "--state-dir", str(tmp_path / "state")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_S, check=False, env=env)
        assert done.returncode == 2
        assert done.stderr.strip().endswith(
            f"shardline run: {file}: functions.f.events[0].stream.arn: stream 'legacy' is neither declared in the "
            "file nor present"
        )
