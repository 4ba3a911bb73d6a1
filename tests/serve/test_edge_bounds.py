"""A real `shardline serve` against hostile clients: forged and mis-scoped signatures, unauthenticated bodies, huge
headers, slow and idle connections, more connections than the server has files for, and the refusal to serve
other machines without authentication."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from _shardline import CLI, UNVERIFIED_SIGNATURE, Running, kinesis, shardline

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
JSON_TYPE = "application/x-amz-json-1.1"
UNVERIFIED = "".join(f"{k}: {v}\r\n" for k, v in UNVERIFIED_SIGNATURE.items()).encode()


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "credentials"
    path.write_text(f"[default]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n")
    return path


@contextmanager
def secured(tmp_path: Path, credentials: Path, *extra: str) -> Iterator[Running]:
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never"]
    with shardline(*args, "--auth", "sigv4", "--credentials", str(credentials), *extra) as running:
        yield running


def signed_client(url: str, *, region: str = "us-east-1") -> Any:
    return kinesis(url, region=region, key_id=AKID, secret=SECRET)


def sign(url: str, op: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": JSON_TYPE, "X-Amz-Target": f"Kinesis_20131202.{op}"},
    )
    SigV4Auth(Credentials(AKID, SECRET), "kinesis", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def connect(url: str) -> socket.socket:
    where = urlparse(url)
    assert where.hostname is not None and where.port is not None
    return socket.create_connection((where.hostname, where.port), timeout=10)


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, without the blank line) and ``body``; the status and the body."""
    with connect(url) as s:
        s.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        return read_response(s)


def read_response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b" ", 2)[1]), rest


def read_responses(f: Any) -> tuple[int, bytes]:
    """The next response from ``f`` (a buffered reader of the socket), leaving what follows it for the next call:
    responses to pipelined requests may arrive in one piece."""
    status = int(f.readline().split(b" ", 2)[1])
    length = 0
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, f.read(length)


def closed_by_server(s: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes ``s``; fails if it is still open after ``timeout_s``."""
    s.settimeout(timeout_s)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


# ----------------------------------------------------------------- the signature
def test_a_replayed_signature_with_another_body_and_a_forged_payload_hash_is_refused(
    tmp_path: Path, credentials: Path
) -> None:
    with secured(tmp_path, credentials) as running:
        k = signed_client(running.url)
        k.create_stream(StreamName="victim", ShardCount=1)
        k.create_stream(StreamName="other", ShardCount=1)
        original = json.dumps({"StreamName": "victim", "Data": "aGVsbG8=", "PartitionKey": "p"}).encode()
        headers = sign(running.url, "PutRecord", original)
        forged = json.dumps({"StreamName": "other", "Data": "ZXZpbA==", "PartitionKey": "p"}).encode()
        head = "\r\n".join(
            [
                "POST / HTTP/1.1",
                f"Host: {urlparse(running.url).netloc}",
                *(f"{name}: {value}" for name, value in headers.items()),
                f"X-Amz-Content-SHA256: {hashlib.sha256(original).hexdigest()}",
                f"Content-Length: {len(forged)}",
            ]
        )
        status, body = raw_request(running.url, head, forged)
        assert status == 400
        assert json.loads(body)["__type"] == "InvalidSignatureException"
        it = k.get_shard_iterator(StreamName="other", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
        assert k.get_records(ShardIterator=it["ShardIterator"])["Records"] == []


def test_a_key_signed_for_another_region_is_refused(tmp_path: Path, credentials: Path) -> None:
    with secured(tmp_path, credentials) as running:
        with pytest.raises(ClientError) as err:
            signed_client(running.url, region="eu-west-1").create_stream(StreamName="s", ShardCount=1)
        assert err.value.response["Error"] == {
            "Code": "InvalidSignatureException",
            "Message": "Credential should be scoped to a valid region. ",
        }
        assert signed_client(running.url).list_streams()["StreamNames"] == []


def test_an_unauthenticated_request_is_refused_before_its_body_is_read(tmp_path: Path, credentials: Path) -> None:
    # The headers announce 8 MiB that never come: the answer needs none of them.
    with secured(tmp_path, credentials) as running, connect(running.url) as s:
        head = "\r\n".join(
            [
                "POST / HTTP/1.1",
                f"Host: {urlparse(running.url).netloc}",
                "X-Amz-Target: Kinesis_20131202.PutRecords",
                "Content-Type: application/x-amz-cbor-1.1",
                f"Content-Length: {8 * 1024 * 1024}",
            ]
        )
        s.sendall(head.encode() + b"\r\n\r\n" + b"\xbf" * 1000)
        status, body = read_response(s)
        assert status == 400
        assert b"MissingAuthenticationTokenException" in body


# ----------------------------------------------------------------- headers, time and connections
def test_a_header_block_past_the_limit_is_refused_and_the_server_lives_on(tmp_path: Path) -> None:
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path)) as running, connect(running.url) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        filler = b"X-Filler: " + b"a" * 8000 + b"\r\n"
        with pytest.raises(OSError):  # the server answers 431 and closes while the client is still sending
            for _ in range(10_000):  # 80 MB at most
                s.sendall(filler)
        assert kinesis(running.url).list_streams()["StreamNames"] == []


def test_the_header_limit_answers_431(tmp_path: Path) -> None:
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path)) as running, connect(running.url) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 40_000)
        assert closed_by_server(s, 10).startswith(b"HTTP/1.1 431 ")


def test_slow_and_idle_connections_are_closed(tmp_path: Path) -> None:
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path), "--request-timeout", "1", "--idle-timeout", "1"]
    with shardline(*args) as running, ExitStack() as stack:
        silent = stack.enter_context(connect(running.url))
        slow_headers = stack.enter_context(connect(running.url))
        slow_headers.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        slow_body = stack.enter_context(connect(running.url))
        slow_body.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n"
            b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n{"
        )
        kept_alive = stack.enter_context(connect(running.url))
        kept_alive.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n"
            + UNVERIFIED
            + b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{}"
        )
        assert read_response(kept_alive)[0] == 200
        assert closed_by_server(silent, 10) == b""
        assert closed_by_server(slow_headers, 10).startswith(b"HTTP/1.1 408 ")
        assert closed_by_server(slow_body, 10).startswith(b"HTTP/1.1 408 ")
        assert closed_by_server(kept_alive, 10) == b""
        assert kinesis(running.url).list_streams()["StreamNames"] == []


def test_a_truncated_body_is_never_acted_on(tmp_path: Path) -> None:
    # The part received is a complete request by itself; the client goes away before the announced end.
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path)) as running:
        body = json.dumps({"StreamName": "half", "ShardCount": 1}).encode()
        with connect(running.url) as s:
            s.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.CreateStream\r\n"
                b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: "
                + str(len(body) + 10).encode()
                + b"\r\n\r\n"
                + body
            )
            s.shutdown(socket.SHUT_WR)
            assert closed_by_server(s, 10) == b""
        assert kinesis(running.url).list_streams()["StreamNames"] == []


def _few_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_connections_past_the_cap_are_refused_and_storage_keeps_its_files(tmp_path: Path) -> None:
    # 256 open files: at most 128 connections; 400 clients that never send a byte cannot starve the engine.
    log = tmp_path / "server.log"
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "always"]
    with log.open("w") as err, shardline(*args, stderr=err, preexec_fn=_few_open_files) as running:
        k = kinesis(running.url)
        k.create_stream(StreamName="s", ShardCount=8)  # keeps a pooled connection open before the flood
        with ExitStack() as stack:
            sockets = [stack.enter_context(connect(running.url)) for _ in range(400)]
            refused = 0
            for s in sockets:
                s.settimeout(0.01)
                try:
                    if s.recv(1024).startswith(b"HTTP/1.1 503 "):
                        refused += 1
                except TimeoutError:
                    pass
            deadline = time.monotonic() + 10
            while refused < 400 - 128 and time.monotonic() < deadline:
                for s in sockets:
                    s.settimeout(0.01)
                    try:
                        if s.recv(1024).startswith(b"HTTP/1.1 503 "):
                            refused += 1
                    except (TimeoutError, OSError):
                        pass
            assert refused >= 400 - 128
            # While every slot is held, the engine still has its files: the pooled connection writes and reads.
            for batch in range(20):
                out = k.put_records(
                    StreamName="s", Records=[{"Data": b"x" * 100, "PartitionKey": f"{batch}-{i}"} for i in range(100)]
                )
                assert out["FailedRecordCount"] == 0
        total = 0
        for shard in k.list_shards(StreamName="s")["Shards"]:
            it = k.get_shard_iterator(StreamName="s", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
            total += len(k.get_records(ShardIterator=it["ShardIterator"], Limit=10_000)["Records"])
        assert total == 2000
    text = log.read_text()
    assert "Too many open files" not in text
    assert "Traceback" not in text


# ----------------------------------------------------------------- who may be served
def test_other_machines_are_not_served_without_authentication(tmp_path: Path) -> None:
    for command in (["serve"], ["up", str(tmp_path / "shardline.yml")]):
        out = subprocess.run(
            [*CLI, *command, "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert out.returncode == 2
        assert "refusing to serve 0.0.0.0 without authentication" in out.stderr
        assert "--allow-unauthenticated" in out.stderr


def test_up_takes_the_same_authentication_as_serve(tmp_path: Path, credentials: Path) -> None:
    project = tmp_path / "shardline.yml"
    project.write_text("streams:\n  orders:\n    shards: 1\n")
    args = ["up", str(project), "--port", "0", "--data-dir", str(tmp_path / "data"), "--no-metrics"]
    with shardline(*args, "--auth", "sigv4", "--credentials", str(credentials), cwd=tmp_path) as running:
        assert signed_client(running.url).list_streams()["StreamNames"] == ["orders"]
        with pytest.raises(ClientError) as err:
            kinesis(running.url).list_streams()
        assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"


@pytest.mark.parametrize(("auth", "status"), [("none", 400), ("off", 200)])
def test_unsigned_requests_are_served_only_with_auth_off(tmp_path: Path, auth: str, status: int) -> None:
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path), "--auth", auth) as running:
        head = "\r\n".join(
            [
                "POST / HTTP/1.1",
                "Host: x",
                "X-Amz-Target: Kinesis_20131202.ListStreams",
                f"Content-Type: {JSON_TYPE}",
                "Content-Length: 2",
            ]
        )
        got, body = raw_request(running.url, head, b"{}")
        assert got == status
        if status == 400:
            assert json.loads(body) == {
                "__type": "MissingAuthenticationTokenException",
                "message": "Missing Authentication Token",
            }
        assert kinesis(running.url).list_streams()["StreamNames"] == []  # boto3 signs: served either way


@pytest.mark.parametrize(
    "upgrade",
    [
        # What Java's java.net.http.HttpClient sends by default on http:// (HTTP_2 is its default version).
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA",
        "Connection: Upgrade\r\nUpgrade: websocket",
    ],
)
def test_a_request_asking_to_upgrade_is_served_as_http_1_1_with_its_body(tmp_path: Path, upgrade: str) -> None:
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path)) as running, connect(running.url) as s:
        replies = s.makefile("rb")
        big = json.dumps({"StreamName": "s", "Data": "eA==", "PartitionKey": "p" * 200_000}).encode()  # > 64 KiB
        for op, body in [
            ("CreateStream", json.dumps({"StreamName": "s", "ShardCount": 1}).encode()),
            ("PutRecord", big),
        ]:
            head = "\r\n".join(
                [
                    "POST / HTTP/1.1",
                    "Host: x",
                    f"X-Amz-Target: Kinesis_20131202.{op}",
                    f"Content-Type: {JSON_TYPE}",
                    *(f"{k}: {v}" for k, v in UNVERIFIED_SIGNATURE.items()),
                    upgrade,
                    f"Content-Length: {len(body)}",
                ]
            )
            # The next request follows at once on the same connection (pipelined).
            listing = b"".join(
                [
                    b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n",
                    UNVERIFIED,
                    f"Content-Type: {JSON_TYPE}\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
                ]
            )
            s.sendall(head.encode() + b"\r\n\r\n" + body + listing)
            status, answer = read_responses(replies)
            if op == "CreateStream":
                assert (status, answer) == (200, b"")
            else:  # the whole body arrived: AWS's limit on the partition key speaks, not a lost body
                assert status == 400 and b"partitionKey" in answer, answer
            status, answer = read_responses(replies)
            assert (status, json.loads(answer)["StreamNames"]) == (200, ["s"])


def test_a_client_that_stops_reading_its_response_is_dropped(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never", "--write-timeout", "1"]
    with log.open("w") as err, shardline(*args, stderr=err) as running:
        k = kinesis(running.url)
        k.create_stream(StreamName="s", ShardCount=1)
        for _ in range(12):  # about 12 MB, so a GetRecords answer is far larger than the socket buffers
            k.put_records(StreamName="s", Records=[{"Data": b"x" * 2000, "PartitionKey": "p"} for _ in range(500)])
        it = k.get_shard_iterator(StreamName="s", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
        body = json.dumps({"ShardIterator": it["ShardIterator"], "Limit": 10_000}).encode()
        reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        where = urlparse(running.url)
        assert where.hostname is not None and where.port is not None
        reader.connect((where.hostname, where.port))
        with reader:
            head = "\r\n".join(
                [
                    "POST / HTTP/1.1",
                    "Host: x",
                    "X-Amz-Target: Kinesis_20131202.GetRecords",
                    f"Content-Type: {JSON_TYPE}",
                    *(f"{k}: {v}" for k, v in UNVERIFIED_SIGNATURE.items()),
                    f"Content-Length: {len(body)}",
                ]
            )
            reader.sendall(head.encode() + b"\r\n\r\n" + body)
            # The client reads nothing: the server's writes stall, and after a second it drops the connection.
            deadline = time.monotonic() + 30
            while "stopped reading" not in log.read_text():
                assert time.monotonic() < deadline, "the stalled connection was not dropped"
                time.sleep(0.1)
            got = b""
            reader.settimeout(10)
            with contextlib.suppress(ConnectionError):
                while chunk := reader.recv(1 << 20):
                    got += chunk
            head_part, _, answer = got.partition(b"\r\n\r\n")
            declared = int(re.search(rb"content-length: (\d+)", head_part, re.I).group(1))  # type: ignore[union-attr]
            assert len(answer) < declared  # cut off: the rest was never sent
        assert k.list_streams()["StreamNames"] == ["s"]  # and the server serves on
