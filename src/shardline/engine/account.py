"""Account settings and resource policies: what AWS stores for an account or a resource with no local effect here,
kept durably and answered as AWS answers.

- The minimum throughput billing commitment (DescribeAccountSettings, UpdateAccountSettings): enabling it starts a
  commitment of at least 24 hours; disabling it before then schedules its end at that time (status
  ``ENABLED_UNTIL_EARLIEST_ALLOWED_END``), and enabling it again cancels the scheduled end.
- Resource policies (Put/Get/DeleteResourcePolicy) on a stream or a registered consumer. A policy belongs to the
  resource that existed when it was attached: it goes with a deleted stream or consumer, and a resource re-created
  under the same ARN starts with none, as on AWS.

Both live in ``account.json`` in the data directory (sealed with a checksum and replaced atomically, as stream
metadata is), read on first use.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

from .._fsutil import atomic_write
from ..errors import InvalidArgumentException, ResourceNotFoundException
from ..storage.catalog import read_sealed, seal
from ._base import EngineBase

if TYPE_CHECKING:
    from ..models import ConsumerRef
    from .streams import ConsumerState, StreamState

__all__ = ["COMMITMENT_MIN_MS", "Account"]

COMMITMENT_MIN_MS = 24 * 3600 * 1000
_FILE = "account.json"
_EMPTY_POLICY = "{}"


class Account(EngineBase):
    _account_state: dict[str, Any] | None = None

    # ----------------------------------------------------------------- the billing commitment
    async def describe_account_settings(self) -> dict[str, Any]:
        """``{"Status": ..., "StartedAt": ms, "EarliestAllowedEndAt": ms, "EndedAt": ms}`` (the times it has)."""
        return dict(self._commitment())

    async def update_account_settings(self, status: str) -> dict[str, Any]:
        if status not in ("ENABLED", "DISABLED"):
            raise InvalidArgumentException(f"Invalid MinimumThroughputBillingCommitment Status: {status}")
        now = self.clock.now_ms()
        current = self._commitment()
        state = current["Status"]
        if status == "ENABLED":
            if state == "ENABLED":
                return dict(current)
            if state == "ENABLED_UNTIL_EARLIEST_ALLOWED_END":  # the scheduled end is cancelled
                new = {k: v for k, v in current.items() if k != "EndedAt"} | {"Status": "ENABLED"}
            else:
                new = {"Status": "ENABLED", "StartedAt": now, "EarliestAllowedEndAt": now + COMMITMENT_MIN_MS}
        elif state == "ENABLED":
            earliest = int(current["EarliestAllowedEndAt"])
            if now < earliest:
                new = current | {"Status": "ENABLED_UNTIL_EARLIEST_ALLOWED_END", "EndedAt": earliest}
            else:
                new = current | {"Status": "DISABLED", "EndedAt": now}
        else:
            return dict(current)
        with self._account_change() as account:
            account["commitment"] = new
        return dict(new)

    def _commitment(self) -> dict[str, Any]:
        c: dict[str, Any] = self._account().get("commitment") or {"Status": "DISABLED"}
        if c["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END" and self.clock.now_ms() >= int(c["EndedAt"]):
            c = c | {"Status": "DISABLED"}  # (the scheduled end has come)
        return c

    # ----------------------------------------------------------------- resource policies
    async def put_resource_policy(self, resource_arn: str, policy: str) -> None:
        owner = self._policy_owner(resource_arn)
        try:
            parsed = orjson.loads(policy)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidArgumentException("Policy must be a JSON object.")
        with self._account_change() as account:
            account.setdefault("policies", {})[resource_arn] = {"policy": policy, "owner": owner}

    async def get_resource_policy(self, resource_arn: str) -> str:
        """The policy attached to the stream or consumer, or ``{}`` when it has none."""
        owner = self._policy_owner(resource_arn)
        entry = self._account().get("policies", {}).get(resource_arn)
        if entry is None or entry["owner"] != owner:
            return _EMPTY_POLICY
        return str(entry["policy"])

    async def delete_resource_policy(self, resource_arn: str) -> None:
        owner = self._policy_owner(resource_arn)
        entry = self._account().get("policies", {}).get(resource_arn)
        if entry is None or entry["owner"] != owner:
            raise ResourceNotFoundException(f"No resource policy found for resource: {resource_arn}")
        with self._account_change() as account:
            del account["policies"][resource_arn]

    def _policy_owner(self, resource_arn: str) -> str:
        """Which incarnation of the resource the ARN names now (ResourceNotFoundException when none): its stream's
        id, and for a consumer its creation time too."""
        if "/consumer/" in resource_arn:
            st, c = self._find_consumer({"consumer_arn": resource_arn})
            return f"{st.stream_id}/{c.name}/{c.created_ms}"
        st = self._stream(None, resource_arn)
        return st.stream_id

    if TYPE_CHECKING:  # (Admin's, which Engine mixes in beside this class)

        def _find_consumer(self, ref: ConsumerRef) -> tuple[StreamState, ConsumerState]: ...

    # ----------------------------------------------------------------- persistence
    def _account(self) -> dict[str, Any]:
        if self._account_state is None:
            path = self.catalog.root / _FILE
            self._account_state = read_sealed(path.read_bytes()) if path.exists() else {}
        return self._account_state

    @contextmanager
    def _account_change(self) -> Iterator[dict[str, Any]]:
        """A change to the account state, all or nothing: the body changes a copy, which is saved and then takes
        the state's place. If the body or the save raises, the state stays as it was."""
        new = copy.deepcopy(self._account())
        yield new
        # Forget the policies of resources that are gone, so that the file holds no more than the live resources.
        policies = new.get("policies", {})
        live = {st.stream_id for st in self.streams.values()}
        for arn in [a for a, e in policies.items() if str(e["owner"]).split("/", 1)[0] not in live]:
            del policies[arn]
        with self._refuse_when_full():
            atomic_write(self.catalog.root / _FILE, seal(new))
        self._account_state = new
