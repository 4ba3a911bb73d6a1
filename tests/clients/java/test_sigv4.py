"""The Java SDK v2's SigV4 signatures (over CBOR bodies) verified by `shardline serve --auth sigv4`, and its view of
a refused signature."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _shardline import shardline

from ._java import JavaKinesis, JavaServiceError, java_kinesis
from .test_client import make_stream

KEY_ID, SECRET = "AKIDJAVASDKTEST", "java-sdk-test-secret"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's server verifies signatures against one key."""
    data = tmp_path_factory.mktemp("data")
    credentials = data.parent / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n")
    args = ("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never")
    with shardline(*args, "--auth", "sigv4", "--credentials", str(credentials)) as running:
        yield running.url


@pytest.fixture(scope="module")
def java(endpoint: str, mode: str) -> Iterator[JavaKinesis]:
    """Each client (over HTTP/2 the host a signature covers is the :authority pseudo-header), signing with the key."""
    with java_kinesis(endpoint, mode, key_id=KEY_ID, secret=SECRET) as client:
        yield client


def test_signed_calls_are_served(java: JavaKinesis, mode: str) -> None:
    stream = f"signed-{mode}"
    make_stream(java, stream)
    data = bytes(range(256)) * 64
    java.call("PutRecord", StreamName=stream, PartitionKey="p", Data=data)
    it = java.call(
        "GetShardIterator", StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )
    assert [r["Data"] for r in java.call("GetRecords", ShardIterator=it["ShardIterator"])["Records"]] == [data]


def test_a_wrong_secret_or_key_is_refused(java: JavaKinesis) -> None:
    with pytest.raises(JavaServiceError) as wrong_secret:
        java.call("ListStreams", **{"$credentials": [KEY_ID, "not-the-secret"]})
    with pytest.raises(JavaServiceError) as unknown:
        java.call("ListStreams", **{"$credentials": ["AKIDUNKNOWN", SECRET]})
    assert wrong_secret.value.simple_name == "KinesisException"
    assert (wrong_secret.value.code, wrong_secret.value.status) == ("InvalidSignatureException", 400)
    assert str(wrong_secret.value.error_message).startswith("The request signature we calculated does not match")
    assert unknown.value.simple_name == "KinesisException"
    assert (unknown.value.code, unknown.value.status) == ("UnrecognizedClientException", 400)
    assert unknown.value.error_message == "The security token included in the request is invalid."
