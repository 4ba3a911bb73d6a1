"""The front of the app, before any action runs: target and content type, body syntax and size, request ids, health,
the CBOR protocol, request logging and SigV4 authentication."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlencode

import cbor2
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from _faults import Disk, Fsync, journal_files
from _shardline import START_MS
from shardline.api.actions import ACTIONS
from shardline.api.app import KinesisApp
from shardline.api.auth import SIGNATURE_MISMATCH, SigV4Verifier
from shardline.errors import InvalidSignatureException, ServiceUnavailable

from ._asgi import Kinesis, Lifespan

JSON_TYPE = "application/x-amz-json-1.1"
CBOR_TYPE = "application/x-amz-cbor-1.1"
ACCOUNT = "000000000000"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NO_OPERATION = "Unable to determine service/operation name to be authorized"


# ----------------------------------------------------------------- target and operation
@pytest.mark.parametrize(
    "target", ["Kinesis_20131202.ListStream", "DynamoDB_20120810.ListTables", "ListStreams", "Kinesis_20131202."]
)
async def test_unknown_target(kinesis: Kinesis, target: str) -> None:
    r = await kinesis.send(None, {}, headers={"x-amz-target": target})
    assert r.status == 400
    assert r.headers["content-type"] == JSON_TYPE
    assert r.json() == {"__type": "UnknownOperationException"}


async def test_no_target(kinesis: Kinesis) -> None:
    r = await kinesis.send(None, {})
    assert r.status == 400
    assert r.json() == {"__type": "UnknownOperationException"}
    r = await kinesis.send(None)
    assert (r.status, r.json()) == (400, {"__type": "UnknownOperationException"})


async def test_every_registered_action_answers(kinesis: Kinesis) -> None:
    # An empty body reaches each handler's shape check or the engine: none of them may crash the server.
    for op in sorted(ACTIONS):
        r = await kinesis.send(op, {})
        assert r.status in (200, 400), (op, r.status, r.body)


# ----------------------------------------------------------------- body syntax
async def test_missing_body_with_a_known_target(kinesis: Kinesis) -> None:
    r = await kinesis.send("ListStreams")
    assert r.status == 400
    assert r.json() == {"__type": "SerializationException"}


@pytest.mark.parametrize("body", [b"hello", b"{", b"[]", b"null", b"23", b'"x"', b"\xff\xfe", b'{"Limit": 1,}'])
async def test_garbled_json(kinesis: Kinesis, body: Any) -> None:
    r = await kinesis.send("ListStreams", body=body)
    assert r.status == 400
    assert r.json() == {"__type": "SerializationException"}


async def test_body_in_chunks(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    body = json.dumps({"StreamName": "s", "Data": base64.b64encode(b"chunked").decode(), "PartitionKey": "a"}).encode()
    r = await kinesis.send("PutRecord", chunks=[body[:5], body[5:20], b"", body[20:]])
    assert r.status == 200, r.body
    it = await kinesis.iterator("s")
    out = await kinesis.ok("GetRecords", {"ShardIterator": it})
    assert base64.b64decode(out["Records"][0]["Data"]) == b"chunked"


async def test_content_type_parameters_are_ignored(kinesis: Kinesis) -> None:
    r = await kinesis.send("ListStreams", {}, content_type="application/x-amz-json-1.1; charset=UTF-8")
    assert r.status == 200
    assert r.json()["StreamNames"] == []


# ----------------------------------------------------------------- method and content type
ACCESS_DENIED_XML = (
    b"<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n"
    b"</AccessDeniedException>\n"
)


def assert_raw(r: Any, status: int, body: bytes, content_type: str | None = None) -> None:
    assert (r.status, r.body) == (status, body)
    assert r.headers.get("content-type") == content_type
    assert r.headers["content-length"] == str(len(body))
    assert UUID.match(r.headers["x-amzn-requestid"])
    assert r.headers["x-amz-id-2"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
async def test_other_methods_are_access_denied_in_xml_without_a_content_type(kinesis: Kinesis, method: str) -> None:
    assert_raw(await kinesis.send(None, method=method, content_type=None), 403, ACCESS_DENIED_XML)
    assert_raw(await kinesis.send("ListStreams", {}, method=method), 403, ACCESS_DENIED_XML)


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-amz-json-1.0", "application/cbor"])
async def test_an_unusable_content_type_is_access_denied_without_a_target(kinesis: Kinesis, content_type: str) -> None:
    assert_raw(await kinesis.send(None, body=b"{}", content_type=content_type), 403, ACCESS_DENIED_XML)
    r = await kinesis.send(None, body=b"{}", content_type=content_type, headers={"x-amz-target": "Kinesis_20131202"})
    assert_raw(r, 403, ACCESS_DENIED_XML)


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-amz-json-1.0", "application/cbor"])
async def test_an_unusable_content_type_with_a_target_is_an_unknown_operation_in_xml(
    kinesis: Kinesis, content_type: str
) -> None:
    for op in ("ListStreams", "Nope"):
        assert_raw(
            await kinesis.send(op, body=b"{}", content_type=content_type), 404, b"<UnknownOperationException/>\n"
        )


@pytest.mark.parametrize(
    ("content_type", "protocol"),
    [
        ("application/x-amz-json-1.1", "json"),
        ("application/x-amz-cbor-1.1", "cbor"),
        (None, "cbor"),
        ("text/plain", "cbor"),
        ("application/json", "cbor"),
    ],
)
async def test_an_empty_body_is_answered_in_json_only_for_json_1_1(
    kinesis: Kinesis, content_type: str, protocol: str
) -> None:
    for op, kind in (("ListStreams", "SerializationException"), ("Nope", "UnknownOperationException")):
        r = await kinesis.send(op, body=b"", content_type=content_type)
        assert r.status == 400
        if protocol == "json":
            assert (r.headers["content-type"], r.json()) == (JSON_TYPE, {"__type": kind})
        else:
            assert (r.headers["content-type"], r.cbor()) == (CBOR_TYPE, {"__type": kind})


async def test_application_json_gets_the_legacy_envelope_and_is_never_served(kinesis: Kinesis) -> None:
    r = await kinesis.send("ListStreams", body=b"{", content_type="application/json")
    assert_raw(
        r,
        400,
        b'{"Output":{"__type":"com.amazon.coral.service#SerializationException"},"Version":"1.0"}',
        "application/json",
    )
    r = await kinesis.send("CreateStream", {"StreamName": "s", "ShardCount": 1}, content_type="application/json")
    assert_raw(
        r,
        404,
        b'{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"},"Version":"1.0"}',
        "application/json",
    )
    assert "s" not in kinesis.engine.streams


# ----------------------------------------------------------------- CORS
async def test_a_cors_preflight_is_answered_without_credentials(secured: Any) -> None:
    r = await secured.send(
        None,
        method="OPTIONS",
        content_type=None,
        headers={
            "origin": "http://localhost:3000",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-amz-target,x-amz-date,authorization",
        },
    )
    assert (r.status, r.body) == (200, b"")
    assert "content-type" not in r.headers
    assert "x-amz-id-2" not in r.headers
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-max-age"] == "172800"
    assert r.headers["access-control-allow-methods"] == "POST"
    assert r.headers["access-control-allow-headers"] == "content-type,x-amz-target,x-amz-date,authorization"


async def test_a_request_with_an_origin_may_be_read_by_the_page(kinesis: Kinesis) -> None:
    for op, payload in (("ListStreams", {}), ("DescribeStream", {"StreamName": "gone"})):
        r = await kinesis.send(op, payload, headers={"origin": "http://localhost:3000"})
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-expose-headers"] == (
            "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date"
        )
    assert "access-control-allow-origin" not in (await kinesis.send("ListStreams", {})).headers


# ----------------------------------------------------------------- size limit
async def test_declared_oversized_body_is_413(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(max_body_bytes=1024)
    r = await k.send("PutRecords", body=b"{" + b" " * 1998 + b"}")
    assert r.status == 413
    assert r.headers["content-type"] == JSON_TYPE
    assert UUID.match(r.headers["x-amzn-requestid"])
    assert r.json() == {
        "__type": "RequestEntityTooLargeException",
        "message": "Request body of 2000 bytes exceeds the limit of 1024 bytes",
    }


async def test_streamed_oversized_body_is_413_and_drained(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(max_body_bytes=1024)
    chunks = [b"{" + b" " * 599, b" " * 600, b" " * 600, b" " * 599 + b"}"]
    messages = [{"type": "http.request", "body": c, "more_body": i < 3} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-type", JSON_TYPE.encode()), (b"x-amz-target", b"Kinesis_20131202.PutRecords")],
    }
    await k.app(scope, receive, send)
    assert messages == []
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {
        "__type": "RequestEntityTooLargeException",
        "message": "Request body exceeds the limit of 1024 bytes",
    }


async def test_body_at_the_limit_is_accepted(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(max_body_bytes=1024)
    body = b'{"Limit": 5' + b" " * (1024 - 12) + b"}"
    assert len(body) == 1024
    r = await k.send("ListStreams", body=body)
    assert r.status == 200, r.body
    r = await k.send("ListStreams", chunks=[body[:512], body[512:]])
    assert r.status == 200, r.body


async def test_oversized_cbor_body_is_413(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(max_body_bytes=1024)
    payload = {"StreamName": "s", "Records": [{"Data": b"\0" * 2000, "PartitionKey": "a"}]}
    r = await k.send("PutRecords", payload, content_type=CBOR_TYPE)
    assert r.status == 413
    assert r.error[0] == "RequestEntityTooLargeException"


# ----------------------------------------------------------------- request ids and health
async def test_every_kinesis_response_has_a_request_id(kinesis: Kinesis) -> None:
    replies = [
        await kinesis.send("ListStreams", {}),
        await kinesis.send("DescribeStream", {"StreamName": "gone"}),
        await kinesis.send("CreateStream", {"StreamName": ""}),
        await kinesis.send("Nope", {}),
        await kinesis.send("ListStreams", body=b"{"),
        await kinesis.send(None, method="GET", content_type=None),
    ]
    ids = [r.headers.get("x-amzn-requestid", "") for r in replies]
    assert all(UUID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


async def test_content_length_matches_the_body(kinesis: Kinesis) -> None:
    for r in [await kinesis.send("ListStreams", {}), await kinesis.send("Nope", {})]:
        assert int(r.headers["content-length"]) == len(r.body)


@pytest.mark.parametrize("path", ["/health", "/_shardline/health"])
async def test_health(kinesis: Kinesis, path: str) -> None:
    await kinesis.create("s")
    r = await kinesis.send(None, method="GET", path=path, content_type=None)
    assert r.status == 200
    assert r.json() == {"status": "ok", "storage": "ok", "streams": 1}


async def _app_with_a_stream(make_kinesis: Callable[..., Awaitable[Kinesis]], auth: bool) -> Kinesis:
    """An app (signed requests only under ``auth``) whose engine holds stream ``s`` with a record in it."""
    k = await make_kinesis(fsync="always", verifier=SigV4Verifier({"AKID": "secret"}) if auth else None)
    await k.engine.create_stream("s", 1)
    await k.engine.put_record(stream_name="s", data=b"kept", partition_key="k")
    return k


async def _put_refused(k: Kinesis) -> None:
    with pytest.raises(ServiceUnavailable):
        await k.engine.put_record(stream_name="s", data=b"refused", partition_key="k")


@pytest.mark.parametrize("auth", [False, True])
async def test_health_says_a_full_disk_and_stays_up(
    make_kinesis: Callable[..., Awaitable[Kinesis]], monkeypatch: pytest.MonkeyPatch, auth: bool
) -> None:
    # Writes resume by themselves once space is freed; restarting would not free any.
    k = await _app_with_a_stream(make_kinesis, auth)
    disk = Disk(k.engine.settings.data_dir, monkeypatch)
    disk.full = True
    await _put_refused(k)
    r = await k.send(None, method="GET", path="/health", content_type=None)
    streams = {} if auth else {"streams": 1}  # (the storage state is not data: said under --auth too)
    assert (r.status, r.json()) == (200, {"status": "ok", "storage": "disk-full", **streams})
    disk.full = False
    await k.engine.put_record(stream_name="s", data=b"space again", partition_key="k")
    r = await k.send(None, method="GET", path="/health", content_type=None)
    assert (r.status, r.json()) == (200, {"status": "ok", "storage": "ok", **streams})


@pytest.mark.parametrize("auth", [False, True])
async def test_health_fails_after_a_failed_fsync(
    make_kinesis: Callable[..., Awaitable[Kinesis]], monkeypatch: pytest.MonkeyPatch, auth: bool
) -> None:
    # Writes are refused until a restart (which replays the journal): a liveness probe should have one done.
    k = await _app_with_a_stream(make_kinesis, auth)
    fsync = Fsync(journal_files(k.engine.settings.data_dir), monkeypatch)
    fsync.failing = True
    await _put_refused(k)
    fsync.failing = False  # (a later fsync would succeed: the state stays)
    r = await k.send(None, method="GET", path="/health", content_type=None)
    streams = {} if auth else {"streams": 1}
    body = {"status": "storage-failed", "storage": "failed", "error": "Input/output error", **streams}
    assert (r.status, r.json()) == (503, body)


async def test_health_follows_the_lifespan(
    make_kinesis: Callable[..., Awaitable[Kinesis]], lifespan_of: Callable[[KinesisApp], Lifespan]
) -> None:
    k = await make_kinesis(start=False)
    before = await k.send(None, method="GET", path="/health", content_type=None)
    assert before.status == 503
    assert before.json()["status"] == "starting"
    span = lifespan_of(k.app)
    assert (await span.start())["type"] == "lifespan.startup.complete"
    assert (await k.send(None, method="GET", path="/health", content_type=None)).status == 200
    assert (await span.stop()) == {"type": "lifespan.shutdown.complete"}
    after = await k.send(None, method="GET", path="/health", content_type=None)
    assert after.status == 503


async def test_lifespan_shutdown_closes_the_engine_cleanly(
    make_kinesis: Callable[..., Awaitable[Kinesis]], lifespan_of: Callable[[KinesisApp], Lifespan]
) -> None:
    first = await make_kinesis(start=False)
    span = lifespan_of(first.app)
    await span.start()
    await first.create("kept", 2)
    await first.put("kept", b"durable")
    await span.stop()
    second = await make_kinesis(data_dir=first.engine.settings.data_dir)
    assert second.engine.was_clean is True
    out = await second.ok("GetRecords", {"ShardIterator": await second.iterator("kept")})
    assert base64.b64decode(out["Records"][0]["Data"]) == b"durable"


async def test_a_second_app_on_a_busy_data_dir_fails_startup(
    kinesis: Kinesis, make_kinesis: Callable[..., Awaitable[Kinesis]], lifespan_of: Callable[[KinesisApp], Lifespan]
) -> None:
    second = await make_kinesis(start=False, data_dir=kinesis.engine.settings.data_dir)
    msg = await lifespan_of(second.app).start()
    assert msg["type"] == "lifespan.startup.failed"
    assert "in use" in msg["message"]
    assert (await second.send(None, method="GET", path="/health", content_type=None)).status == 503
    assert (await kinesis.send(None, method="GET", path="/health", content_type=None)).status == 200


async def test_a_service_that_fails_to_start_stops_the_ones_started_before_it(
    make_kinesis: Callable[..., Awaitable[Kinesis]], lifespan_of: Callable[[KinesisApp], Lifespan]
) -> None:
    events: list[str] = []

    class Service:
        def __init__(self, name: str, *, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        async def start(self) -> None:
            events.append(f"start {self.name}")
            if self.fails:
                raise RuntimeError(f"{self.name} cannot start")

        async def stop(self) -> None:
            events.append(f"stop {self.name}")

    k = await make_kinesis(start=False)
    k.app.services = [Service("project"), Service("monitor"), Service("broken", fails=True), Service("never")]
    msg = await lifespan_of(k.app).start()
    assert msg == {"type": "lifespan.startup.failed", "message": "broken cannot start"}
    assert events == ["start project", "start monitor", "start broken", "stop monitor", "stop project"]
    assert k.engine.closed


# ----------------------------------------------------------------- CBOR
async def test_cbor_put_and_get_round_trip(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    kinesis.clock.advance(ms=1500)
    payloads = [b"\x00\xffbinary", b"", bytes(range(200))]
    records = [{"Data": d, "PartitionKey": f"k{i}"} for i, d in enumerate(payloads)]
    r = await kinesis.send("PutRecords", {"StreamName": "s", "Records": records}, content_type=CBOR_TYPE)
    assert r.status == 200, r.body
    assert r.headers["content-type"] == CBOR_TYPE
    put = r.cbor()
    assert put["FailedRecordCount"] == 0
    assert [e["ShardId"] for e in put["Records"]] == ["shardId-000000000000"] * 3
    payload = {"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}
    it = (await kinesis.send("GetShardIterator", payload, content_type=CBOR_TYPE)).cbor()["ShardIterator"]
    r = await kinesis.send("GetRecords", {"ShardIterator": it}, content_type=CBOR_TYPE)
    assert r.status == 200
    got = r.cbor()
    assert [rec["Data"] for rec in got["Records"]] == payloads
    assert [rec["SequenceNumber"] for rec in got["Records"]] == [e["SequenceNumber"] for e in put["Records"]]
    arrival_ms = START_MS + 1500
    # Tag 1 holding an integer of epoch milliseconds, as the Java SDK writes and expects (it fails on seconds:
    # "Unable to parse date : 1.796582132562E9"), not a tag-0 date string.
    assert cbor2.dumps(cbor2.CBORTag(1, arrival_ms)) in r.body
    assert got["Records"][0]["ApproximateArrivalTimestamp"] == dt.datetime.fromtimestamp(arrival_ms / 1000, dt.UTC)


async def test_cbor_timestamps_in_requests(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    await kinesis.put("s", b"old")
    kinesis.clock.advance(10)
    await kinesis.put("s", b"new")
    payload = {
        "StreamName": "s",
        "ShardId": "shardId-000000000000",
        "ShardIteratorType": "AT_TIMESTAMP",
        # What the Java SDK sends (captured): c1 1b <u64 epoch milliseconds>.
        "Timestamp": cbor2.CBORTag(1, START_MS + 5000),
    }
    assert cbor2.dumps(payload["Timestamp"]).hex().startswith("c11b")
    r = await kinesis.send("GetShardIterator", payload, content_type=CBOR_TYPE)
    assert r.status == 200, r.body
    got = (
        await kinesis.send("GetRecords", {"ShardIterator": r.cbor()["ShardIterator"]}, content_type=CBOR_TYPE)
    ).cbor()
    assert [rec["Data"] for rec in got["Records"]] == [b"new"]
    for bad in (cbor2.CBORTag(1, "soon"), cbor2.CBORTag(1, True), cbor2.CBORTag(1, float("nan"))):
        r = await kinesis.send("GetShardIterator", {**payload, "Timestamp": bad}, content_type=CBOR_TYPE)
        assert r.error[0] == "SerializationException"


async def test_cbor_describe_summary(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    r = await kinesis.send("DescribeStreamSummary", {"StreamName": "s"}, content_type=CBOR_TYPE)
    summary = r.cbor()["StreamDescriptionSummary"]
    assert summary["StreamCreationTimestamp"] == dt.datetime.fromtimestamp(START_MS / 1000, dt.UTC)
    assert "StreamId" not in summary


async def test_cbor_errors_are_cbor(kinesis: Kinesis) -> None:
    r = await kinesis.send("DescribeStream", {"StreamName": "gone"}, content_type=CBOR_TYPE)
    assert r.status == 400
    assert r.headers["content-type"] == CBOR_TYPE
    assert r.cbor() == {
        "__type": "ResourceNotFoundException",
        "message": f"Stream gone under account {ACCOUNT} not found.",
    }
    r = await kinesis.send("PutRecord", {"StreamName": "s", "Data": 5, "PartitionKey": "a"}, content_type=CBOR_TYPE)
    assert r.cbor() == {
        "__type": "SerializationException",
        "Message": "class java.math.BigDecimal can not be converted to a Blob",
    }
    r = await kinesis.send("ListStreams", body=b"\xff\x00garbage", content_type=CBOR_TYPE)
    assert (r.status, r.cbor()) == (400, {"__type": "SerializationException"})


async def test_a_cbor_bignum_is_a_serialization_error_not_a_crash(kinesis: Kinesis) -> None:
    # 5,000 digits: past what Python will print, so it must never reach a validation message.
    huge = 10**5000
    for op, payload in [
        ("CreateStream", {"StreamName": "s", "ShardCount": huge}),
        ("ListShards", {"MaxResults": -huge}),
        ("DescribeStream", {"StreamName": "s", "Limit": 1 << 64}),
    ]:
        r = await kinesis.send(op, payload, content_type=CBOR_TYPE)
        assert (r.status, r.cbor()) == (400, {"__type": "SerializationException"}), op
    r = await kinesis.send("DescribeStream", {"StreamName": "s", "Limit": (1 << 64) - 1}, content_type=CBOR_TYPE)
    assert r.cbor()["__type"] == "ValidationException"


async def test_serialization_exception_alone_spells_its_member_message(kinesis: Kinesis) -> None:
    # The raw bytes: boto3 reads either spelling, code that parses the body by hand does not.
    r = await kinesis.send("DescribeStream", {"StreamName": 23})
    assert r.body == (
        b'{"__type":"SerializationException","Message":"class com.amazon.coral.value.json.numbers.TruncatingBigNumber'
        b' can not be converted to an String"}'
    )
    r = await kinesis.send("DescribeStream", {"StreamName": "gone"})
    assert r.json() == {
        "__type": "ResourceNotFoundException",
        "message": f"Stream gone under account {ACCOUNT} not found.",
    }


async def test_operations_without_an_output_answer_an_empty_body(kinesis: Kinesis) -> None:
    for name, content_type in (("j", JSON_TYPE), ("c", CBOR_TYPE)):
        r = await kinesis.send("CreateStream", {"StreamName": name, "ShardCount": 1}, content_type=content_type)
        assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "0")
        assert r.headers["content-type"] == content_type
    r = await kinesis.send("ListStreams", {})
    assert r.json()["StreamNames"] == ["c", "j"]


async def test_every_response_carries_an_x_amz_id_2(kinesis: Kinesis) -> None:
    seen = set()
    for op, payload in [("ListStreams", {}), ("DescribeStream", {"StreamName": "gone"}), ("Nope", {})]:
        r = await kinesis.send(op, payload)
        value = r.headers["x-amz-id-2"]
        assert len(base64.b64decode(value, validate=True)) == 72
        seen.add(value)
    assert len(seen) == 3


# ----------------------------------------------------------------- the signature's shape (--auth none)
@pytest.fixture
def shaped(kinesis: Kinesis) -> Kinesis:
    kinesis.app.signature_shape = True  # what `serve --auth none` runs with
    return kinesis


DATED = {"x-amz-date": "20260101T000000Z"}
WELL_FORMED = {
    "authorization": "AWS4-HMAC-SHA256 Credential=any/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, "
    "Signature=0",
    **DATED,
}


async def test_an_unsigned_request_is_missing_its_authentication_token(shaped: Kinesis) -> None:
    assert (await shaped.send("ListStreams", {})).error == (
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
    # After the operation is resolved, before the members' types.
    assert (await shaped.send("Nope", {})).error[0] == "UnknownOperationException"
    assert (await shaped.send("ListStreams", {"Limit": "x"})).error[0] == "MissingAuthenticationTokenException"
    # Any key and any signature of the right shape is served: --auth none verifies nothing.
    r = await shaped.send("ListStreams", {"Limit": "x"}, headers=WELL_FORMED)
    assert r.error[0] == "SerializationException"
    assert (await shaped.send("ListStreams", {}, headers=WELL_FORMED)).status == 200


async def test_a_signature_in_both_places_is_refused(shaped: Kinesis) -> None:
    r = await shaped.send("ListStreams", {}, headers=WELL_FORMED, query=b"X-Amz-Algorithm=AWS4-HMAC-SHA256")
    assert r.error == (
        "InvalidSignatureException",
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
    )


@pytest.mark.parametrize(
    ("authorization", "dated", "missing"),
    [
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=0", True, ["'Credential' parameter"]),
        ("AWS4-HMAC-SHA256 Credential=a", True, ["'Signature' parameter", "'SignedHeaders' parameter"]),
        (
            "AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host, Signature=0",
            False,
            ["existence of either a 'X-Amz-Date' or a 'Date' header"],
        ),
    ],
)
async def test_an_incomplete_authorization_header_names_what_it_lacks(
    shaped: Kinesis, authorization: str, dated: bool, missing: list[str]
) -> None:
    headers = {"authorization": authorization, **(DATED if dated else {})}
    kind, message = (await shaped.send("ListStreams", {}, headers=headers)).error
    assert kind == "IncompleteSignatureException"
    assert (
        message == "".join(f"Authorization header requires {m}. " for m in missing) + f"Authorization={authorization}"
    )


QUERY = {
    "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": "any/20260101/us-east-1/kinesis/aws4_request",
    "X-Amz-Signature": "0",
    "X-Amz-SignedHeaders": "host",
    "X-Amz-Date": "20260101T000000Z",
}


@pytest.mark.parametrize("absent", list(QUERY)[1:])
async def test_a_presigned_request_must_carry_its_five_parameters(
    shaped: Kinesis, make_kinesis: Callable[..., Awaitable[Kinesis]], absent: str
) -> None:
    query = urlencode({k: v for k, v in QUERY.items() if k != absent}).encode()
    message = f"AWS query-string parameters must include '{absent}'. Re-examine the query-string parameters."
    assert (await shaped.send("ListStreams", {}, query=query)).error == ("IncompleteSignatureException", message)
    # --auth sigv4 words it the same.
    secured_app = await make_kinesis(verifier=SigV4Verifier({"AKID": "secret"}))
    assert (await secured_app.send("ListStreams", {}, query=query)).error == ("IncompleteSignatureException", message)
    assert (await shaped.send("ListStreams", {}, query=urlencode(QUERY).encode())).status == 200


async def test_auth_off_serves_unsigned_requests(kinesis: Kinesis) -> None:
    assert kinesis.app.signature_shape is False
    assert (await kinesis.send("ListStreams", {})).status == 200


def presigned(op: str, body: bytes, *, expires: int = 300, secret: str = "secret") -> tuple[bytes, dict[str, str]]:
    request = AWSRequest(
        method="POST",
        url="http://localhost:4567/",
        data=body,
        headers={"Content-Type": JSON_TYPE, "X-Amz-Target": f"Kinesis_20131202.{op}", "Host": "localhost:4567"},
    )
    SigV4QueryAuth(Credentials("AKID", secret), "kinesis", "us-east-1", expires=expires).add_auth(request)
    query = request.url.split("?", 1)[1].encode()
    return query, {k.lower(): v for k, v in request.headers.items()}


async def test_a_presigned_request_is_verified(secured: Kinesis) -> None:
    # botocore moves a presigned request's JSON members into the query string; the body it signs is then empty.
    query, headers = presigned("ListStreams", b"")
    r = await secured.send("ListStreams", body=b"{}", content_type=None, headers=headers, query=query)
    assert r.error == ("InvalidSignatureException", SIGNATURE_MISMATCH)  # the body is not the one signed
    r = await secured.send("ListStreams", body=b"", content_type=None, headers=headers, query=query)
    assert r.error == ("SerializationException", None)  # signed and verified: the empty body is what is wrong
    tampered = query.replace(b"X-Amz-Expires=300", b"X-Amz-Expires=301")
    r = await secured.send("ListStreams", body=b"", content_type=None, headers=headers, query=tampered)
    assert r.error == ("InvalidSignatureException", SIGNATURE_MISMATCH)
    query, headers = presigned("ListStreams", b"", secret="wrong")
    r = await secured.send("ListStreams", body=b"", content_type=None, headers=headers, query=query)
    assert r.error == ("InvalidSignatureException", SIGNATURE_MISMATCH)


@pytest.mark.parametrize("expires", ["0", "604801", "x", "-5", "1e3"])
async def test_a_presigned_request_with_an_impossible_lifetime_is_refused(secured: Kinesis, expires: str) -> None:
    query, headers = presigned("ListStreams", b"")
    forged = re.sub(rb"X-Amz-Expires=\d+", b"X-Amz-Expires=" + expires.encode(), query)
    r = await secured.send("ListStreams", body=b"", content_type=None, headers=headers, query=forged)
    assert r.error == (
        "InvalidSignatureException",
        f"X-Amz-Expires must be a number of seconds from 1 to 604800. Got '{expires}'.",
    )


async def test_an_expired_presigned_request_is_refused(secured: Kinesis) -> None:
    query, headers = presigned("ListStreams", b"", expires=1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    verifier = secured.app.verifier
    assert verifier is not None
    with pytest.raises(InvalidSignatureException, match=r"^Signature expired: "):
        verifier.verify("POST", "/", query.decode(), headers, b"", now=later)


# ----------------------------------------------------------------- request log
async def test_request_log(make_kinesis: Callable[..., Awaitable[Kinesis]], caplog: pytest.LogCaptureFixture) -> None:
    k = await make_kinesis(log_requests=True)
    caplog.set_level(logging.INFO, logger="shardline.access")
    await k.send("ListStreams", {})
    await k.send("DescribeStream", {"StreamName": "gone"})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "shardline.access"]
    assert [(x["op"], x["status"], x["http"]) for x in lines] == [
        ("ListStreams", 200, "1.1"),
        ("DescribeStream", 400, "1.1"),
    ]
    assert all(UUID.match(x["id"]) for x in lines)


# ----------------------------------------------------------------- SigV4
def signed(op: str, body: bytes, *, akid: str = "AKID", secret: str = "secret") -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url="http://localhost:4567/",
        data=body,
        headers={"Content-Type": JSON_TYPE, "X-Amz-Target": f"Kinesis_20131202.{op}", "Host": "localhost:4567"},
    )
    SigV4Auth(Credentials(akid, secret), "kinesis", "us-east-1").add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.fixture
def secured(make_kinesis: Callable[..., Awaitable[Kinesis]], loop: asyncio.AbstractEventLoop) -> Any:
    return loop.run_until_complete(make_kinesis(verifier=SigV4Verifier({"AKID": "secret", "OTHER": "x"})))


async def test_signed_requests_are_accepted(secured: Any) -> None:
    body = json.dumps({"StreamName": "s", "ShardCount": 1}).encode()
    r = await secured.send("CreateStream", body=body, content_type=None, headers=signed("CreateStream", body))
    assert r.status == 200, r.body
    body = b"{}"
    r = await secured.send("ListStreams", body=body, content_type=None, headers=signed("ListStreams", body))
    assert r.json()["StreamNames"] == ["s"]


async def test_wrong_secret(secured: Any) -> None:
    body = b"{}"
    headers = signed("ListStreams", body, secret="wrong")
    r = await secured.send("ListStreams", body=body, content_type=None, headers=headers)
    assert r.status == 400
    assert r.json() == {
        "__type": "InvalidSignatureException",
        "message": "The request signature we calculated does not match the signature you provided. Check your AWS "
        "Secret Access Key and signing method. Consult the service documentation for details.",
    }


async def test_a_body_changed_after_signing(secured: Any) -> None:
    headers = signed("ListStreams", b'{"Limit": 1}')
    r = await secured.send("ListStreams", body=b'{"Limit": 2}', content_type=None, headers=headers)
    assert r.error[0] == "InvalidSignatureException"


async def test_unknown_access_key(secured: Any) -> None:
    body = b"{}"
    headers = signed("ListStreams", body, akid="NOBODY")
    r = await secured.send("ListStreams", body=body, content_type=None, headers=headers)
    assert r.error == ("UnrecognizedClientException", "The security token included in the request is invalid.")


async def test_no_authorization(secured: Any) -> None:
    r = await secured.send("ListStreams", {})
    assert r.status == 400
    assert r.json() == {"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"}


async def test_header_checks_come_before_authentication(secured: Any) -> None:
    assert (await secured.send("Nope", {})).error[0] == "UnknownOperationException"
    assert (await secured.send("ListStreams", {}, method="GET")).body == ACCESS_DENIED_XML
    assert (await secured.send("ListStreams", {}, content_type="text/plain")).status == 404


async def test_the_body_is_decoded_only_after_authentication(secured: Any) -> None:
    # AWS reports a malformed body before a missing signature; with --auth a body from nobody is never parsed.
    assert (await secured.send("ListStreams", body=b"{")).error[0] == "MissingAuthenticationTokenException"
    headers = signed("ListStreams", b"{")
    assert (await secured.send("ListStreams", body=b"{", content_type=None, headers=headers)).error == (
        "SerializationException",
        None,
    )


async def test_a_forged_payload_hash_does_not_let_another_body_through(secured: Any) -> None:
    # A captured signed request replayed with another body and an unsigned X-Amz-Content-SHA256 of the original body.
    original = json.dumps({"StreamName": "victim", "ShardCount": 1}).encode()
    headers = signed("CreateStream", original)
    headers["x-amz-content-sha256"] = hashlib.sha256(original).hexdigest()
    forged = json.dumps({"StreamName": "other", "ShardCount": 1}).encode()
    r = await secured.send("CreateStream", body=forged, content_type=None, headers=headers)
    assert r.error == ("InvalidSignatureException", SIGNATURE_MISMATCH)
    assert "other" not in secured.engine.streams


async def test_a_signed_payload_hash_must_match_the_body(secured: Any) -> None:
    body = b"{}"
    request = AWSRequest(
        method="POST",
        url="http://localhost:4567/",
        data=body,
        headers={
            "Content-Type": JSON_TYPE,
            "X-Amz-Target": "Kinesis_20131202.ListStreams",
            "Host": "localhost:4567",
            "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
        },
    )
    SigV4Auth(Credentials("AKID", "secret"), "kinesis", "us-east-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert (await secured.send("ListStreams", body=body, content_type=None, headers=headers)).status == 200
    r = await secured.send("ListStreams", body=b'{"Limit": 1}', content_type=None, headers=headers)
    assert r.error == ("InvalidSignatureException", SIGNATURE_MISMATCH)


@pytest.mark.parametrize(
    ("region", "service", "day_offset", "message"),
    [
        ("eu-west-1", "kinesis", 0, "Credential should be scoped to a valid region. "),
        ("us-east-1", "s3", 0, "Credential should be scoped to correct service: 'kinesis'. "),
        (
            "eu-west-1",
            "s3",
            0,
            "Credential should be scoped to a valid region. "
            "Credential should be scoped to correct service: 'kinesis'. ",
        ),
        ("us-east-1", "kinesis", -1, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date"),
    ],
)
async def test_a_key_scoped_elsewhere_is_refused(
    secured: Any, region: str, service: str, day_offset: Any, message: str
) -> None:
    # A key derived for another region, service or day signs correctly for its own scope, and is still refused.
    body = b"{}"
    now = dt.datetime.now(dt.UTC)
    request = AWSRequest(
        method="POST",
        url="http://localhost:4567/",
        data=body,
        headers={"Content-Type": JSON_TYPE, "X-Amz-Target": "Kinesis_20131202.ListStreams", "Host": "localhost:4567"},
    )
    SigV4Auth(Credentials("AKID", "secret"), service, region).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    if day_offset:
        scope_day = (now + dt.timedelta(days=day_offset)).strftime("%Y%m%d")
        headers["authorization"] = re.sub(r"/\d{8}/", f"/{scope_day}/", headers["authorization"])
    r = await secured.send("ListStreams", body=body, content_type=None, headers=headers)
    kind, text = r.error
    assert kind == "InvalidSignatureException"
    assert text is not None
    assert text.startswith(message), text
    if day_offset:
        stamp = headers["x-amz-date"]
        assert text == f"{message} from HTTP: '{scope_day}' != '{stamp[:8]}', from '{stamp}'."


async def test_malformed_authorization(secured: Any) -> None:
    r = await secured.send("ListStreams", {}, headers={"authorization": "X"})
    assert r.json() == {
        "__type": "IncompleteSignatureException",
        "message": "Authorization header requires 'Credential' parameter. "
        "Authorization header requires 'Signature' parameter. "
        "Authorization header requires 'SignedHeaders' parameter. "
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        "Authorization=X",
    }


@pytest.mark.parametrize(
    "auth", ["AWS4- Signature=b Credential=a", "AWS4- Signature=b,Credential=a", "AWS4- Signature=b, Credential=a"]
)
async def test_authorization_parameters_split_on_commas_or_spaces(secured: Any, auth: str) -> None:
    r = await secured.send("ListStreams", {}, headers={"authorization": auth, "date": "a"})
    assert r.error == (
        "IncompleteSignatureException",
        f"Authorization header requires 'SignedHeaders' parameter. Authorization={auth}",
    )


async def test_stale_signature(secured: Any) -> None:
    body = b"{}"
    headers = signed("ListStreams", body)
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    headers["x-amz-date"] = stale
    # The credential scope carries the stale day too (20 minutes ago is yesterday just after midnight UTC).
    headers["authorization"] = re.sub(r"/\d{8}/", f"/{stale[:8]}/", headers["authorization"], count=1)
    r = await secured.send("ListStreams", body=body, content_type=None, headers=headers)
    kind, msg = r.error
    assert kind == "InvalidSignatureException"
    assert msg is not None
    assert msg.startswith(f"Signature expired: {stale} is now earlier than ")
