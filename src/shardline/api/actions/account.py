"""Account settings and resource policies (engine/account.py keeps them)."""

from __future__ import annotations

from typing import Any

from ...engine import Engine
from ..shapes import Timestamp
from ._registry import Params, Response, action


def _commitment_out(c: dict[str, Any]) -> Response:
    out: Response = {"Status": c["Status"]}
    for key in ("StartedAt", "EarliestAllowedEndAt", "EndedAt"):
        if key in c:
            out[key] = Timestamp(int(c[key]))
    return out


@action("DescribeAccountSettings")
async def describe_account_settings(engine: Engine, p: Params) -> Response:
    return {"MinimumThroughputBillingCommitment": _commitment_out(await engine.describe_account_settings())}


@action("UpdateAccountSettings")
async def update_account_settings(engine: Engine, p: Params) -> Response:
    status = p["MinimumThroughputBillingCommitment"]["Status"]
    return {"MinimumThroughputBillingCommitment": _commitment_out(await engine.update_account_settings(status))}


@action("PutResourcePolicy")
async def put_resource_policy(engine: Engine, p: Params) -> Response:
    await engine.put_resource_policy(p["ResourceARN"], p["Policy"])
    return {}


@action("GetResourcePolicy")
async def get_resource_policy(engine: Engine, p: Params) -> Response:
    return {"Policy": await engine.get_resource_policy(p["ResourceARN"])}


@action("DeleteResourcePolicy")
async def delete_resource_policy(engine: Engine, p: Params) -> Response:
    await engine.delete_resource_policy(p["ResourceARN"])
    return {}
