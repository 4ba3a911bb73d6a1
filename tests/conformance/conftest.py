"""Conformance fixtures: one real `shardline serve` process for the whole session, and real clients against it.

Set SHARDLINE_ENDPOINT=http://host:port to run the same suite against another Kinesis implementation: then no
server is started, and tests that check facts only shardline promises (its data directory, its sequence-number
format, its default limits) skip themselves.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from _shardline import kinesis as kinesis_client
from _shardline import shardline

ENDPOINT_ENV = "SHARDLINE_ENDPOINT"
# A server that is up answers in well under a second; these bounds only turn a hang into a failure.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path | None  # None when the suite runs against an endpoint it did not start

    @property
    def local(self) -> bool:
        return self.data_dir is not None


@contextmanager
def running_server(data_dir: Path, *extra: str) -> Iterator[Server]:
    """Start `shardline serve` on a free port, wait until it is healthy, and on exit stop it with SIGTERM and check
    that it stopped cleanly: exit code 0, the CLEAN marker written, no traceback logged."""
    data_dir.mkdir(parents=True, exist_ok=True)
    err_path = data_dir.parent / f"{data_dir.name}.stderr"
    args = ("serve", "--port", "0", "--data-dir", str(data_dir), *extra)
    # The server's own status delays: this suite waits for ACTIVE as code written for AWS must.
    with err_path.open("w") as err, shardline(*args, stderr=err, wait_s=START_TIMEOUT_S, status_delay=None) as running:
        try:
            yield Server(running.url, data_dir)
        finally:
            if running.proc.poll() is None:
                running.proc.send_signal(signal.SIGTERM)
            code = running.proc.wait(timeout=STOP_TIMEOUT_S)
    log = err_path.read_text(errors="replace")
    assert code == 0, f"shardline serve exited with {code}:\n{log[-4000:]}"
    assert (data_dir / "CLEAN").exists(), "no CLEAN marker after SIGTERM"
    assert "Traceback" not in log, f"the server logged an exception:\n{log[-4000:]}"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    external = os.environ.get(ENDPOINT_ENV)
    if external:
        yield Server(external.rstrip("/"), None)
        return
    with running_server(tmp_path_factory.mktemp("serve") / "data") as srv:
        yield srv


@pytest.fixture(scope="session")
def endpoint(server: Server) -> str:
    return server.url


@pytest.fixture(scope="session")
def throttled_endpoint(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second shardline server that applies the per-shard throughput limits."""
    if not server.local:
        pytest.skip(f"starts a shardline server with --enforce-limits ({ENDPOINT_ENV} is set)")
    with running_server(tmp_path_factory.mktemp("throttled") / "data", "--enforce-limits") as srv:
        yield srv.url


@pytest.fixture
def shardline_only(server: Server) -> None:
    if not server.local:
        pytest.skip(f"checks a fact only shardline promises ({ENDPOINT_ENV} is set)")


@pytest.fixture(scope="session")
def client_for() -> Any:
    """``client_for(url)``: a boto3 Kinesis client for another endpoint."""
    return kinesis_client


@pytest.fixture(scope="session")
def kinesis(endpoint: str) -> Any:
    return kinesis_client(endpoint)


@pytest.fixture(scope="session")
def unvalidated(endpoint: str) -> Any:
    """A client that sends what it is given, so the server's own validation answers."""
    return kinesis_client(endpoint, parameter_validation=False)


class Streams:
    """Creates uniquely named streams on the shared server, waits for them, reads them, and deletes them at
    teardown so the account's shard total stays small."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.created: list[str] = []

    def name(self, label: str = "s") -> str:
        return f"conf-{label}-{uuid.uuid4().hex[:12]}"

    def create(self, shard_count: int | None = 1, *, label: str = "s", **kw: Any) -> str:
        name = self.name(label)
        args: dict[str, Any] = {"StreamName": name, **kw}
        if shard_count is not None:
            args["ShardCount"] = shard_count
        self.client.create_stream(**args)
        self.created.append(name)
        self.wait_active(name)
        return name

    def summary(self, name: str) -> dict[str, Any]:
        return self.client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]  # type: ignore[no-any-return]

    def wait_active(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + STATUS_TIMEOUT_S
        while True:
            summary = self.summary(name)
            if summary["StreamStatus"] == "ACTIVE":
                return summary
            assert time.monotonic() < deadline, f"{name} stuck in {summary['StreamStatus']}"
            time.sleep(0.05)

    def until(self, what: str, check: Callable[[], Any]) -> Any:
        """Poll ``check`` until it returns something truthy (another implementation may take a while)."""
        deadline = time.monotonic() + STATUS_TIMEOUT_S
        while True:
            got = check()
            if got:
                return got
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def wait_gone(self, name: str) -> ClientError:
        deadline = time.monotonic() + STATUS_TIMEOUT_S
        while True:
            try:
                self.summary(name)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    return exc
                raise
            assert time.monotonic() < deadline, f"{name} was never deleted"
            time.sleep(0.05)

    def arn(self, name: str) -> str:
        return self.summary(name)["StreamARN"]  # type: ignore[no-any-return]

    def account(self, name: str) -> str:
        return self.arn(name).split(":")[4]

    def iterator(self, name: str, shard_id: str, kind: str = "TRIM_HORIZON", **kw: Any) -> str:
        out = self.client.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType=kind, **kw)
        return out["ShardIterator"]  # type: ignore[no-any-return]

    def read(self, iterator: str | None, *, limit: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every record from ``iterator`` until the shard ends (no NextShardIterator) or an empty page at the tip
        of an open shard. Returns the records and the last response."""
        records: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        for _ in range(1000):
            if iterator is None:
                return records, last
            kw = {"Limit": limit} if limit else {}
            last = self.client.get_records(ShardIterator=iterator, **kw)
            records += last["Records"]
            iterator = last.get("NextShardIterator")
            if not last["Records"] and last["MillisBehindLatest"] == 0 and iterator is not None:
                return records, last
        raise AssertionError("the shard never ended")

    def read_shard(self, name: str, shard_id: str) -> list[dict[str, Any]]:
        return self.read(self.iterator(name, shard_id))[0]

    def delete_all(self) -> None:
        for name in self.created:
            with suppress(ClientError):
                self.client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.fixture
def streams(kinesis: Any) -> Iterator[Streams]:
    kit = Streams(kinesis)
    yield kit
    kit.delete_all()
