"""Account settings and resource policies: kept across restarts, answered as AWS answers (engine/account.py)."""

from __future__ import annotations

import pytest

from shardline import Engine, ManualClock
from shardline.engine.account import COMMITMENT_MIN_MS
from shardline.errors import InvalidArgumentException, ResourceNotFoundException

from ._kit import Kit

POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kinesis:*"}]}'


async def test_the_billing_commitment_lasts_at_least_a_day(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    assert await engine.describe_account_settings() == {"Status": "DISABLED"}
    start = clock.now_ms()
    enabled = await engine.update_account_settings("ENABLED")
    assert enabled == {"Status": "ENABLED", "StartedAt": start, "EarliestAllowedEndAt": start + COMMITMENT_MIN_MS}
    assert await engine.update_account_settings("ENABLED") == enabled  # (already on)
    clock.advance(3600)
    ending = await engine.update_account_settings("DISABLED")  # too early: it ends when it may
    assert ending == enabled | {"Status": "ENABLED_UNTIL_EARLIEST_ALLOWED_END", "EndedAt": start + COMMITMENT_MIN_MS}
    assert await engine.update_account_settings("ENABLED") == enabled  # the scheduled end is cancelled
    await engine.update_account_settings("DISABLED")
    engine = await kit.reopen(engine)
    assert (await engine.describe_account_settings())["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END"
    clock.advance(ms=COMMITMENT_MIN_MS)
    assert (await engine.describe_account_settings())["Status"] == "DISABLED"
    restarted = await engine.update_account_settings("ENABLED")
    assert restarted["StartedAt"] == clock.now_ms()
    clock.advance(ms=COMMITMENT_MIN_MS + 1)
    assert await engine.update_account_settings("DISABLED") == restarted | {
        "Status": "DISABLED",
        "EndedAt": clock.now_ms(),
    }
    with pytest.raises(InvalidArgumentException):
        await engine.update_account_settings("PAUSED")


async def test_a_policy_is_kept_with_its_stream_or_consumer(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1)
    arn = engine.stream_arn("s")
    assert await engine.get_resource_policy(arn) == "{}"
    with pytest.raises(ResourceNotFoundException):
        await engine.delete_resource_policy(arn)
    await engine.put_resource_policy(arn, POLICY)
    consumer = await engine.register_stream_consumer(arn, "c")
    await engine.put_resource_policy(consumer.consumer_arn, "{}")
    engine = await kit.reopen(engine)
    assert await engine.get_resource_policy(arn) == POLICY
    assert await engine.get_resource_policy(consumer.consumer_arn) == "{}"
    await engine.delete_resource_policy(arn)
    assert await engine.get_resource_policy(arn) == "{}"
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.put_resource_policy(arn, "[1]")
    assert exc.value.message == "Policy must be a JSON object."


async def test_a_policy_goes_with_a_deleted_stream(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1)
    arn = engine.stream_arn("s")
    await engine.put_resource_policy(arn, POLICY)
    await engine.delete_stream("s")
    await _settle(engine, clock)
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.get_resource_policy(arn)
    assert exc.value.message == "Stream s under account 000000000000 not found."
    await engine.create_stream("s", 1)  # the same ARN, another stream
    await _settle(engine, clock)
    assert await engine.get_resource_policy(arn) == "{}"
    with pytest.raises(ResourceNotFoundException):
        await engine.get_resource_policy(engine.stream_arn("s") + "/consumer/none:1")


async def _settle(engine: Engine, clock: ManualClock) -> None:
    """Past any CREATING/DELETING state."""
    clock.advance(60)
    await engine.list_streams()
