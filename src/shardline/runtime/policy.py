"""The Lambda error policy (spec §3.6) as pure decisions: which records are too old to invoke, and what happens to a
batch after an invocation that reached the function.

What happens after an invocation, for a batch of ``size`` records that has used ``retries`` retries so far:

| verdict (verdict.py) | bisect on and size > 1 | retries left | next step |
|---|---|---|---|
| success | – | – | settle every record |
| partial | – (never bisected) | yes | retry; the records before the lowest failure settle |
| partial | – (never bisected) | no | discard; the records before the lowest failure settle |
| failure | yes | – | bisect: the larger first half next, then the rest (no retry is charged) |
| failure | no | yes | retry |
| failure | no | no | discard |

"Retries left": MaximumRetryAttempts is -1, or more than ``retries``. A partial response is never bisected: it
already splits the batch at the lowest reported record.

Throttles and service errors never reach the function, so they are not verdicts: the caller backs off and invokes
the same records again, charging nothing. A retried batch is checked for record age before every invocation; the
expired records form a prefix (records are in arrival order) and are discarded with RecordAgeExceeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .mapping import MappingConfig
from .verdict import Verdict

__all__ = ["ErrorPolicy", "Step"]


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with the batch after an invocation.

    ``settled`` leading records are handled in every kind (all of them for "settle"; for "retry" and "discard", the
    records before the lowest failure of a partial response, else none). "retry" invokes the rest again after a
    backoff and charges one retry; "discard" sends the rest to the on-failure destination (RetryAttemptsExhausted);
    "bisect" invokes the first ``split`` records next and the rest after them with a fresh retry count.
    """

    kind: Literal["settle", "retry", "bisect", "discard"]
    settled: int = 0
    split: int = 0


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    max_retry_attempts: int  # -1: retry until the records expire
    bisect: bool  # BisectBatchOnFunctionError
    max_record_age_s: int  # -1: no limit

    @classmethod
    def of(cls, config: MappingConfig) -> ErrorPolicy:
        return cls(config.maximum_retry_attempts, config.bisect_batch_on_function_error, config.maximum_record_age_s)

    def expired(self, arrivals_ms: Iterable[int], now_ms: int) -> int:
        """How many leading records (by arrival time, in order) are past MaximumRecordAgeInSeconds at ``now_ms``."""
        if self.max_record_age_s == -1:
            return 0
        cutoff = now_ms - self.max_record_age_s * 1000
        n = 0
        for arrival in arrivals_ms:
            if arrival > cutoff:
                break
            n += 1
        return n

    def after(self, verdict: Verdict, *, size: int, retries: int) -> Step:
        """The next step for a batch of ``size`` records whose invocation was judged ``verdict``."""
        if verdict.kind == "success":
            return Step("settle", settled=size)
        settled = verdict.first_failed if verdict.kind == "partial" else 0
        if verdict.kind == "failure" and self.bisect and size > 1:
            # The first half is the larger one; splitting does not use up retries (spec §3.6).
            return Step("bisect", split=(size + 1) // 2)
        if self.max_retry_attempts == -1 or retries < self.max_retry_attempts:
            return Step("retry", settled=settled)
        return Step("discard", settled=settled)
