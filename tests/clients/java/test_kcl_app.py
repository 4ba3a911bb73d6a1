"""The KCL 2.x as a Java application (``KclApp.java``: a Scheduler from ConfigsBuilder, the SDK's KinesisAsyncClient
with its defaults, a ShardRecordProcessor that checkpoints each batch and each shard's end) reading a stream through
a split and a merge, against a real `shardline serve` and moto's DynamoDB as the lease table; with the KCL's default
retrieval (enhanced fan-out: a consumer it registers and SubscribeToShard over HTTP/2) and with polling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _shardline import shardline

from ._kcl import kcl_app, reads_through_a_split_and_a_merge

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    with shardline("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never") as running:
        yield running.url


@pytest.mark.parametrize("retrieval", ["FANOUT", "POLLING"])
def test_kcl_app_reads_every_record_once_through_a_split_and_a_merge(
    endpoint: str, boto: Any, tmp_path: Path, retrieval: str
) -> None:
    stream = f"kcl-app-{retrieval.lower()}"
    reads_through_a_split_and_a_merge(
        boto,
        stream,
        lambda ddb: kcl_app(tmp_path, endpoint, ddb, stream, retrieval=retrieval),
        consumer=f"{stream}-app" if retrieval == "FANOUT" else None,
    )
