"""Changes to a stream's metadata, all or nothing (EngineBase._change).

A control-plane action, a reshard carried out at a tick and retention expiring a closed shard all change a
``StreamState`` and save it. The change is made in memory inside ``stream_change``, which saves it on leaving; if
the change or the save raises, the stream is put back exactly as it was and the error goes on, so the caller is
told of a failure that nothing shows, now or after a restart.

A change to the shard map touches files, which follow the metadata in this order:

1. added shards' logs are opened by the change itself (they take no put until the new map is saved);
2. before the save, the logs of the shards it closes get their staged records written and fsynced: journal replay
   takes a closed shard's log to hold every record it was given (storage/journal_replay.py);
3. the metadata is saved (one atomic write): the change has happened;
4. the closed shards' logs are sealed and their waiting readers told, the expired shards' files removed, and puts
   routed to the open shards.

A failure up to 3 closes and removes the added shards' logs. A crash before 3 leaves directories of added shards
that no metadata names: nothing was routed to them, and the next attempt opens them again. After 3 the metadata is
the truth: a failure in 4 is logged, and the next open seals closed shards' logs and removes expired shards' files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .streams import ShardState, StreamState

if TYPE_CHECKING:
    from ._base import EngineBase

__all__ = ["remove_expired", "stream_change"]

log = logging.getLogger("shardline.engine")


@contextmanager
def stream_change(engine: EngineBase, st: StreamState) -> Iterator[None]:
    """Around a change to ``st`` (module docstring): save it on leaving, or undo it if anything raises."""
    before = st.snapshot()
    count = len(st.shards)
    opened = [sh for sh in st.shards if sh.is_open]
    live = [sh for sh in st.shards if not sh.expired]
    reports = len(engine.recovery_reports)
    closing: list[ShardState] = []
    try:
        yield
        closing = [sh for sh in opened if not sh.is_open]
        with engine._refuse_when_full():
            for sh in closing:
                _flush(sh)
        engine._save(st)
    except BaseException:
        _drop_added_shards(engine, st, count)
        st.restore(before)
        st.rebuild_router()
        del engine.recovery_reports[reports:]
        raise
    added = st.shards[count:]
    _seal_closed(st, closing + [sh for sh in added if not sh.is_open])
    for sh in live:
        if sh.expired:
            _close_log(st, sh, "closing its expired log")
            remove_expired(engine, st, sh)
    if added or closing:
        st.rebuild_router()


def remove_expired(engine: EngineBase, st: StreamState, sh: ShardState) -> None:
    """Remove an expired shard's files: once the metadata that expires it is saved, and at open (what a crash or a
    failure left)."""
    try:
        engine.catalog.delete_shard(st.stream_id, sh.index)
    except OSError as exc:
        log.error("stream %s %s: expired, but its files cannot be removed yet: %s", st.name, sh.shard_id, exc)


def _flush(sh: ShardState) -> None:
    """Write the staged records of a shard about to be closed to its segments, fsynced and visible."""
    lg = sh.log
    if lg is None or lg.sealed:
        return
    lg.materialize()
    lg.sync()
    lg.mark_synced(lg.next_offset)


def _seal_closed(st: StreamState, closed: list[ShardState]) -> None:
    for sh in closed:
        lg = sh.log
        if lg is not None and not lg.sealed:
            try:
                lg.seal()
            except OSError as exc:
                log.error("stream %s %s: closed, but its log cannot be sealed yet: %s", st.name, sh.shard_id, exc)
        event = st.signals.get(sh.index)
        if event is not None:
            event.set()  # readers waiting at the end learn that the shard closed


def _close_log(st: StreamState, sh: ShardState, doing: str) -> None:
    lg, sh.log = sh.log, None
    if lg is not None:
        try:
            lg.close()
        except OSError as exc:
            log.warning("stream %s %s: %s: %s", st.name, sh.shard_id, doing, exc)


def _drop_added_shards(engine: EngineBase, st: StreamState, count: int) -> None:
    """Undo the logs of the shards a failed change added past the first ``count``: close them, free their table
    slots (a log whose open failed half way holds one) and remove their files, so that the next attempt starts
    clean."""
    for sh in st.shards[count:]:
        _close_log(st, sh, "closing an unused log")
    for slot, held in enumerate(st.table.logs[count:], count):
        if held is not None:
            st.table.detach(slot, held)
    for sh in st.shards[count:]:
        try:
            engine.catalog.delete_shard(st.stream_id, sh.index)
        except OSError as exc:
            log.warning("stream %s %s: removing an unused log: %s", st.name, sh.shard_id, exc)
