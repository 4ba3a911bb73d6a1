"""SQS and SNS on-failure destinations against real services (`shardline run`): the on-failure record is sent to
the queue or topic the template names, through boto3. moto's server, started as a real process on a free port,
stands in for SQS and SNS; the Kinesis side is a real `shardline serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from _shardline import CLI, kinesis, shardline

from ._files import CLOUDFORMATION, SAM, copy_project

pytest.importorskip("moto.server")
pytestmark = pytest.mark.slow  # two services and a `shardline run` per test

WAIT_S = 60.0
ACCOUNT = "123456789012"  # moto's account: the templates' ${AWS::AccountId} comes from --account-id


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, "moto's server exited"
                assert time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def run_project(file: Path, tmp: Path, kinesis_url: str, moto: str, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ENDPOINT_URL_SQS": moto,
        "AWS_ENDPOINT_URL_SNS": moto,
        "OBSERVED": str(tmp / "observed.jsonl"),
    }
    cmd = [*CLI, "run", str(file), "--endpoint-url", kinesis_url, "--create-streams", "--account-id", ACCOUNT]
    return subprocess.Popen(
        [*cmd, "--state-dir", str(tmp / "state"), "--log-level", "warning", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def receive(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        if got:
            return [json.loads(m["Body"]) for m in got]
    raise AssertionError("no message reached the queue")


def stop(run: subprocess.Popen[str]) -> list[str]:
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=WAIT_S) == 0
    assert run.stdout is not None
    return run.stdout.read().splitlines()


def test_sam_sqs_on_failure_reaches_the_real_queue(tmp_path: Path, moto_url: str) -> None:
    sqs = client("sqs", moto_url)
    queue_url = sqs.create_queue(QueueName="orders-dlq-dev")["QueueUrl"]
    file = copy_project(SAM, tmp_path / "project")
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "serve")) as srv:
        run = run_project(file, tmp_path, srv.url, moto_url)
        try:
            assert run.stdout is not None
            assert "running 1 mappings" in run.stdout.readline()
            assert "-> sent to that SQS queue" in run.stdout.readline()
            kin = kinesis(srv.url)
            body = {"id": 7, "kind": "order_created", "poison": True}
            seq = kin.put_record(StreamName="orders-dev", Data=json.dumps(body).encode(), PartitionKey="7")
            (msg,) = receive(sqs, queue_url)
            assert msg["KinesisBatchInfo"]["startSequenceNumber"] == seq["SequenceNumber"]
            assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
            stop(run)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
            if run.stdout is not None:
                run.stdout.close()


def test_cloudformation_sns_on_failure_reaches_the_real_topic(tmp_path: Path, moto_url: str) -> None:
    sqs, sns = client("sqs", moto_url), client("sns", moto_url)
    topic = sns.create_topic(Name="clicks-failures")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="clicks-failures-copy")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    file = copy_project(CLOUDFORMATION, tmp_path / "project")
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "serve")) as srv:
        run = run_project(file, tmp_path, srv.url, moto_url)
        try:
            assert run.stdout is not None
            assert "running 1 mappings" in run.stdout.readline()
            assert f"on-failure {topic} -> sent to that SNS topic" in run.stdout.readline()
            kin = kinesis(srv.url)
            seq = kin.put_record(
                StreamName="clicks", Data=json.dumps({"id": 9, "poison": True}).encode(), PartitionKey="9"
            )
            (msg,) = receive(sqs, queue_url)
            assert msg["KinesisBatchInfo"]["startSequenceNumber"] == seq["SequenceNumber"]
            stop(run)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
            if run.stdout is not None:
                run.stdout.close()
