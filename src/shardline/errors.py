"""Errors named exactly as AWS names them.

``type(exc).__name__`` is the wire ``__type``; each class carries the HTTP status AWS answers with and whether a
client may retry. Each is written out as a small class (a subclass of ``KinesisError`` that overrides the two
class attributes where AWS's differ from the defaults), so adding an error is adding one class and its name to
``__all__``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDeniedException",
    "DryRunOperationException",
    "ExpiredIteratorException",
    "ExpiredNextTokenException",
    "IncompleteSignatureException",
    "InternalFailureException",
    "InvalidArgumentException",
    "InvalidParameterValueException",
    "InvalidSignatureException",
    "KinesisError",
    "LimitExceededException",
    "MissingAuthenticationTokenException",
    "ProvisionedThroughputExceededException",
    "RequestEntityTooLargeException",
    "ResourceInUseException",
    "ResourceNotFoundException",
    "SerializationException",
    "ServiceUnavailable",
    "UnknownOperationException",
    "UnrecognizedClientException",
    "ValidationException",
    "enum_rule",
    "validation_error",
]


class KinesisError(Exception):
    """Base of every error a Kinesis client can see. ``message`` is AWS's wording."""

    http_status: ClassVar[int] = 400
    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @property
    def type_name(self) -> str:
        return type(self).__name__


class AccessDeniedException(KinesisError):
    http_status = 403


class ExpiredIteratorException(KinesisError):
    pass


class ExpiredNextTokenException(KinesisError):
    pass


class InternalFailureException(KinesisError):
    http_status = 500
    retryable = True


class InvalidArgumentException(KinesisError):
    pass


class ServiceUnavailable(KinesisError):
    """AWS's common error for a temporary failure of the server (named without "Exception", as AWS names it).
    Every AWS SDK retries a 503 with backoff (botocore: legacy and standard modes; the Java SDK v2: its default
    retry condition), which is what a writer should do while the disk is full until space is freed."""

    http_status = 503
    retryable = True


class LimitExceededException(KinesisError):
    retryable = True


class ProvisionedThroughputExceededException(KinesisError):
    retryable = True


class ResourceInUseException(KinesisError):
    pass


class ResourceNotFoundException(KinesisError):
    pass


class SerializationException(KinesisError):
    pass


class ValidationException(KinesisError):
    pass


class UnknownOperationException(KinesisError):
    pass


class MissingAuthenticationTokenException(KinesisError):
    pass


class IncompleteSignatureException(KinesisError):
    pass


class InvalidSignatureException(KinesisError):
    pass


class UnrecognizedClientException(KinesisError):
    pass


class RequestEntityTooLargeException(KinesisError):
    http_status = 413


class DryRunOperationException(KinesisError):
    pass


class InvalidParameterValueException(KinesisError):
    """Lambda's error for an invalid event source mapping or function parameter."""


def validation_error(violations: list[tuple[object, str, str]]) -> ValidationException:
    """One ValidationException listing up to 10 (value, member path, constraint) violations, in AWS's words:
    ``1 validation error detected: Value 'x' at 'streamName' failed to satisfy constraint: Member must ...``."""
    shown = violations[:10]
    parts = [f"Value {_quoted(value)} at '{path}' failed to satisfy constraint: {rule}" for value, path, rule in shown]
    # AWS counts only the violations it lists.
    n = len(shown)
    head = f"{n} validation error{'s' if n != 1 else ''} detected: "
    return ValidationException(head + "; ".join(parts))


def _quoted(value: object) -> str:
    # AWS quirk: a missing value is written null, without quotes; every other value is quoted.
    return "null" if value is None else f"'{_show(value)}'"


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return f"java.nio.HeapByteBuffer[pos=0 lim={len(value)} cap={len(value)}]"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def enum_rule(values: tuple[str, ...] | list[str]) -> str:
    """The constraint text for an enum, its values in the order AWS lists them.

    AWS quirk: the values come out of a Java HashSet, so they are in hash-bucket order: by ``String.hashCode()``
    masked to the table size (16 until more than 12 values), in declaration order within a bucket. For
    ShardIteratorType that gives ``[AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]``,
    as AWS answers."""
    size = 16
    while len(values) > size * 3 // 4:
        size *= 2
    ordered = sorted(values, key=lambda v: _java_hash(v) & (size - 1))
    return f"Member must satisfy enum value set: [{', '.join(ordered)}]"


def _java_hash(text: str) -> int:
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():  # Java hashes UTF-16 code units
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h
