"""FilterCriteria for Kinesis mappings: one test per operator and per rule of the filtering view."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.runtime.filters import MAX_PATTERN_CHARS, FilterError, RecordFilter

PK = "pk-1"
SEQ = "49590338271490256608559692538361571095921575989136588898"
ARRIVAL_MS = 1_545_084_650_987


def keeps(
    pattern: dict[str, Any] | str,
    data: object = None,
    *,
    raw: bytes | None = None,
    pk: str = PK,
    seq: str = SEQ,
    arrival_ms: int = ARRIVAL_MS,
) -> bool:
    """Does one pattern keep a record whose data is ``data`` as JSON (or the bytes ``raw``)?"""
    text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    body = raw if raw is not None else json.dumps(data).encode()
    return RecordFilter([text]).matches(pk, seq, arrival_ms, body)


def on_data(field: str, *rules: object) -> dict[str, Any]:
    return {"data": {field: list(rules)}}


def invalid(pattern: dict[str, Any] | str) -> str:
    text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    with pytest.raises(FilterError) as err:
        RecordFilter([text])
    return str(err.value)


# --- patterns as a whole ------------------------------------------------------------------------------------------


def test_no_patterns_is_inactive_and_keeps_everything() -> None:
    f = RecordFilter([])
    assert not f.active
    assert f.matches(PK, SEQ, ARRIVAL_MS, b"\xff not json")
    assert RecordFilter(['{"partitionKey": ["x"]}']).active


def test_any_pattern_keeps_the_record() -> None:
    f = RecordFilter(['{"data": {"type": ["a"]}}', '{"data": {"type": ["b"]}}'])
    assert f.matches(PK, SEQ, ARRIVAL_MS, b'{"type": "a"}')
    assert f.matches(PK, SEQ, ARRIVAL_MS, b'{"type": "b"}')
    assert not f.matches(PK, SEQ, ARRIVAL_MS, b'{"type": "c"}')


def test_every_named_field_must_match() -> None:
    pattern = {"partitionKey": [PK], "data": {"type": ["buy"], "qty": [{"numeric": [">", 10]}]}}
    assert keeps(pattern, {"type": "buy", "qty": 11})
    assert not keeps(pattern, {"type": "buy", "qty": 10})
    assert not keeps(pattern, {"type": "sell", "qty": 11})
    assert not keeps(pattern, {"type": "buy", "qty": 11}, pk="other")
    assert not keeps(pattern, {"type": "buy"})


def test_fields_the_pattern_does_not_name_are_ignored() -> None:
    assert keeps(on_data("type", "buy"), {"type": "buy", "extra": [1, {"deep": True}], "other": None})


def test_nested_objects_recurse() -> None:
    pattern = {"data": {"order": {"item": {"sku": ["A-1"]}}}}
    assert keeps(pattern, {"order": {"item": {"sku": "A-1", "n": 2}}})
    assert not keeps(pattern, {"order": {"item": {"sku": "A-2"}}})
    assert not keeps(pattern, {"order": {"sku": "A-1"}})
    assert not keeps(pattern, {"order": "A-1"})


def test_metadata_fields_of_the_view() -> None:
    assert keeps({"partitionKey": [PK]}, {})
    assert keeps({"sequenceNumber": [SEQ]}, {})
    assert keeps({"kinesisSchemaVersion": ["1.0"]}, {})
    assert not keeps({"kinesisSchemaVersion": [1.0]}, {})
    # The arrival time is in seconds with a millisecond fraction, as the Lambda event shows it.
    assert keeps({"approximateArrivalTimestamp": [1545084650.987]}, {})
    assert keeps({"approximateArrivalTimestamp": [{"numeric": [">=", 1545084650.987, "<", 1545084651]}]}, {})
    assert not keeps({"approximateArrivalTimestamp": [{"numeric": [">", 1545084650.987]}]}, {})


def test_duplicate_keys_last_one_wins() -> None:
    pattern = '{"data": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}'
    assert keeps(pattern, {"location": "eu-west"})
    assert not keeps(pattern, {"location": "us-east"})


# --- the data-format table ----------------------------------------------------------------------------------------


def test_json_data_with_a_data_pattern_filters_on_the_data() -> None:
    assert keeps({"partitionKey": [PK], "data": {"k": ["v"]}}, {"k": "v"})
    assert not keeps({"partitionKey": [PK], "data": {"k": ["v"]}}, {"k": "w"})


def test_json_data_without_a_data_pattern_filters_on_metadata_only() -> None:
    assert keeps({"partitionKey": [PK]}, {"anything": 1})
    assert not keeps({"partitionKey": ["other"]}, {"anything": 1})


@pytest.mark.parametrize(
    "raw",
    [
        b"plain text",
        b"\xff\xfe\x00binary",
        b"",
        b"{'single': 'quotes'}",
        b"NaN",
        b'{"a": 1} trailing',
        "\ufeff{}".encode(),
    ],
)
def test_non_json_data_with_a_data_pattern_is_dropped(raw: bytes) -> None:
    assert not keeps({"partitionKey": [PK], "data": {"k": ["v"]}}, raw=raw)
    # Even a rule that an absent field would satisfy: the record is dropped, not treated as empty.
    assert not keeps({"data": {"k": [{"exists": False}]}}, raw=raw)
    assert not keeps({"data": [{"anything-but": "x"}]}, raw=raw)
    assert not keeps({"data": [{"exists": False}]}, raw=raw)


@pytest.mark.parametrize("raw", [b"plain text", b"\xff\xfe\x00binary", b""])
def test_non_json_data_without_a_data_pattern_filters_on_metadata_only(raw: bytes) -> None:
    assert keeps({"partitionKey": [PK]}, raw=raw)
    assert not keeps({"partitionKey": ["other"]}, raw=raw)


def test_a_pattern_that_is_not_json_is_refused() -> None:
    with pytest.raises(FilterError, match=r"^Filter pattern 2 is not valid JSON: "):
        RecordFilter(['{"partitionKey": ["a"]}', '{"data": {"k": ["v"]'])


def test_data_that_is_a_json_scalar_matches_a_rule_on_data_itself() -> None:
    assert keeps({"data": ["hello"]}, "hello")
    assert keeps({"data": [{"numeric": [">", 1]}]}, 2)
    assert not keeps({"data": {"k": ["v"]}}, "hello")


def test_invalid_utf8_data_is_not_json() -> None:
    assert not keeps({"data": {"k": ["v"]}}, raw=b'{"k": "v\xff"}')


# --- exact values ---------------------------------------------------------------------------------------------------


def test_exact_string_is_case_and_character_exact() -> None:
    assert keeps(on_data("s", "Alice"), {"s": "Alice"})
    assert not keeps(on_data("s", "Alice"), {"s": "alice"})
    assert not keeps(on_data("s", "Alice"), {"s": "Alice "})


def test_a_list_of_values_is_an_or() -> None:
    pattern = on_data("pay", "Credit", "Debit")
    assert keeps(pattern, {"pay": "Debit"})
    assert not keeps(pattern, {"pay": "Cash"})


def test_numbers_match_their_exact_form() -> None:
    pattern = on_data("n", 300)
    assert keeps(pattern, raw=b'{"n": 300}')
    assert not keeps(pattern, raw=b'{"n": 300.0}')
    assert not keeps(pattern, raw=b'{"n": 3.0e2}')
    assert not keeps(pattern, raw=b'{"n": "300"}')
    assert keeps('{"data": {"n": [3.0e2]}}', raw=b'{"n": 3.0e2}')
    assert not keeps('{"data": {"n": [3.0e2]}}', raw=b'{"n": 300.0}')
    assert not keeps(on_data("s", "300"), raw=b'{"s": 300}')


def test_integers_beyond_64_bits_match_exactly() -> None:
    big = "123456789012345678901234567890"
    assert keeps(f'{{"data": {{"n": [{big}]}}}}', raw=f'{{"n": {big}}}'.encode())
    assert not keeps(f'{{"data": {{"n": [{big}]}}}}', raw=f'{{"n": {big}1}}'.encode())


def test_booleans_match_only_booleans() -> None:
    assert keeps(on_data("b", True), {"b": True})
    assert not keeps(on_data("b", True), {"b": 1})
    assert not keeps(on_data("b", True), {"b": "true"})
    assert not keeps(on_data("n", 1), {"n": True})
    assert keeps(on_data("b", False), {"b": False})


def test_null_matches_null_not_a_missing_field() -> None:
    assert keeps(on_data("u", None), {"u": None})
    assert not keeps(on_data("u", None), {})
    assert not keeps(on_data("u", None), {"u": "null"})
    assert not keeps(on_data("u", None), {"u": ""})


def test_empty_string_matches_only_the_empty_string() -> None:
    assert keeps(on_data("s", ""), {"s": ""})
    assert not keeps(on_data("s", ""), {"s": None})
    assert not keeps(on_data("s", ""), {})


# --- arrays in the record -------------------------------------------------------------------------------------------


def test_an_array_value_matches_when_any_element_does() -> None:
    assert keeps(on_data("tags", "b", "z"), {"tags": ["a", "b"]})
    assert not keeps(on_data("tags", "z"), {"tags": ["a", "b"]})
    assert keeps(on_data("tags", "c"), {"tags": [["a"], ["b", ["c"]]]})
    assert keeps(on_data("n", {"numeric": [">", 5]}), {"n": [1, 9]})


def test_an_array_of_objects_matches_field_by_field_within_one_element() -> None:
    pattern = {"data": {"people": {"first": ["Anna"], "last": ["Smith"]}}}
    assert keeps(pattern, {"people": [{"first": "John", "last": "Doe"}, {"first": "Anna", "last": "Smith"}]})
    # Anna and Jones are in different elements: no single element satisfies the pattern.
    assert not keeps(pattern, {"people": [{"first": "Anna", "last": "Doe"}, {"first": "Peter", "last": "Smith"}]})


def test_arrays_of_arrays_of_objects_are_flattened() -> None:
    pattern = {"data": {"people": {"first": ["Anna"], "last": ["Smith"]}}}
    assert keeps(pattern, {"people": [[{"first": "John"}], [{"first": "Anna", "last": "Smith"}]]})


def test_scalar_elements_have_no_fields() -> None:
    # [1, 2] has no "b" below it, so the pattern's "b" is absent there, as it would be under a missing "a".
    assert keeps({"data": {"a": {"b": [{"exists": False}]}}}, {"a": [1, 2]})
    assert not keeps({"data": {"a": {"b": [{"exists": True}]}}}, {"a": [1, 2]})


def test_the_data_itself_may_be_an_array() -> None:
    assert keeps({"data": {"k": ["v"]}}, [{"k": "w"}, {"k": "v"}])
    assert not keeps({"data": {"k": ["v"]}}, [{"k": "w"}])


# --- operators --------------------------------------------------------------------------------------------------------


def test_anything_but_single_string() -> None:
    pattern = on_data("state", {"anything-but": "initializing"})
    assert keeps(pattern, {"state": "running"})
    assert keeps(pattern, {"state": "INITIALIZING"})
    assert not keeps(pattern, {"state": "initializing"})
    assert not keeps(pattern, {}), "anything-but needs the field to be there"
    assert keeps(pattern, {"state": None})
    assert keeps(pattern, {"state": True})
    assert keeps(pattern, {"state": 5})


def test_anything_but_list_of_strings() -> None:
    pattern = on_data("state", {"anything-but": ["stopped", "overloaded"]})
    assert keeps(pattern, {"state": "running"})
    assert not keeps(pattern, {"state": "stopped"})
    assert not keeps(pattern, {"state": "overloaded"})


def test_anything_but_numbers_compare_values() -> None:
    single = on_data("x", {"anything-but": 123})
    assert keeps(single, {"x": 124})
    assert not keeps(single, raw=b'{"x": 123}')
    assert not keeps(single, raw=b'{"x": 123.0}')
    listed = on_data("x", {"anything-but": [100, 200, 300]})
    assert not keeps(listed, {"x": 200})
    assert keeps(listed, {"x": 250})
    assert keeps(listed, {"x": "200"}), "a string is not one of the excluded numbers"


def test_anything_but_over_an_array_needs_one_element_outside_the_set() -> None:
    pattern = on_data("x", {"anything-but": ["a", "b"]})
    assert keeps(pattern, {"x": ["a", "c"]})
    assert not keeps(pattern, {"x": ["a", "b"]})


def test_anything_but_prefix() -> None:
    pattern = on_data("region", {"anything-but": {"prefix": "us-"}})
    assert keeps(pattern, {"region": "eu-west-1"})
    assert not keeps(pattern, {"region": "us-east-1"})


def test_anything_but_suffix() -> None:
    pattern = on_data("file", {"anything-but": {"suffix": ".png"}})
    assert keeps(pattern, {"file": "a.jpg"})
    assert not keeps(pattern, {"file": "a.png"})


def test_anything_but_equals_ignore_case() -> None:
    single = on_data("state", {"anything-but": {"equals-ignore-case": "initializing"}})
    assert keeps(single, {"state": "running"})
    assert not keeps(single, {"state": "INITIALIZING"})
    listed = on_data("state", {"anything-but": {"equals-ignore-case": ["a", "B"]}})
    assert not keeps(listed, {"state": "b"})
    assert keeps(listed, {"state": "c"})


def test_anything_but_wildcard() -> None:
    pattern = on_data("path", {"anything-but": {"wildcard": "*/lib/*"}})
    assert keeps(pattern, {"path": "/usr/bin/x"})
    assert not keeps(pattern, {"path": "/usr/lib/x"})


@pytest.mark.parametrize(
    ("rule", "yes", "no"),
    [
        (["=", 100], [100, 100.0, 1e2], [100.5, 99]),
        (["<", 10], [9.99, -5], [10, 11]),
        (["<=", 10], [10, -5], [10.01]),
        ([">", 10], [10.01, 1e9], [10, 0]),
        ([">=", 10], [10, 11], [9.999]),
        ([">", 10, "<=", 20], [10.5, 20], [10, 20.01]),
        ([">=", 0, "<", 5], [0, 4.99], [5, -0.1]),
    ],
)
def test_numeric(rule: list[object], yes: list[float], no: list[float]) -> None:
    pattern = on_data("n", {"numeric": rule})
    for x in yes:
        assert keeps(pattern, {"n": x}), x
    for x in no:
        assert not keeps(pattern, {"n": x}), x


def test_numeric_matches_only_json_numbers() -> None:
    pattern = on_data("n", {"numeric": [">", 0]})
    assert not keeps(pattern, {"n": "5"})
    assert not keeps(pattern, {"n": True})
    assert not keeps(pattern, {"n": None})
    assert not keeps(pattern, {})


def test_exists_true_and_false() -> None:
    present = on_data("c", {"exists": True})
    absent = on_data("c", {"exists": False})
    for value in ["x", 0, None, False, ["x"]]:
        assert keeps(present, {"c": value}), value
        assert not keeps(absent, {"c": value}), value
    assert not keeps(present, {"d": 1})
    assert keeps(absent, {"d": 1})


def test_exists_looks_at_leaves_only() -> None:
    # An object or an empty array is not a leaf value, so the field counts as absent.
    for value in [{"c1": 100}, [], [{"c1": 100}]]:
        assert keeps(on_data("c", {"exists": False}), {"c": value}), value
        assert not keeps(on_data("c", {"exists": True}), {"c": value}), value
    assert keeps({"data": {"c": {"c1": [{"exists": True}]}}}, {"c": {"c1": 100}})


def test_exists_false_under_a_missing_parent() -> None:
    assert keeps({"data": {"a": {"b": [{"exists": False}]}}}, {})
    assert not keeps({"data": {"a": {"b": [{"exists": True}]}}}, {})


def test_prefix() -> None:
    pattern = on_data("time", {"prefix": "2017-10-02"})
    assert keeps(pattern, {"time": "2017-10-02T18:43:48Z"})
    assert not keeps(pattern, {"time": "2017-10-03T00:00:00Z"})
    assert not keeps(on_data("n", {"prefix": "12"}), {"n": 123}), "prefix applies to strings only"


def test_prefix_equals_ignore_case() -> None:
    pattern = on_data("service", {"prefix": {"equals-ignore-case": "EventB"}})
    assert keeps(pattern, {"service": "eventbridge"})
    assert keeps(pattern, {"service": "EVENTBUS"})
    assert not keeps(pattern, {"service": "event"})


def test_suffix() -> None:
    pattern = on_data("file", {"suffix": ".png"})
    assert keeps(pattern, {"file": "a.png"})
    assert not keeps(pattern, {"file": "a.PNG"})
    assert keeps(on_data("file", {"suffix": {"equals-ignore-case": ".png"}}), {"file": "a.PNG"})


def test_equals_ignore_case() -> None:
    pattern = on_data("name", {"equals-ignore-case": "alice"})
    assert keeps(pattern, {"name": "ALICE"})
    assert keeps(pattern, {"name": "aLiCe"})
    assert not keeps(pattern, {"name": "alicia"})
    assert not keeps(pattern, {"name": 1})


@pytest.mark.parametrize(
    ("glob", "yes", "no"),
    [
        ("Simple*Service", ["SimpleService", "Simple Queue Service"], ["Simple", "simpleService", "SimpleServices"]),
        ("*.png", [".png", "a/b.png"], ["a.png.bak"]),
        ("dir/*", ["dir/", "dir/x"], ["dir"]),
        ("*a*b*", ["ab", "xaxbx"], ["ba", "b"]),
        ("*ab*ab*", ["abab", "xabyabz"], ["xaby", "aba"]),
        ("ab*ba", ["aba" + "ba", "abba"], ["aba"]),
        ("exact", ["exact"], ["exactly"]),
        ("a\\*b", ["a*b"], ["axb"]),
        ("a\\\\*", ["a\\", "a\\x"], ["a"]),
    ],
)
def test_wildcard(glob: str, yes: list[str], no: list[str]) -> None:
    pattern = on_data("s", {"wildcard": glob})
    for s in yes:
        assert keeps(pattern, {"s": s}), s
    for s in no:
        assert not keeps(pattern, {"s": s}), s


def test_cidr() -> None:
    v4 = on_data("ip", {"cidr": "10.0.0.0/24"})
    assert keeps(v4, {"ip": "10.0.0.255"})
    assert not keeps(v4, {"ip": "10.0.1.0"})
    assert not keeps(v4, {"ip": "not an address"})
    assert not keeps(v4, {"ip": "::1"})
    assert keeps(on_data("ip", {"cidr": "2001:db8::/32"}), {"ip": "2001:db8::7"})


def test_values_and_operators_mix_in_one_rule() -> None:
    pattern = on_data("s", "exact", {"prefix": "pre"}, {"exists": False})
    assert keeps(pattern, {"s": "exact"})
    assert keeps(pattern, {"s": "prefix"})
    assert keeps(pattern, {})
    assert not keeps(pattern, {"s": "other"})


# --- $or --------------------------------------------------------------------------------------------------------------


def test_or_inside_data() -> None:
    pattern = {"data": {"source": ["cw"], "$or": [{"metric": ["CPU"]}, {"ns": ["EC2"]}]}}
    assert keeps(pattern, {"source": "cw", "metric": "CPU"})
    assert keeps(pattern, {"source": "cw", "ns": "EC2"})
    assert not keeps(pattern, {"source": "cw", "metric": "Disk"})
    assert not keeps(pattern, {"source": "other", "metric": "CPU"})


def test_or_at_top_level_mixes_metadata_and_data() -> None:
    pattern = {"$or": [{"partitionKey": ["vip"]}, {"data": {"priority": ["high"]}}]}
    assert keeps(pattern, {"priority": "low"}, pk="vip")
    assert keeps(pattern, {"priority": "high"}, pk="x")
    assert not keeps(pattern, {"priority": "low"}, pk="x")
    assert keeps(pattern, raw=b"not json", pk="vip")
    assert not keeps(pattern, raw=b"not json", pk="x")


def test_or_branches_with_and_and_nested_or() -> None:
    pattern = {
        "data": {
            "$or": [
                {"name": ["a"]},
                {"type": ["t"], "$or": [{"id": [1]}, {"space": [2]}]},
            ]
        }
    }
    assert keeps(pattern, {"name": "a"})
    assert keeps(pattern, {"type": "t", "space": 2})
    assert not keeps(pattern, {"type": "t", "id": 3})
    assert not keeps(pattern, {"id": 1})


# --- invalid patterns -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ('{"data": {"x": "a"}}', 'data.x: values must be in arrays, e.g. ["a"], not a string'),
        ('{"data": {"x": 5}}', "data.x: values must be in arrays"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('"text"', "must be a JSON object, not a string"),
        ("{}", "top level: empty objects are not allowed"),
        ('{"data": {}}', "data: empty objects are not allowed"),
        ('{"data": {"x": []}}', "data.x: empty arrays are not allowed"),
        ('{"eventName": ["x"]}', "eventName: unknown field; a Kinesis pattern may name only"),
        ('{"partitionKey": {"a": ["b"]}}', "partitionKey: a metadata field takes an array of values, not an object"),
        ('{"data": {"x": [["a"]]}}', "data.x: a match value must be a string, number, true, false, null"),
        ('{"data": {"x": [{"prefix": "a", "suffix": "b"}]}}', "an operator object has exactly one key, got 2"),
        ('{"data": {"x": [{"contains": "a"}]}}', "unknown operator 'contains'"),
        ('{"data": {"x": [{"prefix": 1}]}}', "prefix takes a string or"),
        ('{"data": {"x": [{"suffix": {"prefix": "a"}}]}}', "suffix takes a string or"),
        ('{"data": {"x": [{"equals-ignore-case": ["a"]}]}}', "equals-ignore-case takes a string, not an array"),
        ('{"data": {"x": [{"exists": "yes"}]}}', "exists must be true or false, not a string"),
        ('{"data": {"x": [{"numeric": 5}]}}', "numeric takes a non-empty array"),
        ('{"data": {"x": [{"numeric": []}]}}', "numeric takes a non-empty array"),
        ('{"data": {"x": [{"numeric": ["==", 5]}]}}', 'numeric: unknown operator "=="'),
        ('{"data": {"x": [{"numeric": [">", "5"]}]}}', "numeric: the value of > must be a number"),
        ('{"data": {"x": [{"numeric": [">", true]}]}}', "numeric: the value of > must be a number"),
        ('{"data": {"x": [{"numeric": [">"]}]}}', "numeric: the value of > must be a number"),
        ('{"data": {"x": [{"numeric": [">", 1e999]}]}}', "numeric: the value of > must be finite"),
        ('{"data": {"x": [{"numeric": ["=", 5, "<", 6]}]}}', "numeric: use one comparison, or a lower bound"),
        ('{"data": {"x": [{"numeric": ["<", 5, ">", 1]}]}}', "numeric: use one comparison, or a lower bound"),
        ('{"data": {"x": [{"numeric": [">", 1, "<", 5, "<", 6]}]}}', "numeric: use one comparison"),
        ('{"data": {"x": [{"numeric": [">", 5, "<", 5]}]}}', "lower bound 5 must be less than the upper bound 5"),
        ('{"data": {"x": [{"anything-but": []}]}}', "anything-but: empty arrays are not allowed"),
        ('{"data": {"x": [{"anything-but": ["a", 1]}]}}', "only strings or only numbers"),
        ('{"data": {"x": [{"anything-but": null}]}}', "anything-but takes a string, a number"),
        ('{"data": {"x": [{"anything-but": {"prefix": ""}}]}}', "anything-but prefix must not be empty"),
        ('{"data": {"x": [{"anything-but": {"prefix": ["a"]}}]}}', "anything-but prefix takes a string"),
        ('{"data": {"x": [{"anything-but": {"numeric": [">", 1]}}]}}', "anything-but: unsupported operator"),
        ('{"data": {"x": [{"anything-but": {"prefix": "a", "suffix": "b"}}]}}', "exactly one key, got 2"),
        ('{"data": {"x": [{"wildcard": "a**b"}]}}', "wildcard: consecutive wildcard characters at position 1"),
        ('{"data": {"x": [{"wildcard": "a\\\\b"}]}}', "wildcard: invalid escape at position 1"),
        ('{"data": {"x": [{"wildcard": "a\\\\"}]}}', "wildcard: invalid escape at position 1"),
        ('{"data": {"x": [{"cidr": "10.0.0.0/33"}]}}', "data.x: cidr: "),
        ('{"data": {"$or": [{"a": ["1"]}]}}', "data.$or: must be an array of at least 2 objects"),
        ('{"data": {"$or": {"a": ["1"]}}}', "data.$or: must be an array of at least 2 objects"),
        ('{"data": {"$or": [{"a": ["1"]}, ["b"]]}}', "data.$or: must be an array of at least 2 objects"),
        ('{"data": {"$or": [{"a": ["1"]}, {"prefix": ["b"]}]}}', '"prefix" is an operator and cannot be a field'),
        ('{"$or": [{"partitionKey": ["1"]}, {"other": ["b"]}]}', "$or[1].other: unknown field"),
        ('{"data": {"x": [NaN]}}', "is not valid JSON"),
    ],
)
def test_invalid_patterns_say_what_is_wrong(pattern: str, message: str) -> None:
    got = invalid(pattern)
    assert got.startswith("Filter pattern 1"), got
    assert message in got, got


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    pattern: dict[str, Any] = {"x": ["v"]}
    for _ in range(70):
        pattern = {"x": pattern}
    assert "nested more than 64 levels deep" in invalid({"data": pattern})


def test_pattern_count_and_length_limits() -> None:
    RecordFilter(['{"partitionKey": ["a"]}'] * 10)
    with pytest.raises(FilterError, match="at most 10 filter patterns are allowed, got 11"):
        RecordFilter(['{"partitionKey": ["a"]}'] * 11)
    filler = "a" * (MAX_PATTERN_CHARS - len('{"partitionKey": [""]}'))
    RecordFilter([f'{{"partitionKey": ["{filler}"]}}'])
    with pytest.raises(FilterError, match=r"^Filter pattern 2 is 4097 characters long; the limit is 4096$"):
        RecordFilter(['{"partitionKey": ["a"]}', f'{{"partitionKey": ["{filler}x"]}}'])


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


# --- properties -------------------------------------------------------------------------------------------------------

_KEYS = st.text(alphabet="abcdefghij", min_size=1, max_size=4)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_DOCS = st.recursive(
    _SCALARS | st.lists(_SCALARS, min_size=1, max_size=3),
    lambda inner: st.dictionaries(_KEYS, inner, min_size=1, max_size=3),
    max_leaves=8,
).filter(lambda d: isinstance(d, dict))


def _exact_pattern(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: _exact_pattern(v) for k, v in doc.items()}
    return list(doc) if isinstance(doc, list) else [doc]


@settings(max_examples=150, deadline=None)
@given(doc=_DOCS)
def test_property_an_exact_pattern_built_from_a_document_matches_it(doc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    f = RecordFilter([json.dumps({"partitionKey": [PK], "data": _exact_pattern(doc)})])
    assert f.matches(PK, SEQ, ARRIVAL_MS, data)
    assert not f.matches("other", SEQ, ARRIVAL_MS, data)


_EXCLUDABLE = st.text(max_size=8) | st.integers(-(10**6), 10**6) | st.floats(-1e9, 1e9, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(value=_EXCLUDABLE, other=_EXCLUDABLE)
def test_property_anything_but_a_value_never_matches_that_value(value: object, other: object) -> None:
    f = RecordFilter([json.dumps(on_data("k", {"anything-but": value}))])
    assert not f.matches(PK, SEQ, ARRIVAL_MS, json.dumps({"k": value}).encode())
    assert not f.matches(PK, SEQ, ARRIVAL_MS, json.dumps({"k": [value, value]}).encode())
    assert f.matches(PK, SEQ, ARRIVAL_MS, json.dumps({"k": other}).encode()) == (other != value)


_NUMS = st.integers(-(10**9), 10**9) | st.floats(-1e9, 1e9, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(x=_NUMS, lo=_NUMS, hi=_NUMS)
def test_property_numeric_range_agrees_with_comparison(x: float, lo: float, hi: float) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    if lo == hi:
        hi = lo + 1
    f = RecordFilter([json.dumps(on_data("n", {"numeric": [">", lo, "<=", hi]}))])
    assert f.matches(PK, SEQ, ARRIVAL_MS, json.dumps({"n": x}).encode()) == (lo < x <= hi)
