"""Data plane: PutRecord(s), GetShardIterator, GetRecords."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence

from ..errors import (
    ExpiredIteratorException,
    InternalFailureException,
    InvalidArgumentException,
    KinesisError,
    ProvisionedThroughputExceededException,
    ResourceNotFoundException,
    enum_rule,
    validation_error,
)
from ..models import (
    GetRecordsResult,
    PutRecordResult,
    PutRecordsEntry,
    PutRecordsRequestEntry,
    PutRecordsResult,
    ShardIteratorType,
    StreamMode,
)
from ..storage import unwritten
from ..storage.journal import SyncFailed
from ..storage.staging import Entry
from . import messages as m
from . import sequence
from ._base import EngineBase, parse_shard_id
from .hashing import MAX_HASH_KEY, md5
from .iterators import IteratorPosition
from .streams import ShardSignal, ShardState, StreamState, shard_id_of

__all__ = ["DataPlane", "parse_shard_id"]  # (parse_shard_id: defined in _base.py, where EngineBase uses it)

log = logging.getLogger("shardline.engine")

MAX_GET_BYTES = 10 * 1024 * 1024
# Under fsync=never/interval a put never waits, so a caller putting in a tight loop would starve the engine's
# background tasks (journal checkpoints, interval fsyncs). A put yields to the event loop once this often.
YIELD_EVERY_MS = 50
_HASH_KEY_RE = re.compile(r"0|[1-9]\d{0,38}", re.ASCII)


_PENDING = PutRecordsEntry(None, None, "InternalFailure", "Internal Service Failure")
_INTERNAL_FAILURE = _PENDING


def _member(single: bool, index: int, name: str) -> str:
    return name if single else f"records.{index + 1}.member.{name}"


def _pk_violation(pk: object, where: str) -> tuple[object, str, str]:
    if pk is None:
        return (None, where, "Member must not be null")
    if isinstance(pk, str) and pk:
        return (pk, where, "Member must have length less than or equal to 256")
    return (pk, where, "Member must have length greater than or equal to 1")


class DataPlane(EngineBase):
    # ----------------------------------------------------------------- writes
    async def put_record(
        self,
        *,
        data: bytes,
        partition_key: str | None,
        stream_name: str | None = None,
        stream_arn: str | None = None,
        explicit_hash_key: str | None = None,
        sequence_number_for_ordering: str | None = None,
    ) -> PutRecordResult:
        st = self._stream(stream_name, stream_arn)
        self._writable(st)
        if sequence_number_for_ordering is not None and st.distribution == "AUTO":
            raise InvalidArgumentException(self._fmt(m.ORDERING_WITH_AUTO, st.name))
        if sequence_number_for_ordering is not None and sequence.decode(sequence_number_for_ordering) is None:
            raise InvalidArgumentException(self._fmt(m.ORDERING_SEQ, st.name, seq=sequence_number_for_ordering))
        # Our sequence numbers only grow within a shard, so every later record already sorts after the given one.
        started = time.perf_counter()
        st.counters.put_record_calls += 1
        try:
            entry_in = PutRecordsRequestEntry(data, partition_key, explicit_hash_key)  # type: ignore[arg-type]  # (None: AUTO)
            result = await self._put(st, [entry_in], single=True)
        except KinesisError as exc:
            st.counters.put_errors += 1
            st.counters.put_record_errors += 1
            if isinstance(exc, ProvisionedThroughputExceededException):
                st.counters.put_record_throttled += 1
            raise
        finally:
            st.counters.put_latency.observe((time.perf_counter() - started) * 1000)
        entry = result.records[0]
        assert entry.shard_id is not None and entry.sequence_number is not None
        return PutRecordResult(entry.shard_id, entry.sequence_number, st.encryption_type)

    async def put_records(
        self,
        records: Sequence[PutRecordsRequestEntry | tuple[bytes, str] | tuple[bytes, str, str | None]],
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
    ) -> PutRecordsResult:
        st = self._stream(stream_name, stream_arn)
        n = len(records)
        if not 1 <= n <= 500:
            raise validation_error(
                [
                    (
                        f"[{n} records]",
                        "records",
                        f"Member must have length {'greater' if n < 1 else 'less'} than or "
                        f"equal to {1 if n < 1 else 500}",
                    )
                ]
            )
        self._writable(st)
        started = time.perf_counter()
        st.counters.put_records_calls += 1
        try:
            result = await self._put(st, records, single=False)
        except KinesisError:
            st.counters.put_errors += 1
            st.counters.put_records_errors += 1
            raise
        finally:
            st.counters.put_latency.observe((time.perf_counter() - started) * 1000)
        st.counters.put_records_failed_records += result.failed_record_count
        return result

    async def _put(
        self,
        st: StreamState,
        records: Sequence[PutRecordsRequestEntry | tuple[bytes, str] | tuple[bytes, str, str | None]],
        *,
        single: bool,
    ) -> PutRecordsResult:
        max_record = st.max_record_size_kib * 1024
        violations: list[tuple[object, str, str]] = []
        # One entry per record, in request order: what the journal stages. Shards are named by index throughout (see
        # LogTable): no per-shard object is touched per record.
        plan: list[Entry] = []
        total = 0
        router = st.router
        assert router is not None
        route = router.route
        route_table = router.table
        route_shift = router.shift
        straddles = router.straddles
        from_bytes = int.from_bytes
        # AUTO distribution (stream_settings.py): records go to the open shards in turn, whatever their keys.
        auto = st.auto_slots() if st.distribution == "AUTO" else None
        for i, rec in enumerate(records):
            data, pk = rec[0], rec[1]
            ehk = rec[2] if len(rec) > 2 else None
            if type(data) is not bytes:
                if not isinstance(data, bytearray | memoryview):
                    violations.append((type(data).__name__, _member(single, i, "data"), "Member must not be null"))
                    continue
                data = bytes(data)
            if type(pk) is not str or not 0 < len(pk) <= 256:
                if auto is None or pk is not None:
                    violations.append(_pk_violation(pk, _member(single, i, "partitionKey")))
                    continue
                pk = ""  # AUTO distribution makes the key optional: stored empty, and read back without one
            pkb = pk.encode()
            size = len(pkb) + len(data)
            if size > max_record:
                if len(data) > max_record:
                    violations.append(
                        (
                            data,
                            _member(single, i, "data"),
                            f"Member must have length less than or equal to {max_record}",
                        )
                    )
                    continue
                raise InvalidArgumentException(m.RECORD_TOO_LARGE.format(size=size, limit=max_record))
            total += size
            if ehk is None:
                key = from_bytes(md5(pkb).digest(), "big")  # hashing.hash_key, inline: a call per record saved
                ehkb = b""
            else:
                if type(ehk) is not str or not _HASH_KEY_RE.fullmatch(ehk):
                    violations.append(
                        (
                            ehk,
                            _member(single, i, "explicitHashKey"),
                            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                        )
                    )
                    continue
                key = int(ehk)
                if key > MAX_HASH_KEY:
                    raise InvalidArgumentException(m.EXPLICIT_HASH_KEY.format(value=ehk))
                ehkb = ehk.encode()
            slot = route_table[key >> route_shift]
            if slot < 0:  # a table slot with a shard boundary in it (HashRouter), one in 16 with random keys
                if slot == -1:
                    slot = route(key)
                else:
                    boundary, below, above = straddles[-2 - slot]
                    slot = below if key < boundary else above
            plan.append((slot, pkb, ehkb, data))
        if violations:
            raise validation_error(violations)
        if auto is not None:  # (placed here, not in the loop above: keyed puts pay nothing for it)
            plan = self._distribute(st, auto, plan)
        # A stream that takes records over 1 MiB takes PutRecords requests of up to 10 MiB, as AWS does.
        if (
            total > self.settings.max_put_records_bytes
            and not single
            and (max_record <= 1 << 20 or total > m.LARGE_RECORDS_REQUEST_BYTES)
        ):
            raise InvalidArgumentException(m.RECORDS_TOO_LARGE if max_record <= 1 << 20 else m.LARGE_RECORDS_TOO_LARGE)

        self._refuse_when_failed()
        now = self.clock.now_ms()
        results: list[PutRecordsEntry] = [_PENDING] * len(records)
        positions: list[int] | None = None  # the request position of each plan entry, when not all are in the plan
        if self.settings.enforce_limits:
            plan, positions = self._throttle_writes(st, plan, results, single)
        st.counters.last_incoming_ms = now
        if not plan:
            return PutRecordsResult(len(records), results, st.encryption_type)
        journal = self.journal
        always = self.settings.fsync == "always"
        table = st.table
        try:
            offsets, made = journal.put(st.tag, now, table, plan, results=True)
        except SyncFailed as exc:  # (a roll fsyncs the file it ends: the request is not acknowledged)
            raise self._fsync_failed(exc, "the journal") from exc
        except OSError as exc:
            full = self._no_space(exc)  # (a full disk is logged once, not per request)
            if full is None:
                log.error("stream %s: journal write failed: %s", st.name, exc)
            if single:
                raise full or InternalFailureException("Internal Service Failure") from exc
            # AWS quirk: a PutRecords record fails with ProvisionedThroughputExceededException or InternalFailure
            # only; clients retry the failed records. The message says why.
            failure = _INTERNAL_FAILURE
            if full is not None:
                failure = PutRecordsEntry(None, None, "InternalFailure", full.message)
            for i in range(len(plan)) if positions is None else positions:
                results[i] = failure
            return PutRecordsResult(len(records), results, st.encryption_type)
        # Every record is acknowledged from here on: it is in the journal (durable below under fsync=always). The
        # stage table made each record's result (shard id, sequence number) and counted its bytes as it staged it:
        # no per-record loop here, and no per-shard object touched.
        assert made is not None
        if self.disk_full:
            self._space_again()
        if positions is None:
            results = made
        else:
            for i, entry in zip(positions, made, strict=True):
                results[i] = entry
        if journal.staged_bytes > self.settings.journal_staged_bytes:
            try:
                journal.materialize_all()
            except OSError as exc:  # the records stay staged and in the journal; the next pass retries
                if self._no_space(exc) is None:
                    log.error("stream %s: writing staged records to the shard logs failed: %s", st.name, exc)
        if always:
            try:
                await self.committer.commit((journal,))
            except OSError as exc:  # (not acknowledged; the journal may now hold a damaged frame: _fsync_failed)
                raise self._fsync_failed(exc, "the journal") from exc
            ends: dict[int, int] = {}
            for (slot, *_), off in zip(plan, offsets, strict=True):
                ends[slot] = off + 1
            for slot, end in ends.items():
                lg = table.logs[slot]
                if lg is not None:  # (None: the stream was deleted while the fsync ran)
                    lg.mark_synced(end)
        else:
            mono_ms = time.monotonic() * 1000  # real time: the background loops sleep in real time
            if mono_ms >= self._next_yield_ms:
                self._next_yield_ms = mono_ms + YIELD_EVERY_MS
                await asyncio.sleep(0)
        signals = st.signals
        if signals:
            for slot in {entry[0]: None for entry in plan if entry[0] in signals}:
                signals[slot].set()
        failed = sum(1 for r in results if r.error_code is not None)
        return PutRecordsResult(failed, results, st.encryption_type)

    def _throttle_writes(
        self,
        st: StreamState,
        plan: list[Entry],
        results: list[PutRecordsEntry],
        single: bool,
    ) -> tuple[list[Entry], list[int]]:
        """Take each record's bytes and count from its shard's (or the on-demand stream's) buckets; a record that
        does not fit fails in place with ProvisionedThroughputExceededException."""
        now = self.clock.monotonic()
        on_demand = st.mode is StreamMode.ON_DEMAND
        kept_plan: list[Entry] = []
        kept_positions: list[int] = []
        shards = st.shards
        for i, entry in enumerate(plan):  # (the whole request is in the plan: an invalid record fails it)
            slot = entry[0]
            size = len(entry[1]) + len(entry[3])
            shard = shards[slot]
            bytes_bucket = st.write_bytes if on_demand else shard.write_bytes
            recs_bucket = st.write_records if on_demand else shard.write_records
            if bytes_bucket is None or recs_bucket is None:
                kept_plan.append(entry)
                kept_positions.append(i)
                continue
            if bytes_bucket.take_burst(size, now):
                if recs_bucket.take(1, now):
                    kept_plan.append(entry)
                    kept_positions.append(i)
                    continue
                bytes_bucket.refund(size)
            shard.counters.write_throttled_records += 1
            msg = self._fmt(m.RATE_EXCEEDED, st.name, shard=shard.shard_id)
            if single:
                raise ProvisionedThroughputExceededException(msg)
            st.counters.put_records_throttled_records += 1
            results[i] = PutRecordsEntry(None, None, "ProvisionedThroughputExceededException", msg)
        return kept_plan, kept_positions

    @staticmethod
    def _distribute(st: StreamState, slots: list[int], plan: list[Entry]) -> list[Entry]:
        """AUTO distribution: the records go to the open shards in turn, without their explicit hash keys."""
        first, n = st.auto_next, len(slots)
        st.auto_next = first + len(plan)
        return [(slots[(first + j) % n], e[1], b"", e[3]) for j, e in enumerate(plan)]

    def data_signal(self, stream_name: str, shard_id: str) -> asyncio.Event | None:
        """An event set whenever the shard gets new readable records or closes (None if there is no such shard).
        Clear it before a read that may come back empty, then wait on it with a timeout."""
        st = self.streams.get(stream_name)
        index = parse_shard_id(shard_id)
        shard = st.shard(index) if st is not None and index is not None else None
        if st is None or shard is None:
            return None
        event = st.signals.get(shard.index)
        if event is None:
            event = st.signals[shard.index] = ShardSignal()
        return event

    # ----------------------------------------------------------------- iterators
    async def get_shard_iterator(
        self,
        *,
        shard_id: str,
        shard_iterator_type: ShardIteratorType | str,
        stream_name: str | None = None,
        stream_arn: str | None = None,
        starting_sequence_number: str | None = None,
        timestamp_ms: int | None = None,
    ) -> str:
        name = self._stream_name(stream_name, stream_arn)
        index = self._shard_index(name, shard_id)
        norm = shard_id_of(index)
        try:
            st = self._stream(name)
        except ResourceNotFoundException:
            raise ResourceNotFoundException(self._fmt(m.SHARD_NOT_EXIST, name, shard=norm)) from None
        # (no shard exists while the stream is CREATING or DELETING: DescribeStream lists none)
        shard = st.shard(index) if self._has_shards(st) else None
        if shard is None or shard.log is None:
            raise ResourceNotFoundException(self._fmt(m.SHARD_NOT_EXIST, name, shard=norm))
        try:
            kind = ShardIteratorType(shard_iterator_type)
        except ValueError:
            allowed = enum_rule([t.value for t in ShardIteratorType])
            raise validation_error([(shard_iterator_type, "shardIteratorType", allowed)]) from None
        if kind in (ShardIteratorType.TRIM_HORIZON, ShardIteratorType.LATEST) and starting_sequence_number is not None:
            raise InvalidArgumentException(m.ITER_SEQ_WITH_TYPE.format(type=kind.value))
        offset = self._start_offset(st, shard, kind, starting_sequence_number, timestamp_ms, seq_texts=m.ITER_SEQ_TEXTS)
        return self.iterators.encode(IteratorPosition(st.name, st.tag, index, offset, self.clock.now_ms()))

    # ----------------------------------------------------------------- reads
    async def get_records(self, shard_iterator: str, *, limit: int | None = None) -> GetRecordsResult:
        started = time.perf_counter()
        try:
            return await self._get_records(shard_iterator, limit, started)
        except KinesisError:
            pos = self.iterators.decode(shard_iterator)
            st = self.streams.get(pos.stream_name) if pos is not None else None
            if st is not None:
                st.counters.get_records_errors += 1
            raise

    async def _get_records(self, shard_iterator: str, limit: int | None, started: float) -> GetRecordsResult:
        pos = self.iterators.decode(shard_iterator)
        if pos is None:
            raise InvalidArgumentException(m.INVALID_ITERATOR)
        now = self.clock.now_ms()
        ttl = self.settings.iterator_ttl_ms
        if now - pos.issued_ms > ttl:
            raise ExpiredIteratorException(
                m.ITERATOR_EXPIRED.format(created=m.java_date(pos.issued_ms), now=m.java_date(now), ttl=ttl)
            )
        if limit is None:
            limit = 10_000
        elif not 1 <= limit <= 10_000:
            rule = "greater than or equal to 1" if limit < 1 else "less than or equal to 10000"
            raise validation_error([(limit, "limit", f"Member must have value {rule}")])
        self._tick()
        st = self.streams.get(pos.stream_name)
        usable = st is not None and st.tag == pos.stream_tag and self._has_shards(st)
        shard = st.shard(pos.shard_index) if st is not None and usable else None
        if st is None or shard is None or shard.log is None:
            raise ResourceNotFoundException(
                self._fmt(m.SHARD_NOT_EXIST, pos.stream_name, shard=shard_id_of(pos.shard_index))
            )
        lg = shard.log
        if self.settings.enforce_limits:
            self._throttle_read_call(st, shard)
        enc = None if st.encryption_type == "NONE" else st.encryption_type
        try:
            # (unwritten: records acknowledged but not yet in the segment files are read from memory when writing
            # them fails, e.g. on a full disk)
            records, next_offset, nbytes = unwritten.read_counted(
                lg, pos.offset, limit, MAX_GET_BYTES, id_base=shard.seq_prefix, encryption=enc
            )
            arrival = unwritten.arrival_of(lg, next_offset) if next_offset < lg.visible_offset else None
        except OSError as exc:
            log.error("stream %s %s: read failed: %s", st.name, shard.shard_id, exc)
            raise InternalFailureException("Internal Service Failure") from exc
        if self.settings.enforce_limits and records:
            self._charge_read(st, shard, nbytes)
        end = lg.visible_offset
        behind = max(0, now - arrival) if arrival is not None else 0
        c = shard.counters
        c.get_records_calls += 1
        c.outgoing_records += len(records)
        c.outgoing_bytes += nbytes
        c.iterator_age_ms = behind
        c.last_read_ms = now
        st.counters.get_latency.observe((time.perf_counter() - started) * 1000)
        if not shard.is_open and next_offset >= end:
            return GetRecordsResult(records, None, behind, st.children_of(shard))
        token = self.iterators.encode(IteratorPosition(st.name, st.tag, shard.index, next_offset, now))
        return GetRecordsResult(records, token, behind, None)

    def _throttle_read_call(self, st: StreamState, shard: ShardState) -> None:
        now = self.clock.monotonic()
        calls = shard.read_calls
        volume = st.read_bytes if st.mode is StreamMode.ON_DEMAND else shard.read_bytes
        ok = (volume is None or volume.take(0, now)) and (calls is None or calls.take(1, now))
        if not ok:
            shard.counters.read_throttled_calls += 1
            raise ProvisionedThroughputExceededException(self._fmt(m.READ_RATE_EXCEEDED, st.name, shard=shard.shard_id))

    def _charge_read(self, st: StreamState, shard: ShardState, nbytes: int) -> None:
        volume = st.read_bytes if st.mode is StreamMode.ON_DEMAND else shard.read_bytes
        if volume is not None:
            volume.spend(nbytes, self.clock.monotonic())
