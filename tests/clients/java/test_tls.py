"""The AWS SDK for Java v2 clients with their defaults against `shardline serve --tls-cert/--tls-key` at
``https://127.0.0.1:PORT``, the self-signed certificate trusted by the JVM through a PKCS12 trust store made here
(``javax.net.ssl.trustStore``): the sync KinesisClient over HTTP/1.1 (the Apache HTTP client) and the
KinesisAsyncClient over HTTP/2 (Netty), each through a data-plane round trip.

Which protocol each client spoke is what the SDK itself reports: its metrics name the HTTP client of every call and
carry HTTP/2 stream window sizes only for a request sent on an HTTP/2 connection. The SDK's Netty client (2.25) offers
no ALPN: over TLS it sends the HTTP/2 preface right after the handshake, which the server recognises as it does on
h2c; a client that offers ALPN ``h2`` gets HTTP/2 through the handshake (``tests/serve/test_http2.py``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from _shardline import self_signed, shardline

from ._java import JavaServiceError, java_kinesis

STORE_PASSWORD = "changeit"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """An https endpoint with a self-signed certificate, and the JVM options that make the JVM trust it."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(directory)
    store = directory / "trust.p12"
    subprocess.run(
        [
            "keytool",
            "-importcert",
            "-noprompt",
            "-alias",
            "shardline",
            "-file",
            str(cert),
            "-keystore",
            str(store),
            "-storetype",
            "PKCS12",
            "-storepass",
            STORE_PASSWORD,
        ],
        check=True,
        capture_output=True,
    )
    trust = [f"-Djavax.net.ssl.trustStore={store}", f"-Djavax.net.ssl.trustStorePassword={STORE_PASSWORD}"]
    args = ["--port", "0", "--data-dir", str(directory / "data"), "--fsync", "never"]
    with shardline("serve", *args, "--tls-cert", str(cert), "--tls-key", str(key)) as running:
        assert running.url.startswith("https://127.0.0.1:")
        yield running.url, trust


# the HTTP client each of the SDK's clients uses by default, as its metrics name it, and the protocol it speaks
CLIENTS = {"sync": ("Apache", "HTTP/1.1"), "async": ("NettyNio", "HTTP/2")}


@pytest.mark.parametrize("client", ["sync", "async"])
def test_default_client_round_trip_over_tls(tls: tuple[str, list[str]], client: str) -> None:
    url, trust = tls
    stream = f"tls-{client}"
    with java_kinesis(url, client, jvm_args=trust) as java:
        assert java.call("CreateStream", StreamName=stream, ShardCount=1) == {}
        assert (
            java.call("waitUntilStreamExists", StreamName=stream)["response"]["StreamDescription"]["StreamStatus"]
            == "ACTIVE"
        )
        put = java.call("PutRecord", StreamName=stream, Data=bytes(range(256)), PartitionKey="k")
        assert put["ShardId"] == "shardId-000000000000"
        it = java.call("GetShardIterator", StreamName=stream, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")
        got = java.call("GetRecords", ShardIterator=it["ShardIterator"])
        assert [(r["SequenceNumber"], r["Data"]) for r in got["Records"]] == [
            (put["SequenceNumber"], bytes(range(256)))
        ]
        described = java.call("DescribeStream", StreamName=stream)["StreamDescription"]
        assert described["StreamName"] == stream
        assert [s["ShardId"] for s in described["Shards"]] == [put["ShardId"]]
        assert java.last_wire == ("application/x-amz-cbor-1.1", "application/x-amz-cbor-1.1")

        metrics = java.call("$httpMetrics")
    http_client, protocol = CLIENTS[client]
    assert metrics["httpClients"] == [http_client]
    assert metrics["calls"] >= 6
    assert metrics["http2Calls"] == (metrics["calls"] if protocol == "HTTP/2" else 0)


@pytest.mark.parametrize("client", ["sync", "async"])
def test_without_the_trust_store_the_certificate_is_refused(tls: tuple[str, list[str]], client: str) -> None:
    url, _ = tls
    with java_kinesis(url, client) as java, pytest.raises(JavaServiceError) as refused:
        java.call("ListStreams")
    assert refused.value.simple_name == "SdkClientException"
    assert "PKIX path building failed" in refused.value.message, refused.value
