"""A stream with consumers on a shared ``shardline serve``, for the tests that read it through real clients."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _shardline import shardline

S0, S1, S2 = (f"shardId-{i:012d}" for i in range(3))
DEADLINE_S = 60.0  # only turns a hang into a failure


@contextmanager
def serving(data_dir: Path, *extra: str) -> Iterator[str]:
    """A real ``shardline serve`` on a free port; stopped with SIGTERM at the end, which must be clean (exit 0, no
    traceback logged)."""
    data_dir.mkdir(parents=True)
    err_path = data_dir.parent / f"{data_dir.name}.stderr"
    with (
        err_path.open("w") as err,
        shardline("serve", "--port", "0", "--data-dir", str(data_dir), *extra, stderr=err) as running,
    ):
        try:
            yield running.url
        finally:
            if running.proc.poll() is None:
                running.proc.send_signal(signal.SIGTERM)
            code = running.proc.wait(timeout=30)
    log = err_path.read_text(errors="replace")
    assert code == 0, f"shardline serve exited with {code}:\n{log[-4000:]}"
    assert "Traceback" not in log, f"the server logged an exception:\n{log[-4000:]}"


class Rig:
    """A stream with consumers on the shared server, deleted at the end."""

    def __init__(self, client: Any, shards: int = 1) -> None:
        self.client = client
        self.name = f"efo-{uuid.uuid4().hex[:10]}"
        client.create_stream(StreamName=self.name, ShardCount=shards)
        self.until(lambda: self.summary()["StreamStatus"] == "ACTIVE")
        self.arn: str = self.summary()["StreamARN"]

    def summary(self) -> dict[str, Any]:
        return self.client.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]  # type: ignore[no-any-return]

    @staticmethod
    def until(check: Any) -> Any:
        deadline = time.monotonic() + DEADLINE_S
        while not (got := check()):
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)
        return got

    def consumer(self, name: str = "c") -> str:
        arn: str = self.client.register_stream_consumer(StreamARN=self.arn, ConsumerName=name)["Consumer"][
            "ConsumerARN"
        ]
        self.until(
            lambda: (
                self.client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"]
                == "ACTIVE"
            )
        )
        return arn

    def put(self, data: bytes, key: str = "k") -> str:
        return self.client.put_record(StreamName=self.name, Data=data, PartitionKey=key)["SequenceNumber"]  # type: ignore[no-any-return]

    def delete(self) -> None:
        self.client.delete_stream(StreamName=self.name, EnforceConsumerDeletion=True)
