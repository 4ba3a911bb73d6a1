"""Judging an invocation's result: success, partial failure (ReportBatchItemFailures) or failure.

The rules, from AWS's documentation and observed behaviour:

| function returned | verdict |
|---|---|
| an error (exception, timeout, crash) | failure (a function error: retried, bisected) |
| null, "", [], {} | success |
| {"batchItemFailures": []} or null | success |
| failures naming sequence numbers of the batch | partial: rewind to the lowest one (integer compare) |
| an item without itemIdentifier, with "" or null, or naming a record not in the batch | failure |
| not JSON, or another JSON type | failure |

Without ReportBatchItemFailures the body is ignored. With a tumbling window the body must be an object with
``state``; without it the invocation failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ..models import Record
from .functions import InvocationResult

__all__ = ["Verdict", "judge"]


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Literal["success", "partial", "failure"]
    first_failed: int = 0  # index into the batch, for "partial"
    function_error: str | None = None  # "Unhandled" when the function itself failed
    state: Any = None  # the tumbling window state the function returned
    reason: str = ""


def judge(result: InvocationResult, batch: list[Record], *, rbif: bool, window: bool) -> Verdict:
    if not result.ok:
        return Verdict("failure", function_error=result.function_error, reason="function error")
    if not rbif and not window:
        return Verdict("success")
    try:
        body = orjson.loads(result.payload) if result.payload else None
    except orjson.JSONDecodeError:
        return Verdict("failure", reason="response is not JSON")
    state = None
    if window:
        if not isinstance(body, dict) or "state" not in body:
            return Verdict("failure", reason="a tumbling-window function must return an object with 'state'")
        state = body["state"]
    if not rbif:
        return Verdict("success", state=state)
    if body is None or body in ("", [], {}):
        return Verdict("success", state=state)
    if not isinstance(body, dict):
        return Verdict("failure", reason="response is not an object")
    failures = body.get("batchItemFailures")
    if failures is None or failures == []:
        return Verdict("success", state=state)
    if not isinstance(failures, list):
        return Verdict("failure", reason="batchItemFailures is not a list")
    index = {r.sequence_number: i for i, r in enumerate(batch)}
    lowest: int | None = None
    for item in failures:
        if not isinstance(item, dict) or "itemIdentifier" not in item:
            return Verdict("failure", reason="a batchItemFailures entry has no itemIdentifier")
        ident = item["itemIdentifier"]
        if not isinstance(ident, str) or not ident or ident not in index:
            return Verdict("failure", reason=f"itemIdentifier {ident!r} is not a sequence number of the batch")
        # Positions follow sequence order within a batch, so the lowest position is the lowest number.
        pos = index[ident]
        lowest = pos if lowest is None else min(lowest, pos)
    assert lowest is not None
    return Verdict("partial", first_failed=lowest, state=state)
