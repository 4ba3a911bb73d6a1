"""HTTP/2 beside HTTP/1.1 on one port of a real `shardline serve`: h2c with prior knowledge and TLS with ALPN, through
httpx's HTTP/2 client and boto3 on the same server, and the bounds an HTTP/2 client meets (streams, header list,
idle and unfinished requests, signatures)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import h2.errors
import h2.events
import h2.settings
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from _shardline import CLI, UNVERIFIED_SIGNATURE, Running, kinesis, self_signed, shardline

from ._h2 import JSON_TYPE, RawH2, request_headers

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SHARD0 = "shardId-000000000000"
DUMMY_KEYS = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}


@contextmanager
def serve(tmp_path: Path, *extra: str) -> Iterator[Running]:
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never"]
    with shardline(*args, *extra) as running:
        yield running


def status_of(event: h2.events.ResponseReceived) -> str:
    headers: list[tuple[Any, Any]] = list(event.headers or ())  # (str: the client decodes them as UTF-8)
    return next(str(v) for k, v in headers if k == ":status")


def call(client: httpx.Client, url: str, op: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": f"Kinesis_20131202.{op}", **UNVERIFIED_SIGNATURE}
    return client.post(url + "/", headers=headers, content=json.dumps(body).encode())


def h2c() -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=30)


def test_h2c_with_prior_knowledge_and_http11_share_the_port(tmp_path: Path) -> None:
    with serve(tmp_path) as running, h2c() as client:
        created = call(client, running.url, "CreateStream", {"StreamName": "s", "ShardCount": 1})
        assert (created.http_version, created.status_code) == ("HTTP/2", 200)
        # 4.5 MiB of records: several times the stream's and the connection's flow-control windows
        records = [
            {"Data": base64.b64encode(bytes([i % 256]) * 9_000).decode(), "PartitionKey": "k"} for i in range(500)
        ]
        put = call(client, running.url, "PutRecords", {"StreamName": "s", "Records": records})
        assert put.status_code == 200, put.text
        assert put.json()["FailedRecordCount"] == 0
        k = kinesis(running.url)  # boto3: HTTP/1.1, same port
        it = k.get_shard_iterator(StreamName="s", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got = k.get_records(ShardIterator=it)["Records"]
        assert [r["Data"] for r in got] == [bytes([i % 256]) * 9_000 for i in range(500)]
        # ... and back over HTTP/2: a response larger than the client's windows
        it = k.get_shard_iterator(StreamName="s", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        read = call(client, running.url, "GetRecords", {"ShardIterator": it})
        assert (read.http_version, read.status_code) == ("HTTP/2", 200)
        assert [base64.b64decode(r["Data"]) for r in read.json()["Records"]] == [r["Data"] for r in got]
        errored = call(client, running.url, "DescribeStream", {"StreamName": "nope"})
        assert errored.status_code == 400
        assert errored.json()["__type"] == "ResourceNotFoundException"


async def test_concurrent_requests_are_multiplexed_on_one_connection(tmp_path: Path) -> None:
    with serve(tmp_path) as running:
        kinesis(running.url).create_stream(StreamName="s", ShardCount=2)
        headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": "Kinesis_20131202.PutRecord", **UNVERIFIED_SIGNATURE}
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(http1=False, http2=True, limits=limits, timeout=30) as client:

            async def put(i: int) -> httpx.Response:
                body = {"StreamName": "s", "Data": base64.b64encode(b"%d" % i).decode(), "PartitionKey": str(i)}
                return await client.post(running.url + "/", headers=headers, content=json.dumps(body).encode())

            answers = await asyncio.gather(*(put(i) for i in range(60)))
        assert {(a.http_version, a.status_code) for a in answers} == {("HTTP/2", 200)}
        assert len({a.json()["SequenceNumber"] for a in answers}) == 60


def test_the_request_log_names_each_request_s_http_version(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with (
        log.open("w") as err,
        shardline(
            "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--log-requests", stderr=err
        ) as running,
    ):
        with h2c() as client:
            assert call(client, running.url, "ListStreams", {}).status_code == 200
        kinesis(running.url).list_streams()
        running.proc.terminate()
        assert running.proc.wait(timeout=30) == 0
    lines = [json.loads(line[line.index("{") :]) for line in log.read_text().splitlines() if '"op"' in line]
    assert [(x["op"], x["http"]) for x in lines] == [("ListStreams", "2"), ("ListStreams", "1.1")]


def test_more_streams_than_advertised_end_the_connection(tmp_path: Path) -> None:
    with serve(tmp_path) as running:
        raw = RawH2(running.url)
        try:
            # Sent before the server's SETTINGS are read, so the client side does not hold itself to them: 101
            # requests left open (no END_STREAM) against the 100 concurrent streams the server allows.
            for i in range(101):
                raw.conn.send_headers(1 + 2 * i, request_headers(running.url, "ListStreams"))
            raw.send_now()
            ended = raw.wait_for(h2.events.ConnectionTerminated)
            assert isinstance(ended, h2.events.ConnectionTerminated)
            assert ended.error_code != 0
            settings = raw.wait_for(h2.events.RemoteSettingsChanged)
            assert isinstance(settings, h2.events.RemoteSettingsChanged)
            assert settings.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 100
            raw.drain_until_closed()
        finally:
            raw.close()
        assert kinesis(running.url).list_streams()["StreamNames"] == []  # the server lives on


def test_an_oversized_header_list_ends_the_connection(tmp_path: Path) -> None:
    with serve(tmp_path) as running:
        raw = RawH2(running.url)
        try:
            big = ("x-filler", "a" * 40_000)  # past the 32 KiB the server advertises as its header list size
            raw.conn.send_headers(1, request_headers(running.url, "ListStreams", big), end_stream=True)
            raw.send_now()
            settings = raw.wait_for(h2.events.RemoteSettingsChanged)
            assert isinstance(settings, h2.events.RemoteSettingsChanged)
            assert settings.changed_settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE].new_value == 32 * 1024
            ended = raw.wait_for(h2.events.ConnectionTerminated)
            assert isinstance(ended, h2.events.ConnectionTerminated)
            assert ended.error_code != 0
            assert not any(isinstance(e, h2.events.ResponseReceived) for e in raw.events)
            raw.drain_until_closed()
        finally:
            raw.close()
        with h2c() as client:
            assert call(client, running.url, "ListStreams", {}).status_code == 200


def test_an_idle_connection_gets_goaway_and_is_closed(tmp_path: Path) -> None:
    with serve(tmp_path, "--idle-timeout", "0.5") as running:
        raw = RawH2(running.url)
        try:
            raw.conn.send_headers(1, request_headers(running.url, "ListStreams"), end_stream=False)
            raw.conn.send_data(1, b"{}", end_stream=True)
            raw.send_now()
            response = raw.wait_for(h2.events.ResponseReceived)
            assert isinstance(response, h2.events.ResponseReceived)
            assert status_of(response) == "200"
            ended = raw.wait_for(h2.events.ConnectionTerminated)  # then nothing more is sent: the idle timeout
            assert isinstance(ended, h2.events.ConnectionTerminated)
            assert (ended.error_code, ended.last_stream_id) == (0, 1)
            raw.drain_until_closed()
        finally:
            raw.close()


def test_a_request_left_unfinished_gets_408(tmp_path: Path) -> None:
    with serve(tmp_path, "--request-timeout", "0.5") as running:
        raw = RawH2(running.url)
        try:
            raw.conn.send_headers(1, request_headers(running.url, "ListStreams", ("content-length", "10")))
            raw.conn.send_data(1, b"{")  # and never the rest
            raw.send_now()
            response = raw.wait_for(h2.events.ResponseReceived)
            assert isinstance(response, h2.events.ResponseReceived)
            assert status_of(response) == "408"
            assert raw.wait_for(h2.events.StreamReset) is not None
            # the connection itself still serves
            raw.conn.send_headers(3, request_headers(running.url, "ListStreams"), end_stream=False)
            raw.conn.send_data(3, b"{}", end_stream=True)
            raw.send_now()
            raw.events.clear()
            answer = raw.wait_for(h2.events.ResponseReceived)
            assert isinstance(answer, h2.events.ResponseReceived) and answer.stream_id == 3
            assert status_of(answer) == "200"
        finally:
            raw.close()


def signed(url: str, op: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": JSON_TYPE, "X-Amz-Target": f"Kinesis_20131202.{op}"},
    )
    SigV4Auth(Credentials(AKID, SECRET), "kinesis", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_signatures_are_verified_over_http2(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n")
    with serve(tmp_path, "--auth", "sigv4", "--credentials", str(credentials)) as running, h2c() as client:
        body = json.dumps({"StreamName": "s", "ShardCount": 1}).encode()
        good = client.post(running.url + "/", headers=signed(running.url, "CreateStream", body), content=body)
        # (the signature covers "host": over HTTP/2 it arrives as :authority)
        assert (good.http_version, good.status_code) == ("HTTP/2", 200), good.text
        forged = json.dumps({"StreamName": "t", "ShardCount": 1}).encode()
        headers = signed(running.url, "CreateStream", body)
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
        refused = client.post(running.url + "/", headers=headers, content=forged)
        assert (refused.http_version, refused.status_code) == ("HTTP/2", 400)
        assert refused.json()["__type"] == "InvalidSignatureException"
        unsigned = call(client, running.url, "ListStreams", {})
        assert unsigned.status_code in (400, 403)
        assert unsigned.json()["__type"] in {"UnrecognizedClientException", "InvalidSignatureException"}
        assert kinesis(running.url, key_id=AKID, secret=SECRET).list_streams()["StreamNames"] == ["s"]


def test_tls_offers_h2_and_http11_by_alpn(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)) as running:
        assert running.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=cert)
        with httpx.Client(http2=True, verify=trust, timeout=30) as client:  # ALPN chooses
            created = call(client, running.url, "CreateStream", {"StreamName": "s", "ShardCount": 1})
            assert (created.http_version, created.status_code) == ("HTTP/2", 200)
        with httpx.Client(http2=False, verify=trust, timeout=30) as client:
            listed = call(client, running.url, "ListStreams", {})
            assert (listed.http_version, listed.status_code) == ("HTTP/1.1", 200)
            assert listed.json()["StreamNames"] == ["s"]
        k = boto3.client(
            "kinesis", endpoint_url=running.url, region_name="us-east-1", verify=str(cert), **DUMMY_KEYS
        )  # boto3 over https
        assert k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamName"] == "s"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "missing.pem", "--tls-key", "key.pem"], "cannot read missing.pem: no such file"),
        (["--tls-cert", "key.pem", "--tls-key", "key.pem"], "cannot use --tls-cert key.pem with --tls-key key.pem"),
    ],
)
def test_tls_files_are_checked_before_serving(tmp_path: Path, args: list[str], message: str) -> None:
    self_signed(tmp_path)
    done = subprocess.run(
        [*CLI, "serve", "--port", "0", "--data-dir", "data", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert message in done.stderr


def test_a_response_left_without_window_is_reset(tmp_path: Path) -> None:
    with serve(tmp_path, "--write-timeout", "0.5") as running:
        # A 10-byte stream window the client never reopens: the answer to ListStreams does not fit.
        raw = RawH2(running.url, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
        try:
            raw.conn.send_headers(1, request_headers(running.url, "ListStreams"), end_stream=False)
            raw.conn.send_data(1, b"{}", end_stream=True)
            raw.send_now()
            reset = raw.wait_for(h2.events.StreamReset)
            assert isinstance(reset, h2.events.StreamReset)
            assert (reset.stream_id, reset.error_code) == (1, h2.errors.ErrorCodes.CANCEL)
            data = [e for e in raw.events if isinstance(e, h2.events.DataReceived)]
            assert sum(len(e.data) for e in data) == 10
        finally:
            raw.close()


def test_a_stopping_server_sends_goaway_and_exits(tmp_path: Path) -> None:
    with serve(tmp_path) as running:
        raw = RawH2(running.url)
        try:
            raw.conn.send_headers(1, request_headers(running.url, "ListStreams"), end_stream=False)
            raw.conn.send_data(1, b"{}", end_stream=True)
            raw.send_now()
            assert raw.wait_for(h2.events.StreamEnded) is not None
            running.proc.terminate()
            ended = raw.wait_for(h2.events.ConnectionTerminated)
            assert isinstance(ended, h2.events.ConnectionTerminated)
            assert (ended.error_code, ended.last_stream_id) == (0, 1)
            raw.drain_until_closed()
            assert running.proc.wait(timeout=30) == 0
        finally:
            raw.close()
