"""What AWS's front end answers before it knows a request is a Kinesis call: the method, the content type, an empty
body, the legacy ``application/json`` envelope and CORS. Each answer here was recorded from AWS; none of them is a
Kinesis error of the JSON 1.1 / CBOR protocols, so they are raw bodies with their own content type (often none).
"""

from __future__ import annotations

from dataclasses import dataclass

from .wire import CBOR, JSON, Codec

__all__ = [
    "CORS_EXPOSED",
    "JSON_11",
    "LEGACY_JSON",
    "RawAnswer",
    "access_denied",
    "codec_for_empty_body",
    "legacy_answer",
    "preflight_headers",
    "usable_codec",
]

JSON_11 = "application/x-amz-json-1.1"
CBOR_11 = "application/x-amz-cbor-1.1"
LEGACY_JSON = "application/json"
_NO_OPERATION = "Unable to determine service/operation name to be authorized"
CORS_EXPOSED = b"x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date"
_CORS_MAX_AGE = b"172800"


@dataclass(frozen=True, slots=True)
class RawAnswer(Exception):
    """A response decided before the protocol is: status, content type (None: no Content-Type header), body."""

    status: int
    content_type: str | None
    body: bytes


def access_denied() -> RawAnswer:
    # AWS quirk: a method other than POST, or a body in no known protocol without a target, gets this XML with no
    # Content-Type at all.
    body = f"<AccessDeniedException>\n  <Message>{_NO_OPERATION}</Message>\n</AccessDeniedException>\n"
    return RawAnswer(403, None, body.encode())


def unknown_operation_xml() -> RawAnswer:
    return RawAnswer(404, None, b"<UnknownOperationException/>\n")


def normalized(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def codec_for_empty_body(content_type: str) -> Codec:
    """AWS quirk: an empty body's error is in JSON only for exactly JSON 1.1, otherwise in CBOR, even when the
    request has no Content-Type at all."""
    return JSON if normalized(content_type) == JSON_11 else CBOR


def usable_codec(content_type: str, target_service: str, target_op: str) -> Codec | None:
    """The codec of a request body, None for the legacy JSON envelope; raises the answer for any other type (JSON
    1.0 included): AccessDenied XML without a service and operation, UnknownOperation XML with them."""
    kind = normalized(content_type)
    if kind == JSON_11:
        return JSON
    if kind == CBOR_11:
        return CBOR
    if kind == LEGACY_JSON:
        return None
    if not target_service or not target_op:
        raise access_denied()
    raise unknown_operation_xml()


def legacy_answer(parseable: bool) -> RawAnswer:
    """AWS quirk: ``application/json`` gets the old Coral envelope and is never served."""
    kind = "UnknownOperationException" if parseable else "SerializationException"
    body = b'{"Output":{"__type":"com.amazon.coral.service#' + kind.encode() + b'"},"Version":"1.0"}'
    return RawAnswer(404 if parseable else 400, LEGACY_JSON, body)


def preflight_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """A CORS preflight's answer: any origin, the requested headers and method echoed, cached for two days."""
    out = [(b"access-control-allow-origin", b"*"), (b"access-control-max-age", _CORS_MAX_AGE)]
    if "access-control-request-headers" in headers:
        out.append((b"access-control-allow-headers", headers["access-control-request-headers"].encode("latin-1")))
    if "access-control-request-method" in headers:
        out.append((b"access-control-allow-methods", headers["access-control-request-method"].encode("latin-1")))
    return out
