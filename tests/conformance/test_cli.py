"""The `aws kinesis` command line (v1, from PyPI, and v2, the official build that `tools/awscli_v2.py` fetches), and
boto3 and the CLI v2 configured by environment variables instead of an endpoint argument."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import botocore
import pytest
from botocore.config import Config

from .conftest import Streams

AWS_V1 = Path(sys.executable).with_name("aws")
# Where tools/awscli_v2.py (run by .ci/run) unpacks the CLI v2.
AWS_V2_DIR = Path(__file__).resolve().parents[2] / ".awscli-v2"
MAX_KEY = (1 << 128) - 1
CLI_TIMEOUT_S = 120.0


@pytest.fixture
def isolated_aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and region from the environment only; no user config or credentials file can interfere."""
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("")
    credentials.write_text("")
    env = {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def aws_v2() -> Path | None:
    found = sorted(AWS_V2_DIR.glob("awscli/v2/*/dist/aws"))
    return found[-1] if found else None


class Cli:
    def __init__(self, aws: Path, endpoint: str, env: dict[str, str]) -> None:
        self.aws = aws
        self.endpoint = endpoint
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env
        shown = self.run_raw("--version")
        version = shown.stdout + shown.stderr
        # v2 reads blob arguments as base64 unless told otherwise; v1 always takes them raw.
        self.binary_format = [] if version.startswith("aws-cli/1.") else ["--cli-binary-format", "raw-in-base64-out"]

    def run_raw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.aws), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def kinesis(self, *args: str, ok: bool = True) -> Any:
        proc = self.run_raw("kinesis", *args, "--endpoint-url", self.endpoint, "--output", "json")
        if not ok:
            assert proc.returncode != 0, proc.stdout
            return proc.stderr
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.fixture(params=["v1", "v2"])
def cli(request: pytest.FixtureRequest, endpoint: str, isolated_aws_env: dict[str, str]) -> Cli:
    aws = AWS_V1 if request.param == "v1" else aws_v2()
    if aws is None or not aws.exists():
        missing = f"no aws command at {AWS_V1}" if request.param == "v1" else "no AWS CLI v2: run tools/awscli_v2.py"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    cli = Cli(aws, endpoint, isolated_aws_env)
    assert cli.run_raw("--version").stdout.startswith(f"aws-cli/{request.param[1]}.")
    return cli


def _wait_active(cli: Cli, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while True:
        summary: dict[str, Any] = cli.kinesis("describe-stream-summary", "--stream-name", name)[
            "StreamDescriptionSummary"
        ]
        if summary["StreamStatus"] == "ACTIVE":
            return summary
        assert time.monotonic() < deadline, f"{name} stuck in {summary['StreamStatus']}"
        time.sleep(0.1)


def test_aws_cli_stream_lifecycle(cli: Cli) -> None:
    name = f"conf-cli-{uuid.uuid4().hex[:12]}"
    cli.kinesis("create-stream", "--stream-name", name, "--shard-count", "1")
    try:
        summary = _wait_active(cli, name)
        assert summary["OpenShardCount"] == 1

        # The CLI walks every page itself; a page size of 2 makes it follow NextToken across the shared server.
        listed = cli.kinesis("list-streams", "--page-size", "2")
        assert name in listed["StreamNames"]

        payload = "hello from the aws cli"
        put = cli.kinesis(
            "put-record", "--stream-name", name, "--partition-key", "pk", "--data", payload, *cli.binary_format
        )
        assert put["SequenceNumber"].isdigit()
        iterator = cli.kinesis(
            "get-shard-iterator",
            "--stream-name",
            name,
            "--shard-id",
            put["ShardId"],
            "--shard-iterator-type",
            "TRIM_HORIZON",
        )["ShardIterator"]
        records = cli.kinesis("get-records", "--shard-iterator", iterator)["Records"]
        assert [base64.b64decode(r["Data"]) for r in records] == [payload.encode()]
        assert [(r["PartitionKey"], r["SequenceNumber"]) for r in records] == [("pk", put["SequenceNumber"])]

        shards = cli.kinesis("list-shards", "--stream-name", name)["Shards"]
        first = shards[0]["HashKeyRange"]
        mid = (int(first["StartingHashKey"]) + int(first["EndingHashKey"])) // 2
        cli.kinesis(
            "split-shard",
            "--stream-name",
            name,
            "--shard-to-split",
            shards[0]["ShardId"],
            "--new-starting-hash-key",
            str(mid),
        )
        _wait_active(cli, name)  # UPDATING shows the map from before the split until the split is done, as on AWS
        shards = cli.kinesis("list-shards", "--stream-name", name)["Shards"]
        assert len(shards) == 3
        assert sum("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in shards) == 2
        assert [s.get("ParentShardId") for s in shards[1:]] == [shards[0]["ShardId"]] * 2

        err = cli.kinesis("describe-stream-summary", "--stream-name", f"{name}-missing", ok=False)
        assert "ResourceNotFoundException" in err
    finally:
        cli.kinesis("delete-stream", "--stream-name", name)
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while True:
        proc = cli.run_raw("kinesis", "describe-stream-summary", "--stream-name", name, "--endpoint-url", cli.endpoint)
        if proc.returncode != 0:
            assert "ResourceNotFoundException" in proc.stderr
            break
        assert time.monotonic() < deadline, f"{name} was never deleted"
        time.sleep(0.1)


def _botocore_reads_endpoint_env() -> bool:
    version = tuple(int(p) for p in botocore.__version__.split(".")[:2])
    return version >= (1, 31)


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL"])
def test_aws_cli_v2_finds_the_endpoint_in_the_environment(
    endpoint: str, isolated_aws_env: dict[str, str], variable: str
) -> None:
    aws = aws_v2()
    if aws is None:
        if os.environ.get("CI"):
            pytest.fail("no AWS CLI v2: run tools/awscli_v2.py")
        pytest.skip("no AWS CLI v2: run tools/awscli_v2.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | isolated_aws_env | {variable: endpoint}
    name = f"conf-env2-{uuid.uuid4().hex[:12]}"

    def kinesis(*args: str) -> Any:
        proc = subprocess.run(
            [str(aws), "kinesis", *args, "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    kinesis("create-stream", "--stream-name", name, "--shard-count", "1")
    try:
        # The CLI's own waiter, as a script would use it.
        kinesis("wait", "stream-exists", "--stream-name", name)
        data = base64.b64encode(b"found by the environment").decode()
        put = kinesis("put-record", "--stream-name", name, "--partition-key", "p", "--data", data)
        at = ["--shard-iterator-type", "AT_SEQUENCE_NUMBER", "--starting-sequence-number", put["SequenceNumber"]]
        it = kinesis("get-shard-iterator", "--stream-name", name, "--shard-id", put["ShardId"], *at)["ShardIterator"]
        records = kinesis("get-records", "--shard-iterator", it)["Records"]
        assert [base64.b64decode(r["Data"]) for r in records] == [b"found by the environment"]
    finally:
        kinesis("delete-stream", "--stream-name", name)


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL"])
def test_boto3_finds_the_endpoint_in_the_environment(
    endpoint: str, isolated_aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    if not _botocore_reads_endpoint_env():
        pytest.skip(f"botocore {botocore.__version__} ignores {variable}")
    monkeypatch.setenv(variable, endpoint)
    client = boto3.session.Session().client("kinesis", config=Config(retries={"max_attempts": 0}))
    assert client.meta.endpoint_url == endpoint
    name = f"conf-env-{uuid.uuid4().hex[:12]}"
    client.create_stream(StreamName=name, ShardCount=1)
    try:
        arn = Streams(client).wait_active(name)["StreamARN"]
        # Calls that carry a StreamARN go through botocore's ARN endpoint rules; they must still stay local.
        put = client.put_record(StreamARN=arn, Data=b"env", PartitionKey="p")
        it = client.get_shard_iterator(StreamARN=arn, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")
        records = client.get_records(ShardIterator=it["ShardIterator"], StreamARN=arn)["Records"]
        assert [r["Data"] for r in records] == [b"env"]
    finally:
        client.delete_stream(StreamName=name)
