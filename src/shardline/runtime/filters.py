"""FilterCriteria: which Kinesis records an event source mapping hands to its function.

Each pattern is a JSON object matched against the record's filtering view::

    {"kinesisSchemaVersion": "1.0", "partitionKey": ..., "sequenceNumber": ..., "approximateArrivalTimestamp":
     arrival_ms / 1000, "data": <the record's bytes parsed as JSON>}

A record is kept when ANY pattern matches. Inside a pattern every named field must match (AND) and unnamed fields
are ignored; objects nest. A field's rule is an array, and the field matches when ANY entry matches one of its
values: an exact string, number, ``true``/``false`` or ``null``, or an operator object (``prefix``, ``suffix``,
``equals-ignore-case``, ``wildcard``, ``anything-but``, ``numeric``, ``exists``, ``cidr``). ``"$or": [{...}, {...}]``
holds when any of its branches matches. When the record value is an array, any element may satisfy the rule; all
fields of one nested pattern must be satisfied by the same array element.

Exact matching is character by character on the JSON form, so ``300``, ``300.0`` and ``3.0e2`` differ (only
``numeric`` compares values) and ``"300"`` never equals ``300``. ``exists`` looks at leaf values only: a field
holding an object or an empty array counts as absent. ``anything-but`` needs the field to be present. Duplicate
keys in a pattern: the last one wins.

Data-format rules: a pattern that names ``data`` never matches a record whose data is not UTF-8 JSON; a pattern
that does not name it filters on metadata only, and the data is then never parsed.

Our choices where AWS says nothing: patterns are numbered from 1 in error messages; a Kinesis pattern may name only
the five fields above; metadata fields take arrays, not objects; nesting deeper than ``MAX_DEPTH`` is refused;
``anything-but`` with ``prefix``/``suffix``/``equals-ignore-case``/``wildcard`` lets non-string values through;
``numeric`` compares Python numbers, without the range and precision limits AWS documents for it.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import orjson

__all__ = ["MAX_DEPTH", "MAX_PATTERNS", "MAX_PATTERN_CHARS", "FilterError", "RecordFilter"]

MAX_PATTERNS: Final = 10  # the raised quota; the default quota of 5 is the mapping's business
MAX_PATTERN_CHARS: Final = 4096
MAX_DEPTH: Final = 64

KINESIS_FIELDS: Final = frozenset(
    {"kinesisSchemaVersion", "partitionKey", "sequenceNumber", "approximateArrivalTimestamp", "data"}
)
_OPERATORS: Final = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "exists", "cidr"}
)

_Test = Callable[[object], bool]


class FilterError(ValueError):
    """A filter pattern is not valid; the message names the pattern (from 1), the field and the problem."""


class _RawFloat(float):
    """A JSON number with a fraction or exponent, keeping its text: exact matching compares text, not value."""

    __slots__ = ("raw",)
    raw: str

    def __new__(cls, raw: str) -> _RawFloat:
        self = super().__new__(cls, raw)
        self.raw = raw
        return self


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _number_text(x: float) -> str:
    if isinstance(x, _RawFloat):
        return x.raw
    return str(x) if isinstance(x, int) else repr(x)


class _Missing:
    __slots__ = ()


_MISSING: Final = _Missing()  # the field is not in the record
_NOT_JSON: Final = _Missing()  # the record's data is not UTF-8 JSON: no rule on it can hold
_EMPTY: Final[dict[str, object]] = {}


@dataclass(frozen=True, slots=True)
class _Leaf:
    tests: tuple[_Test, ...]
    exists_true: bool
    exists_false: bool


@dataclass(frozen=True, slots=True)
class _Node:
    fields: tuple[tuple[str, _Leaf | _Node], ...]
    ors: tuple[tuple[_Node, ...], ...]


# --- matching ---------------------------------------------------------------------------------------------------


def _flatten(items: list[Any]) -> Iterator[object]:
    # Iterative: a record may nest arrays deeper than the interpreter's recursion limit.
    stack = [iter(items)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            yield x
        else:
            stack.pop()


def _match_leaf(rule: _Leaf, value: object) -> bool:
    if type(value) is str:  # the common case, first
        if rule.exists_true:
            return True
        return any(test(value) for test in rule.tests)
    if value is _NOT_JSON:
        return False
    if isinstance(value, list):
        leaves: list[object] | tuple[object, ...] = [x for x in _flatten(value) if not isinstance(x, dict)]
    elif value is _MISSING or isinstance(value, dict):
        leaves = ()
    else:
        leaves = (value,)
    if not leaves:
        return rule.exists_false
    if rule.exists_true:
        return True
    for x in leaves:
        for test in rule.tests:
            if test(x):
                return True
    return False


def _match_node(node: _Node, value: object) -> bool:
    if value is _NOT_JSON:
        return False
    if isinstance(value, dict):
        return _match_fields(node, value)
    if isinstance(value, list) and value:
        return any(_match_fields(node, x if isinstance(x, dict) else _EMPTY) for x in _flatten(value))
    return _match_fields(node, _EMPTY)  # a scalar, an empty array or nothing: every field below is absent


def _match_fields(node: _Node, obj: dict[str, Any] | _RecordView) -> bool:
    get = obj.get
    for key, rule in node.fields:
        value = get(key, _MISSING)
        if not (_match_leaf(rule, value) if isinstance(rule, _Leaf) else _match_node(rule, value)):
            return False
    if node.ors:
        return all(any(_match_fields(branch, obj) for branch in group) for group in node.ors)
    return True


class _RecordView:
    """The filtering view of one record; ``data`` is parsed on first use, at most once."""

    __slots__ = ("_data", "_parsed", "_raw_numbers", "_ts", "partition_key", "sequence_number")

    def __init__(self, partition_key: str, sequence_number: str, arrival_ms: int, data: bytes, raw: bool) -> None:
        self.partition_key = partition_key
        self.sequence_number = sequence_number
        self._ts = arrival_ms / 1000
        self._data = data
        self._raw_numbers = raw
        self._parsed: object = _MISSING

    def get(self, key: str, default: object) -> object:
        if key == "data":
            if self._parsed is _MISSING:
                self._parsed = _parse_data(self._data, self._raw_numbers)
            return self._parsed
        if key == "partitionKey":
            return self.partition_key
        if key == "sequenceNumber":
            return self.sequence_number
        if key == "approximateArrivalTimestamp":
            return self._ts
        if key == "kinesisSchemaVersion":
            return "1.0"
        return default


def _parse_data(data: bytes, raw_numbers: bool) -> object:
    try:
        if not raw_numbers:
            return orjson.loads(data)
        # Slower path, only when some pattern matches a number exactly: the number's text must survive parsing.
        return json.loads(data.decode("utf-8"), parse_float=_RawFloat, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _NOT_JSON


# --- leaf tests ---------------------------------------------------------------------------------------------------


def _exact(strings: frozenset[str], numbers: frozenset[str], consts: frozenset[object]) -> _Test:
    def test(x: object) -> bool:
        if isinstance(x, str):
            return x in strings
        if x is None or isinstance(x, bool):
            return x in consts
        if isinstance(x, int | float):
            return _number_text(x) in numbers
        return False

    return test


def _prefix(p: str, fold: bool) -> _Test:
    if fold:
        p = p.lower()
        return lambda x: isinstance(x, str) and x.lower().startswith(p)
    return lambda x: isinstance(x, str) and x.startswith(p)


def _suffix(s: str, fold: bool) -> _Test:
    if fold:
        s = s.lower()
        return lambda x: isinstance(x, str) and x.lower().endswith(s)
    return lambda x: isinstance(x, str) and x.endswith(s)


def _equals_ignore_case(values: list[str]) -> _Test:
    folded = frozenset(v.lower() for v in values)
    return lambda x: isinstance(x, str) and x.lower() in folded


def _glob(parts: tuple[str, ...]) -> _Test:
    # Literal segments between stars placed leftmost-first: linear scans, no regex backtracking to exploit.
    head, tail, middle = parts[0], parts[-1], parts[1:-1]
    if len(parts) == 1:
        return lambda x: x == head
    fixed = len(head) + len(tail)

    def test(x: object) -> bool:
        if not isinstance(x, str) or len(x) < fixed or not x.startswith(head) or not x.endswith(tail):
            return False
        pos, end = len(head), len(x) - len(tail)
        for seg in middle:
            i = x.find(seg, pos, end)
            if i < 0:
                return False
            pos = i + len(seg)
        return True

    return test


def _any_of(tests: list[_Test]) -> _Test:
    return tests[0] if len(tests) == 1 else lambda x: any(t(x) for t in tests)


def _numeric(lo: float | None, lo_open: bool, hi: float | None, hi_open: bool) -> _Test:
    def test(x: object) -> bool:
        if not isinstance(x, int | float) or isinstance(x, bool):
            return False
        if lo is not None and (x < lo or (lo_open and x == lo)):
            return False
        return hi is None or not (x > hi or (hi_open and x == hi))

    return test


def _cidr(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> _Test:
    def test(x: object) -> bool:
        if not isinstance(x, str):
            return False
        try:
            return ipaddress.ip_address(x) in net
        except ValueError:
            return False

    return test


def _anything_but_values(strings: frozenset[str], numbers: frozenset[float]) -> _Test:
    def test(x: object) -> bool:
        if isinstance(x, str):
            return x not in strings
        if _is_number(x):
            return x not in numbers
        return True

    return test


def _negate(test: _Test) -> _Test:
    return lambda x: not test(x)


# --- compiling ----------------------------------------------------------------------------------------------------


def _kind(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, int | float):
        return "a number"
    return "an array" if isinstance(v, list) else "an object"


class _Compiler:
    def __init__(self, number: int) -> None:
        self.number = number
        self.raw_numbers = False

    def fail(self, path: list[str], problem: str) -> NoReturn:
        where = ".".join(path) if path else "top level"
        raise FilterError(f"Filter pattern {self.number}: {where}: {problem}")

    def node(self, obj: dict[str, Any], path: list[str], top: bool, in_or: bool) -> _Node:
        if len(path) > MAX_DEPTH:
            self.fail(path, f"nested more than {MAX_DEPTH} levels deep")
        if not obj:
            self.fail(path, "empty objects are not allowed")
        fields: list[tuple[str, _Leaf | _Node]] = []
        ors: list[tuple[_Node, ...]] = []
        for key, value in obj.items():
            here = [*path, key]
            if key == "$or":
                ors.append(self.or_group(value, here, top))
                continue
            if top and key not in KINESIS_FIELDS:
                self.fail(here, f"unknown field; a Kinesis pattern may name only {', '.join(sorted(KINESIS_FIELDS))}")
            if in_or and key in _OPERATORS:
                self.fail(here, f'"{key}" is an operator and cannot be a field name inside "$or"')
            if isinstance(value, list):
                fields.append((key, self.leaf(value, here)))
            elif isinstance(value, dict):
                if top and key != "data":
                    self.fail(here, "a metadata field takes an array of values, not an object")
                fields.append((key, self.node(value, here, False, in_or)))
            else:
                self.fail(here, f"values must be in arrays, e.g. [{json.dumps(value)}], not {_kind(value)}")
        # Metadata first: a pattern that fails on it never pays for parsing the data.
        fields.sort(key=lambda kv: kv[0] == "data")
        return _Node(tuple(fields), tuple(ors))

    def or_group(self, value: object, path: list[str], top: bool) -> tuple[_Node, ...]:
        if not isinstance(value, list) or len(value) < 2 or not all(isinstance(b, dict) for b in value):
            self.fail(path, "must be an array of at least 2 objects")
        return tuple(self.node(b, [*path[:-1], f"$or[{i}]"], top, True) for i, b in enumerate(value))

    def leaf(self, values: list[Any], path: list[str]) -> _Leaf:
        if not values:
            self.fail(path, "empty arrays are not allowed")
        strings: set[str] = set()
        numbers: set[str] = set()
        consts: set[object] = set()
        tests: list[_Test] = []
        exists: set[bool] = set()
        for v in values:
            if isinstance(v, str):
                strings.add(v)
            elif v is None or isinstance(v, bool):
                consts.add(v)
            elif isinstance(v, int | float):
                numbers.add(_number_text(v))
                self.raw_numbers = True
            elif isinstance(v, dict):
                if len(v) != 1:
                    self.fail(path, f"an operator object has exactly one key, got {len(v)}")
                ((op, arg),) = v.items()
                if op == "exists":
                    if not isinstance(arg, bool):
                        self.fail(path, f"exists must be true or false, not {_kind(arg)}")
                    exists.add(arg)
                else:
                    tests.append(self.operator(op, arg, path))
            else:
                self.fail(
                    path,
                    f"a match value must be a string, number, true, false, null or an operator object, not {_kind(v)}",
                )
        if strings or numbers or consts:
            tests.insert(0, _exact(frozenset(strings), frozenset(numbers), frozenset(consts)))
        return _Leaf(tuple(tests), True in exists, False in exists)

    def string(self, op: str, arg: object, path: list[str]) -> str:
        if not isinstance(arg, str):
            self.fail(path, f"{op} takes a string, not {_kind(arg)}")
        return arg

    def operator(self, op: str, arg: object, path: list[str]) -> _Test:
        if op in ("prefix", "suffix"):
            make = _prefix if op == "prefix" else _suffix
            if isinstance(arg, dict) and list(arg) == ["equals-ignore-case"]:
                return make(self.string(f"{op} equals-ignore-case", arg["equals-ignore-case"], path), True)
            if not isinstance(arg, str):
                self.fail(path, f'{op} takes a string or {{"equals-ignore-case": string}}, not {_kind(arg)}')
            return make(arg, False)
        if op == "equals-ignore-case":
            return _equals_ignore_case([self.string(op, arg, path)])
        if op == "wildcard":
            return _glob(self.wildcard(arg, path))
        if op == "numeric":
            return self.numeric(arg, path)
        if op == "cidr":
            try:
                return _cidr(ipaddress.ip_network(self.string(op, arg, path), strict=False))
            except ValueError as e:
                self.fail(path, f"cidr: {e}")
        if op == "anything-but":
            return self.anything_but(arg, path)
        self.fail(path, f"unknown operator {op!r}; expected one of {', '.join(sorted(_OPERATORS))}")

    def wildcard(self, arg: object, path: list[str]) -> tuple[str, ...]:
        text = self.string("wildcard", arg, path)
        parts: list[str] = []
        cur: list[str] = []
        i = 0
        while i < len(text):
            c = text[i]
            if c == "*":
                if text.startswith("**", i):
                    self.fail(path, f"wildcard: consecutive wildcard characters at position {i}")
                parts.append("".join(cur))
                cur = []
            elif c == "\\":
                if i + 1 >= len(text) or text[i + 1] not in "*\\":
                    self.fail(path, f"wildcard: invalid escape at position {i}; only \\* and \\\\ are allowed")
                i += 1
                cur.append(text[i])
            else:
                cur.append(c)
            i += 1
        parts.append("".join(cur))
        return tuple(parts)

    def numeric(self, arg: object, path: list[str]) -> _Test:
        if not isinstance(arg, list) or not arg:
            self.fail(path, 'numeric takes a non-empty array such as [">", 0, "<=", 5]')
        terms: list[tuple[str, float]] = []
        for i in range(0, len(arg), 2):
            op = arg[i]
            if not isinstance(op, str) or op not in ("=", "<", "<=", ">", ">="):
                self.fail(path, f"numeric: unknown operator {json.dumps(op)}; expected =, <, <=, > or >=")
            if i + 1 >= len(arg) or not _is_number(arg[i + 1]):
                self.fail(path, f"numeric: the value of {op} must be a number")
            try:
                value = float(arg[i + 1])
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                self.fail(path, f"numeric: the value of {op} must be finite")
            terms.append((op, value))
        ops = [t[0] for t in terms]
        if ops == ["="]:
            return _numeric(terms[0][1], False, terms[0][1], False)
        if len(terms) == 1:
            ((op, v),) = terms
            return _numeric(v, op == ">", None, False) if op[0] == ">" else _numeric(None, False, v, op == "<")
        if len(terms) != 2 or ops[0][0] != ">" or ops[1][0] != "<":
            self.fail(path, "numeric: use one comparison, or a lower bound (> or >=) then an upper bound (< or <=)")
        (lo_op, lo), (hi_op, hi) = terms
        if lo >= hi:
            self.fail(path, f"numeric: the lower bound {lo:g} must be less than the upper bound {hi:g}")
        return _numeric(lo, lo_op == ">", hi, hi_op == "<")

    def anything_but(self, arg: object, path: list[str]) -> _Test:
        if isinstance(arg, dict):
            if len(arg) != 1:
                self.fail(path, f"anything-but takes an object with exactly one key, got {len(arg)}")
            ((op, inner),) = arg.items()
            if op in ("prefix", "suffix"):
                text = self.string(f"anything-but {op}", inner, path)
                if not text:
                    self.fail(path, f"anything-but {op} must not be empty")
                return _negate((_prefix if op == "prefix" else _suffix)(text, False))
            if op in ("equals-ignore-case", "wildcard"):
                items = inner if isinstance(inner, list) else [inner]
                if not items:
                    self.fail(path, f"anything-but {op}: empty arrays are not allowed")
                texts = [self.string(f"anything-but {op}", x, path) for x in items]
                if op == "equals-ignore-case":
                    return _negate(_equals_ignore_case(texts))
                return _negate(_any_of([_glob(self.wildcard(t, path)) for t in texts]))
            self.fail(
                path,
                f"anything-but: unsupported operator {op!r}; expected prefix, suffix, equals-ignore-case or wildcard",
            )
        items = arg if isinstance(arg, list) else [arg]
        if not items:
            self.fail(path, "anything-but: empty arrays are not allowed")
        if all(isinstance(x, str) for x in items):
            return _anything_but_values(frozenset(items), frozenset())
        if all(_is_number(x) for x in items):
            return _anything_but_values(frozenset(), frozenset(items))
        self.fail(path, "anything-but takes a string, a number, or an array of only strings or only numbers")


def _compile(number: int, text: object) -> tuple[_Node, bool]:
    if not isinstance(text, str):
        raise FilterError(f"Filter pattern {number} must be a string, not {type(text).__name__}")
    if len(text) > MAX_PATTERN_CHARS:
        raise FilterError(f"Filter pattern {number} is {len(text)} characters long; the limit is {MAX_PATTERN_CHARS}")
    try:
        doc = json.loads(text, parse_float=_RawFloat, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise FilterError(f"Filter pattern {number} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise FilterError(f"Filter pattern {number} must be a JSON object, not {_kind(doc)}")
    compiler = _Compiler(number)
    return compiler.node(doc, [], True, False), compiler.raw_numbers


class RecordFilter:
    """Compiled FilterCriteria for one mapping: build once, then ask ``matches`` for every polled record."""

    __slots__ = ("_nodes", "_raw_numbers")

    def __init__(self, patterns: list[str]) -> None:
        if len(patterns) > MAX_PATTERNS:
            raise FilterError(f"at most {MAX_PATTERNS} filter patterns are allowed, got {len(patterns)}")
        compiled = [_compile(i, p) for i, p in enumerate(patterns, 1)]
        self._nodes = tuple(node for node, _ in compiled)
        self._raw_numbers = any(raw for _, raw in compiled)

    @property
    def active(self) -> bool:
        """False when there are no patterns: every record is kept."""
        return bool(self._nodes)

    def matches(self, partition_key: str, sequence_number: str, arrival_ms: int, data: bytes) -> bool:
        """True when the record satisfies any pattern (always, when there are none)."""
        if not self._nodes:
            return True
        view = _RecordView(partition_key, sequence_number, arrival_ms, data, self._raw_numbers)
        return any(_match_fields(node, view) for node in self._nodes)
