"""Shared tables for the API tests: wrong JSON values per model type with the SerializationException text AWS sends
for each, and a builder for single-violation ValidationException messages (whose full format several tests also pin
literally)."""

from __future__ import annotations

from typing import Any

LIST_HERE = "Start of list found where not expected"
MAP_HERE = "Start of structure or map found where not expected."

STRING: list[tuple[Any, str]] = [
    (True, "class java.lang.Boolean can not be converted to an String"),
    (23, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"),
    (-2147483648, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"),
    (34.56, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"),
    ([], LIST_HERE),
    ({}, MAP_HERE),
]
INTEGER: list[tuple[Any, str]] = [
    ("23", "class java.lang.String can not be converted to an Integer"),
    (True, "class java.lang.Boolean can not be converted to an Integer"),
    ([], LIST_HERE),
    ({}, MAP_HERE),
]
BOOLEAN: list[tuple[Any, str]] = [
    ("yes", "'YES' can not be converted to an Boolean"),
    (23, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an Boolean"),
    ([], LIST_HERE),
    ({}, MAP_HERE),
]
LIST: list[tuple[Any, str]] = [
    ("23", "Expected list or null"),
    (True, "Expected list or null"),
    (23, "Expected list or null"),
    ({}, MAP_HERE),
]
MAP: list[tuple[Any, str]] = [
    ("23", "Expected map or null"),
    (True, "Expected map or null"),
    (23, "Expected map or null"),
    ([], LIST_HERE),
]
STRUCTURE: list[tuple[Any, str]] = [
    ("23", "Expected null"),
    (True, "Expected null"),
    (23, "Expected null"),
    ([], LIST_HERE),
]


def blob_cases() -> list[tuple[Any, str]]:
    """Wrong values for a blob, including the three base64 messages (AWS spells 'dectected' so)."""
    return [
        (True, "class java.lang.Boolean can not be converted to a Blob"),
        (23, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob"),
        (34.56, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob"),
        ([], LIST_HERE),
        ({}, MAP_HERE),
        (
            "23456",
            "'23456' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes "
            "but found: 5",
        ),
        ("=+/=", "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='"),
        ("ab!d", "'ab!d' can not be converted to a Blob: Invalid Base64 character: '!'"),
        ("+/+=", "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"),
    ]


def nest(path: str, value: Any) -> dict[str, Any]:
    """{"A": {"B": [value]}} from "A.B.0": builds the request member a dotted path names (digits are list slots)."""
    keys = path.split(".")
    out: Any = value
    for key in reversed(keys[1:]):
        out = [out] if key.isdigit() else {key: out}
    return {keys[0]: out}


def one_error(value: object, path: str, rule: str) -> str:
    shown = "null" if value is None else f"'{value}'"
    return f"1 validation error detected: Value {shown} at '{path}' failed to satisfy constraint: {rule}"
