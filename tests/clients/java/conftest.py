"""One `shardline serve` and one Java SDK client per test module: starting a JVM with the SDK costs seconds, so the
tests of a module share them and each test works on streams of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _shardline import kinesis, shardline

from ._java import JavaKinesis, java_kinesis


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    with shardline("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never") as running:
        yield running.url


@pytest.fixture(scope="module")
def java(endpoint: str) -> Iterator[JavaKinesis]:
    """The SDK's sync KinesisClient with its defaults (CBOR, the Apache HTTP client over HTTP/1.1)."""
    with java_kinesis(endpoint, "sync") as client:
        yield client


@pytest.fixture(scope="module")
def boto(endpoint: str) -> object:
    """boto3 (JSON 1.1) on the same server: what the Java SDK writes must read the same from another client."""
    return kinesis(endpoint)
