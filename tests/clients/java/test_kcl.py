"""The KCL 2.x (its MultiLangDaemon, as amazon_kclpy runs it, with Python record processors) reading a stream through
a split and a merge, against a real `shardline serve` and moto's DynamoDB as the lease table. The KCL's Kinesis client
is the SDK's async client, which speaks CBOR over HTTP/2 and cannot be switched to HTTP/1.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _shardline import shardline

from ._kcl import multilang_daemon, properties, reads_through_a_split_and_a_merge

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    with shardline("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never") as running:
        yield running.url


# FANOUT is the KCL's default (SubscribeToShard through a consumer it registers); POLLING reads with GetRecords.
@pytest.mark.parametrize("retrieval", ["FANOUT", "POLLING"])
def test_kcl_reads_every_record_once_through_a_split_and_a_merge(
    endpoint: str, boto: Any, tmp_path: Path, retrieval: str
) -> None:
    stream = f"kcl-{retrieval.lower()}"
    reads_through_a_split_and_a_merge(
        boto,
        stream,
        lambda ddb: multilang_daemon(tmp_path, properties(endpoint, ddb, stream, retrieval=retrieval)),
        consumer=f"{stream}-app" if retrieval == "FANOUT" else None,
    )
