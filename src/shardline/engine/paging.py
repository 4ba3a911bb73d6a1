"""Listing what was created on streams (queues, channels) a page at a time: in creation order, filtered by stream,
with an opaque NextToken that names the last item of the page (its creation time and id)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from ..errors import InvalidArgumentException

__all__ = ["LIST_DEFAULT", "page_of"]

LIST_DEFAULT = 100  # the page size when MaxResults is not given, and the most a page holds

T = TypeVar("T")


def page_of(
    items: Iterable[T],
    key: Callable[[T], tuple[int, str]],
    stream_of: Callable[[T], tuple[str, int]],
    wanted: Sequence[tuple[str, int | None]] | None,
    *,
    max_results: int | None,
    next_token: str | None,
) -> tuple[list[T], str | None]:
    """The page of ``items`` after ``next_token`` in creation order (``key``: creation time in ms, id), and the token
    of the next page (None after the last). With ``wanted`` (stream name, stream creation time in ms or None for any)
    only the items whose stream (``stream_of``: name, creation time in ms) is one of them; creation times match to
    the second, as stream ARNs' timestamps do."""
    listed = sorted(items, key=key)
    if wanted is not None:
        listed = [i for i in listed if _on(stream_of(i), wanted)]
    if next_token is not None:
        try:
            created, ident = base64.urlsafe_b64decode(next_token.encode()).decode().split(":")
            after = (int(created), ident)
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgumentException(f"Invalid NextToken: {next_token}") from None
        listed = [i for i in listed if key(i) > after]
    limit = min(max_results or LIST_DEFAULT, LIST_DEFAULT)
    page = listed[:limit]
    token = None
    if len(listed) > limit:
        created_ms, ident = key(page[-1])
        token = base64.urlsafe_b64encode(f"{created_ms}:{ident}".encode()).decode()
    return page, token


def _on(stream: tuple[str, int], wanted: Sequence[tuple[str, int | None]]) -> bool:
    name, created_ms = stream
    return any(name == n and (ts is None or ts // 1000 == created_ms // 1000) for n, ts in wanted)
