"""Body codecs for the two protocols Kinesis clients speak.

- AWS JSON 1.1 (boto3, the AWS CLI, most SDKs): blobs are base64 strings, timestamps epoch seconds as numbers.
- CBOR (the Java SDK v2, the KCL and the KPL by default): blobs are byte strings, timestamps tag 1 holding epoch
  milliseconds as an integer (AWS quirk: RFC 8949's tag 1 holds seconds; the Java SDK writes and expects
  milliseconds, and fails on anything else).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import cbor2
import orjson

from .shapes import EpochMillis, RecordList, Timestamp

_CBOR_TAGS = {1: EpochMillis.decode}

__all__ = ["CBOR", "JSON", "Codec"]


class Codec:
    content_type = ""
    cbor = False

    def decode(self, body: bytes) -> Any:
        raise NotImplementedError

    def encode(self, obj: dict[str, Any]) -> bytes:
        raise NotImplementedError


def _json_default(obj: Any) -> Any:
    if isinstance(obj, RecordList):
        b2a = binascii.b2a_base64
        out = []
        for r in obj.records:
            item = {
                "SequenceNumber": r[0],
                "ApproximateArrivalTimestamp": r[1] / 1000,
                "Data": b2a(r[2], newline=False).decode("ascii"),
                "PartitionKey": r[3],
            }
            if not r[3]:  # (a record put without a key, on an AUTO distribution stream, is read without one)
                del item["PartitionKey"]
            if r[4]:
                item["EncryptionType"] = r[4]
            out.append(item)
        return out
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, Timestamp):
        return obj.ms / 1000
    raise TypeError(f"cannot encode {type(obj).__name__}")


class _Json(Codec):
    content_type = "application/x-amz-json-1.1"

    def decode(self, body: bytes) -> Any:
        return orjson.loads(body)

    def encode(self, obj: dict[str, Any]) -> bytes:
        return orjson.dumps(obj, default=_json_default)


def _cbor_default(encoder: cbor2.CBOREncoder, obj: Any) -> None:
    if isinstance(obj, Timestamp):
        encoder.encode(cbor2.CBORTag(1, obj.ms))
        return
    if isinstance(obj, RecordList):
        items = []
        for r in obj.records:
            item: dict[str, Any] = {
                "SequenceNumber": r[0],
                "ApproximateArrivalTimestamp": cbor2.CBORTag(1, r[1]),
                "Data": r[2],
                "PartitionKey": r[3],
            }
            if not r[3]:
                del item["PartitionKey"]
            if r[4]:
                item["EncryptionType"] = r[4]
            items.append(item)
        encoder.encode(items)
        return
    raise cbor2.CBOREncodeError(f"cannot encode {type(obj).__name__}")


class _Cbor(Codec):
    content_type = "application/x-amz-cbor-1.1"
    cbor = True

    def decode(self, body: bytes) -> Any:
        return cbor2.loads(body, semantic_decoders=_CBOR_TAGS)

    def encode(self, obj: dict[str, Any]) -> bytes:
        return cbor2.dumps(obj, default=_cbor_default)


JSON = _Json()
CBOR = _Cbor()
