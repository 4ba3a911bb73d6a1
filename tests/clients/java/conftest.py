"""One `shardline serve` and one Java SDK client per test module and client kind: starting a JVM with the SDK costs
seconds, so the tests of a module share them and each test works on streams of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _shardline import kinesis, shardline

from ._java import JavaKinesis, java_kinesis


@pytest.fixture(scope="module", params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Which of the SDK's clients the module's tests use, with their defaults: the sync KinesisClient (CBOR through
    the Apache HTTP client over HTTP/1.1), then the KinesisAsyncClient (CBOR through Netty over HTTP/2, h2c with
    prior knowledge)."""
    return str(request.param)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[str]:
    """A server per client, so that each client's tests start from the same streams."""
    data = tmp_path_factory.mktemp(f"data-{mode}")
    with shardline("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never") as running:
        yield running.url


@pytest.fixture(scope="module")
def java(endpoint: str, mode: str) -> Iterator[JavaKinesis]:
    with java_kinesis(endpoint, mode) as client:
        yield client


@pytest.fixture(scope="module")
def boto(endpoint: str) -> object:
    """boto3 (JSON 1.1) on the same server: what the Java SDK writes must read the same from another client."""
    return kinesis(endpoint)
