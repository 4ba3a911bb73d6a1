"""The error policy's decisions (spec §3.6), row by row: the table in runtime/policy.py's docstring."""

from __future__ import annotations

import pytest

from shardline.runtime.policy import ErrorPolicy, Step
from shardline.runtime.verdict import Verdict

SUCCESS = Verdict("success")
ERROR = Verdict("failure", function_error="Unhandled")
INVALID = Verdict("failure", reason="response is not JSON")  # an invalid response: a failure without functionError


def partial(first_failed: int) -> Verdict:
    return Verdict("partial", first_failed=first_failed)


# (verdict, batch size, retries used, (MaximumRetryAttempts, BisectBatchOnFunctionError)) -> step
AFTER = [
    pytest.param(SUCCESS, 5, 0, (0, False), Step("settle", settled=5), id="success-settles-all"),
    pytest.param(SUCCESS, 5, 3, (3, True), Step("settle", settled=5), id="success-after-retries-settles-all"),
    pytest.param(ERROR, 1, 0, (2, False), Step("retry"), id="error-retried-while-budget-left"),
    pytest.param(ERROR, 1, 1, (2, False), Step("retry"), id="error-second-retry"),
    pytest.param(ERROR, 1, 2, (2, False), Step("discard"), id="error-discarded-after-N-retries"),
    pytest.param(ERROR, 4, 0, (0, False), Step("discard"), id="error-no-retries-discarded-at-once"),
    pytest.param(ERROR, 4, 10**6, (-1, False), Step("retry"), id="error-retried-forever-with-minus-one"),
    pytest.param(ERROR, 5, 0, (0, True), Step("bisect", split=3), id="error-bisected-larger-half-first"),
    pytest.param(ERROR, 2, 5, (0, True), Step("bisect", split=1), id="bisect-charges-no-retry"),
    pytest.param(ERROR, 1, 0, (1, True), Step("retry"), id="single-record-is-retried-not-bisected"),
    pytest.param(ERROR, 1, 1, (1, True), Step("discard"), id="single-record-discarded-after-its-retries"),
    pytest.param(INVALID, 4, 0, (1, True), Step("bisect", split=2), id="invalid-response-is-bisected"),
    pytest.param(INVALID, 4, 0, (1, False), Step("retry"), id="invalid-response-is-retried"),
    pytest.param(partial(2), 5, 0, (1, False), Step("retry", settled=2), id="partial-settles-prefix-and-retries"),
    pytest.param(partial(2), 5, 1, (1, False), Step("discard", settled=2), id="partial-tail-discarded-when-exhausted"),
    pytest.param(partial(2), 5, 0, (1, True), Step("retry", settled=2), id="partial-is-never-bisected"),
    pytest.param(partial(0), 3, 0, (-1, True), Step("retry"), id="partial-at-first-record-settles-nothing"),
    pytest.param(Verdict("failure"), 0, 0, (1, True), Step("retry"), id="window-close-retried"),
    pytest.param(Verdict("failure"), 0, 1, (1, True), Step("discard"), id="window-close-discarded"),
    pytest.param(SUCCESS, 0, 0, (0, False), Step("settle"), id="window-close-succeeds"),
]


@pytest.mark.parametrize(("verdict", "size", "retries", "config", "step"), AFTER)
def test_after_an_invocation(verdict: Verdict, size: int, retries: int, config: tuple[int, bool], step: Step) -> None:
    max_retries, bisect = config
    policy = ErrorPolicy(max_retry_attempts=max_retries, bisect=bisect, max_record_age_s=-1)
    assert policy.after(verdict, size=size, retries=retries) == step


NOW = 1_000_000

# (arrival times, MaximumRecordAgeInSeconds) -> leading records past the age
EXPIRED = [
    pytest.param([NOW - 10**9], -1, 0, id="no-limit"),
    pytest.param([], 60, 0, id="empty"),
    pytest.param([NOW - 60_000, NOW - 59_999], 60, 1, id="exactly-the-age-is-expired"),
    pytest.param([NOW - 90_000, NOW - 70_000, NOW - 1_000], 60, 2, id="expired-prefix"),
    pytest.param([NOW - 1_000, NOW - 90_000], 60, 0, id="only-a-prefix-counts"),
    pytest.param([NOW - 90_000] * 3, 60, 3, id="all-expired"),
]


@pytest.mark.parametrize(("arrivals", "max_age_s", "expired"), EXPIRED)
def test_record_age(arrivals: list[int], max_age_s: int, expired: int) -> None:
    policy = ErrorPolicy(max_retry_attempts=-1, bisect=False, max_record_age_s=max_age_s)
    assert policy.expired(arrivals, NOW) == expired
