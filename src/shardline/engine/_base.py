"""State and helpers shared by the engine's action families (the Engine class mixes them together)."""

from __future__ import annotations

import errno
import logging
import unicodedata
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import NoReturn

from ..clock import Clock
from ..errors import (
    InvalidArgumentException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
    ServiceUnavailable,
    ValidationException,
)
from ..models import ShardIteratorType, StreamMode, StreamStatus
from ..settings import Settings
from ..storage import unwritten
from ..storage.catalog import Catalog, DamagedStream
from ..storage.journal import Journal
from ..storage.log import FileCache, RecoveryReport, ShardLog
from ..storage.sync import GroupCommitter
from . import messages as m
from . import sequence
from .changes import stream_change
from .iterators import IteratorCodec
from .limits import TokenBucket
from .streams import ShardState, StreamState, shard_id_of

log = logging.getLogger("shardline.engine")

_DAY_MS = 24 * 3600 * 1000
MAX_TAGS = 50
_TAG_SYMBOLS = frozenset("_./=+-@%")


def valid_tag_text(text: str) -> bool:
    """A tag key or value in the characters Kinesis's API reference allows (its Tag data type): Unicode letters,
    digits, white space (Unicode separators: not tab, newline or any other control character) and ``_ . / = + - % @``.
    AWS quirk: ``:``, allowed by other services' tags, is not among them."""
    return all(c in _TAG_SYMBOLS or unicodedata.category(c)[0] in "LNZ" for c in text)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def parse_shard_id(text: str) -> int | None:
    """AWS accepts any prefix before the first '-' ('shardId-000000000001', 'shard-1', '1')."""
    tail = text.split("-", 1)[1] if "-" in text else text
    if not tail.isdigit() or not tail.isascii():
        return None
    value = int(tail)
    return value if value <= 0x7FFFFFFF else None


class EngineBase:
    settings: Settings
    clock: Clock
    catalog: Catalog
    files: FileCache
    committer: GroupCommitter
    journal: Journal
    iterators: IteratorCodec
    streams: dict[str, StreamState]
    damaged_streams: dict[str, DamagedStream]
    disk_full: bool
    storage_failed: str | None
    _next_transition_ms: int
    _next_yield_ms: float
    _closed: bool
    recovery_reports: list[RecoveryReport]

    # ----------------------------------------------------------------- naming
    @property
    def account(self) -> str:
        return self.settings.account_id

    def stream_arn(self, name: str) -> str:
        return f"arn:aws:kinesis:{self.settings.region}:{self.settings.account_id}:stream/{name}"

    def _fmt(self, template: str, stream: str, **kw: object) -> str:
        return template.format(stream=stream, account=self.account, region=self.settings.region, **kw)

    def _not_found(self, name: str) -> NoReturn:
        raise ResourceNotFoundException(self._fmt(m.STREAM_NOT_FOUND, name))

    # ----------------------------------------------------------------- lookup
    def _name_from_arn(self, arn: str) -> str:
        prefix = f"arn:aws:kinesis:{self.settings.region}:{self.settings.account_id}:stream/"
        if not arn.startswith("arn:aws:kinesis:") or "/" not in arn:
            raise InvalidArgumentException(m.BAD_ARN.format(arn=arn))
        if not arn.startswith(prefix):
            # Another account or region: it cannot be one of ours.
            raise ResourceNotFoundException(
                f"Stream {arn.rsplit('/', 1)[-1]} under account {arn.split(':')[4]} not found."
            )
        return arn[len(prefix) :].split("/", 1)[0]

    def _shard_index(self, stream: str, shard_id: str) -> int:
        """The index ``shard_id`` names, or AWS's ResourceNotFoundException for an id that names none."""
        index = parse_shard_id(shard_id)
        if index is None:
            raise ResourceNotFoundException(self._fmt(m.COULD_NOT_FIND_SHARD, stream, shard=shard_id))
        return index

    def _stream_name(self, stream_name: str | None, stream_arn: str | None) -> str:
        if stream_arn is not None:
            name = self._name_from_arn(stream_arn)
            if stream_name is not None and stream_name != name:
                raise InvalidArgumentException(m.NAME_ARN_MISMATCH.format(name=stream_name, arn=stream_arn))
            return name
        if stream_name is None:
            raise ValidationException(m.NAME_OR_ARN)
        return stream_name

    def _stream(self, stream_name: str | None = None, stream_arn: str | None = None) -> StreamState:
        name = self._stream_name(stream_name, stream_arn)
        self._tick()
        st = self.streams.get(name)
        if st is None:
            self._refuse_damaged(name)
            self._not_found(name)
        return st

    def _refuse_damaged(self, name: str) -> None:
        """Answer a request for a stream whose metadata is damaged with what is wrong (not "not found": the name
        stays taken, and its data kept, until the file is repaired)."""
        for damage in self.damaged_streams.values():
            if damage.name == name:
                path = damage.path.relative_to(self.catalog.root)
                raise ResourceInUseException(self._fmt(m.STREAM_DAMAGED, name, path=path, reason=damage.reason))

    def _writable(self, st: StreamState) -> None:
        # AWS quirk: a put to a stream that is CREATING or DELETING is answered as if the stream did not exist
        # (kinesalite's PutRecord and PutRecords, recorded against AWS, and the ResourceNotFoundException users see
        # right after CreateStream, localstack/localstack#231); UPDATING streams take writes.
        if not self._has_shards(st):
            self._not_found(st.name)

    @staticmethod
    def _has_shards(st: StreamState) -> bool:
        """Whether the stream's shards can be used: not while it is CREATING or DELETING (DescribeStream lists none)."""
        return st.status is StreamStatus.ACTIVE or st.status is StreamStatus.UPDATING

    def _require_shards(self, st: StreamState) -> None:
        """Refuse an action on the shard map of a stream that has none yet (or any more)."""
        # AWS quirk: ListShards on a CREATING stream answers with this text (aws/aws-sdk-java-v2#5949, where a
        # stream just reported ACTIVE by DescribeStream was still CREATING for the next calls).
        if not self._has_shards(st):
            raise ResourceInUseException(self._fmt(m.NOT_WRITABLE, st.name, state=st.status.value))

    def _refuse_queues(self, st: StreamState, what: str) -> None:
        """Refuse ``what`` (a deletion, a switch to PROVISIONED) while the stream has queues (engine/queues.py)."""

    def _require_active(self, st: StreamState) -> None:
        if st.status is not StreamStatus.ACTIVE:
            raise ResourceInUseException(self._fmt(m.NOT_ACTIVE, st.name, state=st.status.value))

    def _start_offset(
        self,
        st: StreamState,
        shard: ShardState,
        kind: ShardIteratorType,
        seq: str | None,
        timestamp_ms: int | None,
        *,
        seq_texts: tuple[str, str, str],
    ) -> int:
        """The offset a starting position names in ``shard`` (GetShardIterator's and SubscribeToShard's): ``seq`` is
        read only by the sequence number types, ``timestamp_ms`` only by AT_TIMESTAMP. ``seq_texts``: the action's
        messages for a sequence number that is missing, is none, or is another stream's (messages.py)."""
        lg = shard.log
        assert lg is not None
        if kind is ShardIteratorType.TRIM_HORIZON:
            return lg.log_start
        if kind is ShardIteratorType.LATEST:
            return lg.visible_offset
        if kind is ShardIteratorType.AT_TIMESTAMP:
            if timestamp_ms is None:
                raise InvalidArgumentException(m.ITER_NO_TIMESTAMP)
            now = self.clock.now_ms()
            if timestamp_ms > now:
                raise InvalidArgumentException(m.ITER_FUTURE_TIMESTAMP.format(ts=timestamp_ms, now=now))
            return unwritten.offset_for_time(lg, timestamp_ms)
        no_seq, bad_seq, other_stream = seq_texts
        if seq is None:
            raise InvalidArgumentException(no_seq.format(type=kind.value))
        decoded = sequence.decode(seq)
        if decoded is None:
            raise InvalidArgumentException(self._fmt(bad_seq, st.name, seq=seq, shard=shard.shard_id))
        if decoded.shard_index != shard.index:
            raise InvalidArgumentException(
                m.ITER_OTHER_SHARD.format(encoded=shard_id_of(decoded.shard_index), shard=shard.shard_id)
            )
        if decoded.stream_tag != st.tag & sequence.TAG_MASK:
            raise InvalidArgumentException(self._fmt(other_stream, st.name, seq=seq, shard=shard.shard_id))
        if kind is ShardIteratorType.AT_SEQUENCE_NUMBER:
            return decoded.offset
        if decoded.offset >= sequence.MAX_OFFSET:
            raise InvalidArgumentException(m.ITER_AFTER_MAX)
        return decoded.offset + 1

    # ----------------------------------------------------------------- time-driven state
    def _delay_s(self, status: StreamStatus | str) -> float:
        """How long a stream or consumer stays in a transitional ``status`` (settings, per status)."""
        s = self.settings
        per_status = {
            "CREATING": s.creating_delay_s,
            "UPDATING": s.updating_delay_s,
            "DELETING": s.deleting_delay_s,
        }.get(status.value if isinstance(status, StreamStatus) else status)
        return s.status_delay_s if per_status is None else per_status

    def _transition_deadline(self, status: StreamStatus | str) -> int:
        """When ``status``, entered now, ends; _tick applies it lazily."""
        until = self.clock.now_ms() + int(self._delay_s(status) * 1000)
        self._next_transition_ms = min(self._next_transition_ms, until)
        return until

    def _set_status(self, st: StreamState, status: StreamStatus) -> None:
        """Enter a transitional status; it ends after its delay (settings)."""
        st.status = status
        st.status_until_ms = self._transition_deadline(status)

    def _apply_pending(self, st: StreamState) -> None:
        """Carry out the stream's pending reshards (Resharding does; a stream without them has nothing to do)."""
        st.pending.clear()

    def _tick(self) -> None:
        """Finish every transition whose time has come. Cheap when none is due."""
        now = self.clock.now_ms()
        if now < self._next_transition_ms:
            return
        nxt = 1 << 62
        for st in list(self.streams.values()):
            changed = False
            if st.status is not StreamStatus.ACTIVE:
                if now >= st.status_until_ms:
                    if st.status is StreamStatus.DELETING:
                        self._finish_delete(st)
                        continue
                    if st.pending:
                        if not self._finish_reshard(st):
                            nxt = min(nxt, now + 1000)
                            continue
                    else:
                        st.status = StreamStatus.ACTIVE
                        changed = True
                else:
                    nxt = min(nxt, st.status_until_ms)
            for c in list(st.consumers.values()):
                if c.status == "ACTIVE":
                    continue
                if now >= c.status_until_ms:
                    if c.status == "DELETING":
                        del st.consumers[c.name]
                    else:
                        c.status = "ACTIVE"
                    changed = True
                else:
                    nxt = min(nxt, c.status_until_ms)
            if changed:
                try:
                    self._save(st)
                except (OSError, ServiceUnavailable) as exc:
                    # The request that ticked is not about this change: it goes on. The new state is in memory and
                    # saved with the stream's next change; a restart before that derives it again from the old one.
                    log.error("stream %s: cannot save its new state: %s", st.name, exc)
        self._next_transition_ms = nxt

    def _finish_reshard(self, st: StreamState) -> bool:
        """Carry out the reshards accepted while the stream was UPDATING and make it ACTIVE, all in one change
        (_change): either every parent is closed, every child open and the new map saved, or nothing is seen and
        the reshards stay pending for a later tick. Returns whether they were carried out. A failure is logged
        when it starts and when it ends, not at every retry."""
        try:
            with self._change(st):
                self._apply_pending(st)
                st.status = StreamStatus.ACTIVE
        except (OSError, ServiceUnavailable) as exc:
            if st.reshard_error is None:
                log.error(
                    "stream %s: cannot carry out its reshard (the shard map stays as it was, the stream UPDATING; "
                    "retried with the next requests): %s",
                    st.name,
                    exc,
                )
            st.reshard_error = str(exc)
            return False
        if st.reshard_error is not None:
            log.warning("stream %s: reshard carried out after all (it failed with: %s)", st.name, st.reshard_error)
            st.reshard_error = None
        return True

    def _finish_delete(self, st: StreamState) -> None:
        for sh in st.shards:
            if sh.log is not None:
                sh.log.discard_pending()
                sh.log.close()
                sh.log = None
        self.catalog.delete_stream(st.stream_id)
        self.streams.pop(st.name, None)
        log.info("stream %s deleted", st.name)

    def _end_subscriptions(self, st: StreamState, consumer: str | None = None) -> None:
        """End the SubscribeToShard subscriptions of a stream going away, or of one of its consumers
        (engine/subscriptions.py)."""

    # ----------------------------------------------------------------- persistence
    def _save(self, st: StreamState) -> None:
        with self._refuse_when_full():
            self.catalog.save_stream(st.stream_id, st.to_dict())

    def _change(self, st: StreamState) -> AbstractContextManager[None]:
        """A change to ``st``'s metadata, all or nothing (changes.py): the body changes ``st`` (its fields, and its
        shard map: it may add shards, opening their logs, and close or expire shards by their metadata alone),
        which is saved on leaving. If the body or the save raises, ``st`` is put back exactly as it was and the
        error goes on. Once saved, the files and the routing follow the new metadata."""
        return stream_change(self, st)

    # ----------------------------------------------------------------- a full disk
    def _no_space(self, exc: OSError) -> ServiceUnavailable | None:
        """The error that refuses a write failed by ``exc`` when the disk is full (None for any other failure).
        Entering that state is logged once; reads go on (storage/unwritten.py)."""
        if exc.errno not in _NO_SPACE:
            return None
        if not self.disk_full:
            self.disk_full = True
            log.error(
                "no space left for the data directory %s (%s): writes are refused until space is freed, reads go on",
                self.settings.data_dir,
                exc.strerror,
            )
        return ServiceUnavailable(m.DISK_FULL.format(error=exc.strerror))

    @contextmanager
    def _refuse_when_full(self) -> Iterator[None]:
        """Around a metadata write: a full disk raises the error that refuses the request (_no_space); any other
        failure goes on as it is. Nothing is written after a failed fsync (_fsync_failed)."""
        self._refuse_when_failed()
        try:
            yield
        except OSError as exc:
            full = self._no_space(exc)
            if full is None:
                raise
            raise full from exc

    # ----------------------------------------------------------------- a failed fsync
    def _fsync_failed(self, exc: OSError, what: str) -> ServiceUnavailable:
        """Enter the failed-storage state after an fsync of ``what`` (the journal, a segment) failed with ``exc``,
        and return the error that refuses writes from now on. The state is sticky until a restart: after a failed
        fsync Linux drops the dirty pages it could not write and clears the error, so a later fsync of the same file
        can succeed although earlier bytes never reached the disk. Only the journal still holds them (no checkpoint
        records a position from now on) and a restart replays it. ENOSPC here counts too (the same pages are lost).
        Entering the state is logged once; reads go on."""
        if self.storage_failed is None:
            self.storage_failed = exc.strerror or str(exc)
            log.error(
                "fsync of %s in the data directory %s failed (%s): written bytes may be lost, so writes are refused "
                "and no journal checkpoint is recorded until the server is restarted (the restart replays the "
                "journal); reads go on",
                what,
                self.settings.data_dir,
                self.storage_failed,
            )
        return ServiceUnavailable(m.STORAGE_FAILED.format(error=self.storage_failed))

    def _segment_fsync_failed(self, exc: OSError) -> None:
        """A shard log's fsync failed, on whatever path (ShardLog.on_sync_error): writes stop (_fsync_failed)."""
        self._fsync_failed(exc, "a shard segment")

    def _refuse_when_failed(self) -> None:
        """Refuse a write once an fsync has failed (_fsync_failed)."""
        if self.storage_failed is not None:
            raise ServiceUnavailable(m.STORAGE_FAILED.format(error=self.storage_failed))

    def _space_again(self) -> None:
        """A write went through: if the disk was full, say that writes work again."""
        if self.disk_full:
            self.disk_full = False
            log.warning("space available again in %s: writes accepted", self.settings.data_dir)

    def _open_shard(self, st: StreamState, sh: ShardState) -> None:
        s = self.settings
        sh.seq_prefix = sequence.prefix(st.tag, sh.index)
        sh.log, report = ShardLog.open(
            self.catalog.shard_dir(st.stream_id, sh.index),
            self.files,
            segment_bytes=s.segment_bytes,
            index_interval=s.index_interval_bytes,
            segment_max_age_ms=int(s.segment_max_age_s * 1000),
            visible_on_write=s.fsync != "always",
            durable=s.fsync != "never",
            sealed=not sh.is_open,
            table=st.table,
            slot=sh.index,
        )
        sh.log.on_sync_error = self._segment_fsync_failed
        # The shard's results: its id, and sequence numbers from its prefix (staging.py).
        st.table.staged.name(sh.index, sh.shard_id, sh.seq_prefix)
        st.incoming.start(sh.index)
        sh.counters.incoming, sh.counters.slot = st.incoming, sh.index
        if not report.clean:
            log.warning(
                "stream %s %s: recovery cut a %d-byte tail that failed its checks (the journal replay restores its "
                "records or reports them lost), found %d damaged ranges and %d missing ranges, %d records lost%s",
                st.name,
                sh.shard_id,
                report.truncated_bytes,
                len(report.corrupt),
                len(report.lost),
                report.lost_records,
                "".join(f", offsets {first}..{end - 1}" for first, end in report.lost),
            )
        self.recovery_reports.append(report)
        self._make_buckets(st, sh)

    def _make_buckets(self, st: StreamState, sh: ShardState | None = None) -> None:
        s = self.settings
        if not s.enforce_limits:
            return
        now = self.clock.monotonic()
        if sh is not None:
            sh.write_bytes = TokenBucket(s.shard_write_bytes_per_s, now)
            sh.write_records = TokenBucket(s.shard_write_records_per_s, now)
            sh.read_bytes = TokenBucket(s.shard_read_bytes_per_s, now)
            sh.read_calls = TokenBucket(s.shard_read_calls_per_s, now)
        else:
            st.write_bytes = TokenBucket(s.on_demand_write_bytes_per_s, now)
            st.write_records = TokenBucket(s.on_demand_write_records_per_s, now)
            st.read_bytes = TokenBucket(s.on_demand_read_bytes_per_s, now)

    # ----------------------------------------------------------------- limits
    def _open_shard_total(self) -> int:
        """Open shards across streams, counting those a pending reshard will open (and not those it will close)."""
        return sum(len(st.open_shards()) + st.pending_shards() for st in self.streams.values())

    def _check_shard_limit(self, additional: int) -> None:
        current = self._open_shard_total()
        if current + additional > self.settings.shard_limit:
            raise LimitExceededException(
                self._fmt(m.SHARD_LIMIT, "", current=current, limit=self.settings.shard_limit, requested=additional)
            )

    def _recent(self, stamps: list[int]) -> list[int]:
        cutoff = self.clock.now_ms() - _DAY_MS
        return [t for t in stamps if t > cutoff]

    def _on_demand_count(self) -> int:
        return sum(1 for st in self.streams.values() if st.mode is StreamMode.ON_DEMAND)

    def _validate_tags(self, stream: str, existing: dict[str, str], tags: dict[str, str]) -> None:
        for k, v in tags.items():
            if not valid_tag_text(k) or not valid_tag_text(v or ""):
                raise InvalidArgumentException(m.TAG_CHARS)
        if len(set(existing) | set(tags)) > MAX_TAGS:
            raise InvalidArgumentException(self._fmt(m.TAG_LIMIT, stream, limit=MAX_TAGS))
