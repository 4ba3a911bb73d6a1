"""What is created on a data stream and named by its own ARN (queues, channels): the lifecycle they share.

Each one is CREATING, then ACTIVE; UpdateX makes it UPDATING and DeleteX DELETING for the delay settings give that
status, after which it is ACTIVE again, or gone. The transitions are applied lazily, when a request looks the item up
or lists its kind. Each kind keeps its own state and files (engine/queues.py, engine/channels.py); this mixin holds
the rules and texts that are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from ..errors import InvalidArgumentException, ResourceInUseException, ResourceNotFoundException
from ..models import StreamMode
from ._base import EngineBase
from .paging import page_of
from .streams import StreamState

__all__ = ["Attached", "Attachments"]

# The texts are shardline's, worded as AWS words them for streams and consumers.
ON_DEMAND_ONLY = (
    "{kinds} are supported only on data streams in on-demand capacity mode; stream {stream} under account {account} "
    "is PROVISIONED."
)


class Attached(Protocol):
    """The state every kind keeps of one item, under these names."""

    name: str
    status: str  # CREATING | ACTIVE | UPDATING | DELETING
    status_until_ms: int  # when a transitional status ends
    created_ms: int
    stream_name: str
    stream_id: str  # the stream incarnation it was created on
    stream_created_ms: int

    @property
    def ident(self) -> str:
        """The id in its ARN (32 hex digits)."""
        ...


A = TypeVar("A", bound=Attached)


class Attachments(EngineBase):
    def _attached_arn(self, kind: str, ident: str) -> str:
        """``kind``: the ARN's resource type (``queue``, ``channel``)."""
        return f"arn:aws:kinesis:{self.settings.region}:{self.account}:{kind}/{ident}"

    def _new_attached(
        self, kind: str, items: dict[str, A], name: str, stream_arn: str, tags: dict[str, str] | None
    ) -> StreamState:
        """The stream a new item named ``name`` goes on, once the checks every kind makes pass."""
        if tags:
            self._validate_tags(name, {}, tags)
        st = self._stream(None, stream_arn)
        self._require_shards(st)
        if st.mode is not StreamMode.ON_DEMAND:
            raise InvalidArgumentException(self._fmt(ON_DEMAND_ONLY, st.name, kinds=f"{kind.capitalize()}s"))
        if any(a.name == name for a in items.values()):
            raise ResourceInUseException(f"{kind.capitalize()} {name} under account {self.account} already exists.")
        return st

    def _find_attached(self, kind: str, items: dict[str, A], arn: str, tick: Callable[[A], None]) -> A:
        """The item ``arn`` names, its due transition applied (``tick``); ResourceNotFoundException when there is
        none, or it is gone."""
        prefix = self._attached_arn(kind, "")
        ident = arn[len(prefix) :] if arn.startswith(prefix) else ""
        a = items.get(ident)
        if a is not None:
            tick(a)
        if a is None or ident not in items:
            raise ResourceNotFoundException(f"{kind.capitalize()} {arn} not found.")
        return a

    def _list_attached(
        self,
        items: dict[str, A],
        tick: Callable[[A], None],
        stream_filter: Sequence[tuple[str, int | None]] | None,
        max_results: int | None,
        next_token: str | None,
    ) -> tuple[list[A], str | None]:
        """A page of the items in creation order, due transitions applied, and the token of the next page."""
        for a in list(items.values()):
            tick(a)
        wanted = None if stream_filter is None else [(self._name_from_arn(arn), ts) for arn, ts in stream_filter]
        return page_of(items.values(), _key, _stream_of, wanted, max_results=max_results, next_token=next_token)

    def _transition_due(self, a: Attached) -> bool:
        """Whether ``a``'s transitional status has ended: the caller makes it ACTIVE, or removes it if DELETING."""
        return a.status != "ACTIVE" and self.clock.now_ms() >= a.status_until_ms

    def _enter_status(self, a: Attached, status: str) -> None:
        """Enter a transitional status; it ends after its delay (settings)."""
        a.status = status
        a.status_until_ms = self.clock.now_ms() + int(self._delay_s(status) * 1000)

    def _require_attached_active(self, kind: str, a: Attached) -> None:
        """Refuse an update unless ``a`` is ACTIVE."""
        if a.status != "ACTIVE":
            raise ResourceInUseException(
                f"{kind.capitalize()} {a.name} under account {self.account} is not ACTIVE: {a.status}."
            )

    def _delete_attached(self, a: Attached) -> bool:
        """Start deleting ``a``; False when it is being deleted already."""
        if a.status == "DELETING":
            return False
        self._enter_status(a, "DELETING")
        return True

    @staticmethod
    def _on_stream(items: dict[str, A], st: StreamState) -> bool:
        """Whether the stream has an item that is not being deleted."""
        return any(a.stream_id == st.stream_id and a.status != "DELETING" for a in items.values())


def _key(a: Attached) -> tuple[int, str]:
    return a.created_ms, a.ident


def _stream_of(a: Attached) -> tuple[str, int]:
    return a.stream_name, a.stream_created_ms
