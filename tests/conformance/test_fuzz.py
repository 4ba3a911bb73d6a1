"""Hypothesis-driven requests against the running server: it never answers 5xx, every request gets a complete HTTP
response on a connection that stays usable, and a stream written before the storm reads back exactly as it was."""

from __future__ import annotations

import base64
import http.client
import json
import math
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import botocore.session
import cbor2
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from _shardline import UNVERIFIED_SIGNATURE, kinesis_cbor

MODEL = botocore.session.get_session().get_service_model("kinesis")
PREFIX = MODEL.metadata["targetPrefix"]
OPERATIONS = sorted(MODEL.operation_names)
# The data-stream actions every Kinesis implementation serves; drawn more often than the rest of the model.
STREAM_OPERATIONS = sorted(
    op
    for op in OPERATIONS
    if "Stream" in op
    or op
    in {
        "GetRecords",
        "GetShardIterator",
        "ListShards",
        "MergeShards",
        "PutRecord",
        "PutRecords",
        "SplitShard",
        "UpdateShardCount",
        "DescribeLimits",
        "TagResource",
        "UntagResource",
        "ListTagsForResource",
        "SubscribeToShard",
    }
)
JSON_TYPES = ["application/x-amz-json-1.1", "application/x-amz-json-1.0", "application/json"]
CBOR_TYPES = ["application/x-amz-cbor-1.1", "application/cbor"]
# Headers whose wrong values would make the client, not the server, break the exchange (or hang it).
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade", "te"}
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
HEADER_NAME = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20
)


class Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    chunks: int  # 0: one body with Content-Length; n: chunked transfer in n pieces

    def describe(self) -> str:
        return f"{self.method} {self.path} {self.headers} chunks={self.chunks} body={self.body[:300]!r}"


# ----------------------------------------------------------------- strategies
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
EXTREME_FLOATS = st.sampled_from([1e308, float("inf"), float("nan"), -1e308, float("-inf"), 5e-324, 2.0**63, 0.5])
INTS = st.one_of(
    EXTREME_FLOATS,
    st.integers(min_value=-2, max_value=12),
    st.sampled_from([0, -1, 24, 168, 8760, 8761, 10000, 10001, 2**31, 2**63, 2**64]),
    st.floats(),
)
TIMESTAMPS = st.one_of(
    EXTREME_FLOATS,
    st.floats(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from(["2020-01-01T00:00:00Z", "1700000000", "inf", "nan", "-1e400", "not a date"]),
    st.text(max_size=20),
)
BLOBS = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=64),
    st.text(max_size=20),
)


def string_pool(pool: tuple[str, ...], enum: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(pool + enum), st.text(max_size=30))


@cache
def shaped(shape_name: str, pool: tuple[str, ...], *, top: bool = False) -> st.SearchStrategy[Any]:
    """Values for one input shape of the service model: mostly of the right type (from a pool of names that exist,
    so requests reach the engine), sometimes of any type."""
    shape = MODEL.shape_for(shape_name)
    kind = shape.type_name
    right: st.SearchStrategy[Any]
    if kind == "structure":
        members = {name: shaped(m.name, pool) for name, m in shape.members.items()}
        right = st.fixed_dictionaries({}, optional=members)
    elif kind == "list":
        right = st.lists(shaped(shape.member.name, pool), max_size=4)
    elif kind == "map":
        right = st.dictionaries(st.text(max_size=10), shaped(shape.value.name, pool), max_size=3)
    elif kind == "string":
        right = string_pool(pool, tuple(shape.enum or ()))
    elif kind in ("integer", "long"):
        right = INTS
    elif kind == "boolean":
        right = st.booleans()
    elif kind == "blob":
        right = BLOBS
    elif kind == "timestamp":
        right = TIMESTAMPS
    else:
        right = JSON_VALUES
    return right if top else st.sampled_from([right] * 9 + [JSON_VALUES]).flatmap(lambda chosen: chosen)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    raise TypeError(type(obj).__name__)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: stand in the largest finite numbers, so the body still parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0 if math.isnan(value) else math.copysign(1.7976931348623157e308, value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def encode(payload: Any, cbor: bool) -> bytes:
    if cbor:
        return cbor2.dumps(payload)
    return json.dumps(_finite(payload), default=_json_default).encode()


def _weighted(draw: st.DrawFn, usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odd_in_10: int) -> Any:
    # Hypothesis favours the first entries of a sample, so the usual case goes first.
    return draw(draw(st.sampled_from([usual] * (10 - odd_in_10) + [odd] * odd_in_10)))


@st.composite
def requests(draw: st.DrawFn, pool: tuple[str, ...], *, wild: bool) -> Request:
    """A request for one operation of the model. Tame: a well-formed envelope (POST /, the operation's target, a
    Kinesis content type) around a body of that operation's members with mostly right types, so that requests reach
    the type, constraint and engine checks. Wild: every part of the envelope and body may be wrong too."""
    odd = 3 if wild else 0
    op = _weighted(draw, st.sampled_from(STREAM_OPERATIONS), st.sampled_from(OPERATIONS), 3)
    target = _weighted(
        draw,
        st.just(f"{PREFIX}.{op}"),
        st.one_of(st.none(), HEADER_TEXT, HEADER_TEXT.map(lambda t: f"{PREFIX}.{t}")),
        odd,
    )
    content_type = _weighted(
        draw,
        st.sampled_from(JSON_TYPES + CBOR_TYPES),
        st.one_of(
            st.sampled_from(["text/plain", "", f"{JSON_TYPES[0]}; charset=utf-8", CBOR_TYPES[0].upper()]),
            st.none(),
            HEADER_TEXT,
        ),
        odd,
    )
    cbor = "cbor" in (content_type or "").lower()
    shape = MODEL.operation_model(op).input_shape
    well_typed = (
        shaped(shape.name, pool, top=True).map(lambda p: encode(p, cbor)) if shape is not None else st.just(b"{}")
    )
    names = (sorted(shape.members) if shape is not None else []) or ["X"]
    body = _weighted(
        draw,
        well_typed,
        st.one_of(
            JSON_VALUES.map(lambda p: encode(p, cbor)),
            st.dictionaries(st.sampled_from(names), JSON_VALUES).map(lambda p: encode(p, cbor)),
            st.binary(max_size=512),
        ),
        odd,
    )
    headers: dict[str, str] = {}
    extra = draw(st.dictionaries(HEADER_NAME, HEADER_TEXT, max_size=3))
    headers.update({k: v for k, v in extra.items() if k.lower() not in RESERVED_HEADERS})
    if target is not None:
        headers["X-Amz-Target"] = target
    if content_type is not None:
        headers["Content-Type"] = content_type
    method = _weighted(
        draw, st.just("POST"), st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]), odd
    )
    path = _weighted(
        draw,
        st.just("/"),
        st.one_of(
            st.sampled_from(["/health", "/_shardline/health", "//", "/?Action=ListStreams", "/%00", "/../x"]),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%/?=&", max_size=20).map(lambda p: "/" + p),
        ),
        odd,
    )
    chunks = draw(st.sampled_from([0, 0, 1, 3]))
    return Request(method, path, headers, body, chunks)


def tame(op: str, payload: dict[str, Any], *, cbor: bool = False) -> Request:
    content_type = CBOR_TYPES[0] if cbor else JSON_TYPES[0]
    headers = {"Content-Type": content_type, "X-Amz-Target": f"{PREFIX}.{op}"}
    return Request("POST", "/", headers, encode(payload, cbor), 0)


# ----------------------------------------------------------------- exchange and checks
LIST_STREAMS = {"Content-Type": JSON_TYPES[0], "X-Amz-Target": f"{PREFIX}.ListStreams"}


def send(conn: http.client.HTTPConnection, req: Request) -> tuple[http.client.HTTPResponse, bytes]:
    body: Any = req.body
    if req.chunks:
        step = max(1, -(-len(req.body) // req.chunks))
        body = [req.body[i : i + step] for i in range(0, len(req.body), step)] or [b""]
    conn.request(req.method, req.path, body=body, headers={**UNVERIFIED_SIGNATURE, **req.headers})
    resp = conn.getresponse()
    return resp, resp.read()


def check_response(req: Request, resp: http.client.HTTPResponse, data: bytes) -> None:
    where = req.describe()
    assert 100 <= resp.status < 500, f"{resp.status} {data[:300]!r} for {where}"
    length = resp.getheader("content-length")
    if length is not None and req.method != "HEAD":
        assert len(data) == int(length), where
    if req.path != "/" or req.method == "HEAD":
        return
    assert resp.getheader("x-amzn-RequestId"), where
    assert resp.getheader("x-amz-id-2"), where
    if resp.status == 200 and data == b"":
        return  # an operation without an output shape
    ctype = resp.getheader("content-type", "")
    if not ctype:  # AWS's XML answers to a request in no known protocol
        assert data in (
            b"<UnknownOperationException/>\n",
            b"<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized"
            b"</Message>\n</AccessDeniedException>\n",
        ), where
        return
    decoded = kinesis_cbor(data) if "cbor" in ctype else json.loads(data)
    assert isinstance(decoded, dict), where
    if ctype == "application/json":  # the legacy envelope AWS answers that content type with
        decoded = decoded["Output"]
    if resp.status >= 400:
        assert isinstance(decoded.get("__type"), str), f"{decoded} for {where}"


def snapshot(kinesis: Any, name: str) -> tuple[Any, ...]:
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    shards = [(s["ShardId"], s["HashKeyRange"], s["SequenceNumberRange"]) for s in desc["Shards"]]
    tags = kinesis.list_tags_for_stream(StreamName=name)["Tags"]
    return desc["StreamStatus"], desc["RetentionPeriodHours"], shards, tags


def read_all(streams: Any, name: str) -> dict[str, list[tuple[str, bytes, str]]]:
    out = {}
    for sh in streams.client.list_shards(StreamName=name)["Shards"]:
        out[sh["ShardId"]] = [
            (r["SequenceNumber"], r["Data"], r["PartitionKey"]) for r in streams.read_shard(name, sh["ShardId"])
        ]
    return out


def all_stream_names(kinesis: Any) -> set[str]:
    return {n for page in kinesis.get_paginator("list_streams").paginate() for n in page["StreamNames"]}


def test_fuzz_never_fails_the_server_nor_corrupts_a_stream(endpoint: str, kinesis: Any, streams: Any) -> None:
    canary = streams.create(2, label="canary", Tags={"keep": "me"})
    records = [{"Data": f"canary-{i}".encode() * (i + 1), "PartitionKey": f"k{i}"} for i in range(40)]
    out = kinesis.put_records(StreamName=canary, Records=records)
    assert out["FailedRecordCount"] == 0
    before_records = read_all(streams, canary)
    assert sum(len(v) for v in before_records.values()) == len(records)
    before_meta = snapshot(kinesis, canary)

    playground = streams.create(1, label="play")
    arn = streams.arn(playground)
    pool = (
        playground,
        arn,
        f"{arn}/consumer/c:1",
        f"conf-fuzznew-{playground[-12:]}",
        "shardId-000000000000",
        "shardId-000000000001",
        "0",
        "170141183460469231731687303715884105728",
        "340282366920938463463374607431768211456",
        "c",
    )
    existing = all_stream_names(kinesis)
    parts = urlsplit(endpoint)

    def exchange(req: Request) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        try:
            resp, data = send(conn, req)
            check_response(req, resp, data)
            if resp.will_close:
                return
            follow, follow_data = send(conn, Request("POST", "/", LIST_STREAMS, b'{"Limit": 1}', 0))
            assert follow.status == 200, f"after {req.describe()}: {follow.status} {follow_data[:300]!r}"
        finally:
            conn.close()

    def bounded(examples: int) -> settings:
        return settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )

    # Pinned because random draws reach each only now and then: numbers at the edges of what JSON and CBOR carry
    # (a timestamp whose milliseconds overflow, a non-finite count), and a member the model leaves optional.
    @bounded(400)
    @given(req=requests(pool, wild=False))
    @example(
        req=tame(
            "GetShardIterator",
            {"StreamName": playground, "ShardId": "0", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": 1e308},
        )
    )
    @example(req=tame("ListStreams", {"Limit": float("nan")}, cbor=True))
    @example(req=tame("PutRecords", {"StreamName": playground, "Records": [{"Data": "AA=="}]}))
    def fuzz_tame(req: Request) -> None:
        exchange(req)

    @bounded(200)
    @given(req=requests(pool, wild=True))
    def fuzz_wild(req: Request) -> None:
        exchange(req)

    failures: list[Exception] = []
    try:
        for fuzz in (fuzz_tame, fuzz_wild):
            try:
                fuzz()
            except Exception as exc:
                failures.append(exc)
    finally:
        for name in all_stream_names(kinesis) - existing:
            try:
                kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ResourceNotFoundException"

    # The canary is checked even when fuzzing found a failure: corruption is the worse news.
    assert snapshot(kinesis, canary) == before_meta
    assert read_all(streams, canary) == before_records
    # Still writable after the storm, and the new record lands after the old ones.
    later = kinesis.put_record(StreamName=canary, Data=b"after", PartitionKey="k0")
    assert int(later["SequenceNumber"]) > max((int(s) for s, _, _ in before_records[later["ShardId"]]), default=0)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise ExceptionGroup("fuzzing found failures", failures)
