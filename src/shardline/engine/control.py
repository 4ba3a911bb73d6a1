"""Control plane: create, delete, describe and list streams and shards."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from ..errors import (
    ExpiredNextTokenException,
    InvalidArgumentException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
    validation_error,
)
from ..models import (
    Limits,
    ListShardsResult,
    ListStreamsResult,
    ShardFilterType,
    StreamDescription,
    StreamDescriptionSummary,
    StreamMode,
    StreamStatus,
    StreamSummary,
)
from . import messages as m
from ._base import EngineBase, parse_shard_id
from .hashing import even_ranges
from .streams import ShardState, StreamState

__all__ = ["ControlPlane"]

_NEXT_TOKEN_TTL_MS = 300_000


class ControlPlane(EngineBase):
    async def create_stream(
        self,
        stream_name: str,
        shard_count: int | None = None,
        *,
        stream_mode: StreamMode | str = StreamMode.PROVISIONED,
        tags: dict[str, str] | None = None,
        active: bool = False,
        max_record_size_kib: int | None = None,
        warm_throughput_mibps: int | None = None,
        record_distribution_strategy: str | None = None,
    ) -> None:
        """Create a stream; it is CREATING for settings.creating_delay_s, unless ``active`` (a stream a project
        declares, made ready before anything can use it). The last three are the settings of stream_settings.py."""
        mode = StreamMode(stream_mode)
        self._tick()
        if stream_name in self.streams:
            raise ResourceInUseException(self._fmt(m.STREAM_EXISTS, stream_name))
        self._refuse_damaged(stream_name)
        self._check_new_stream(
            stream_name, mode, max_record_size_kib, warm_throughput_mibps, record_distribution_strategy
        )
        if mode is StreamMode.ON_DEMAND:
            count = shard_count or self.settings.on_demand_initial_shards
            if self._on_demand_count() + 1 > self.settings.on_demand_stream_limit:
                raise LimitExceededException(
                    self._fmt(
                        m.ON_DEMAND_STREAM_LIMIT,
                        stream_name,
                        current=self._on_demand_count(),
                        limit=self.settings.on_demand_stream_limit,
                    )
                )
        elif shard_count is None:
            raise InvalidArgumentException(m.SHARD_COUNT_REQUIRED)
        else:
            count = shard_count
        if count < 1:
            raise validation_error([(count, "shardCount", "Member must have value greater than or equal to 1")])
        self._check_shard_limit(count)
        if tags:
            self._validate_tags(stream_name, {}, tags)
        now = self.clock.now_ms()
        st = StreamState(
            stream_id=self.catalog.new_stream_id(now),
            name=stream_name,
            arn=self.stream_arn(stream_name),
            created_ms=now,
            mode=mode,
            tag=secrets.randbits(36),
            tags=dict(tags or {}),
            max_record_size_kib=max_record_size_kib or self.settings.max_record_bytes // 1024,
            distribution=record_distribution_strategy or "USER_PARTITION_KEY",
            warm_target_mibps=warm_throughput_mibps,
        )
        st.shards = [ShardState(i, lo, hi, now) for i, (lo, hi) in enumerate(even_ranges(count))]
        # Shard logs first, metadata last: a crash in between leaves a directory without stream.json, which the
        # next open removes; the stream exists once its metadata does.
        for sh in st.shards:
            self._open_shard(st, sh)
        self._make_buckets(st)
        if active:
            st.status = StreamStatus.ACTIVE
        else:
            self._set_status(st, StreamStatus.CREATING)
        st.warm_until_ms = st.status_until_ms  # (a warm throughput given at creation is in force once ACTIVE)
        st.rebuild_router()
        try:
            self._save(st)
        except BaseException:
            # (a full disk) the stream does not exist: nothing of it may stay open or on disk
            for sh in st.shards:
                if sh.log is not None:
                    sh.log.close()
            self.catalog.delete_stream(st.stream_id)
            raise
        self.streams[stream_name] = st

    def _check_new_stream(
        self, name: str, mode: StreamMode, max_record_kib: int | None, warm_mibps: int | None, strategy: str | None
    ) -> None:
        """Refuse CreateStream's optional settings that the stream cannot take (stream_settings.py checks them)."""
        raise NotImplementedError

    async def delete_stream(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        enforce_consumer_deletion: bool = False,
    ) -> None:
        st = self._stream(stream_name, stream_arn)
        if st.status is StreamStatus.DELETING:
            return
        if st.consumers and not enforce_consumer_deletion:
            raise ResourceInUseException(self._fmt(m.HAS_CONSUMERS, st.name))
        self._refuse_queues(st, "deleting it")
        with self._change(st):
            self._set_status(st, StreamStatus.DELETING)
        self._end_subscriptions(st)
        self._tick()

    async def describe_stream(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        limit: int = 100,
        exclusive_start_shard_id: str | None = None,
    ) -> StreamDescription:
        if not 1 <= limit <= 10000:
            raise validation_error([(limit, "limit", "Member must have value between 1 and 10000")])
        st = self._stream(stream_name, stream_arn)
        # While CREATING or DELETING, AWS lists no shards (and HasMoreShards is false).
        shards = self._live_shards(st) if self._has_shards(st) else []
        if exclusive_start_shard_id is not None:
            after = parse_shard_id(exclusive_start_shard_id)
            shards = [s for s in shards if after is None or s.index > after]
        page = shards[: min(limit, 100)]
        return StreamDescription(
            **self._description(st),
            shards=[s.to_model() for s in page],
            has_more_shards=len(shards) > len(page),
        )

    async def describe_stream_summary(
        self, stream_name: str | None = None, *, stream_arn: str | None = None
    ) -> StreamDescriptionSummary:
        st = self._stream(stream_name, stream_arn)
        return StreamDescriptionSummary(
            **self._description(st),
            open_shard_count=len(st.open_shards()) if self._has_shards(st) else 0,
            consumer_count=len(st.consumers),
            max_record_size_kib=st.max_record_size_kib,
            warm_throughput=(
                None
                if st.warm_target_mibps is None
                else (st.warm_target_mibps, st.warm_current(self.clock.now_ms()) or 0)
            ),
            record_distribution_strategy=st.distribution,
        )

    @staticmethod
    def _description(st: StreamState) -> dict[str, Any]:
        """The fields DescribeStream and DescribeStreamSummary share."""
        return {
            "stream_name": st.name,
            "stream_arn": st.arn,
            "stream_status": st.status,
            "stream_mode": st.mode,
            "retention_period_hours": st.retention_hours,
            "stream_creation_timestamp_ms": st.created_ms,
            "shard_level_metrics": tuple(st.shard_level_metrics),
            "encryption_type": st.encryption_type,
            "key_id": st.key_id,
        }

    async def list_streams(
        self,
        *,
        limit: int = 100,
        exclusive_start_stream_name: str | None = None,
        next_token: str | None = None,
    ) -> ListStreamsResult:
        if not 1 <= limit <= 10000:
            raise validation_error([(limit, "limit", "Member must have value between 1 and 10000")])
        self._tick()
        start = exclusive_start_stream_name
        if next_token is not None:
            start = str(self._decode_token(next_token, "streams").get("after", ""))
        names = sorted(n for n in self.streams if start is None or n > start)
        page = names[:limit]
        more = len(names) > len(page)
        summaries = [
            StreamSummary(
                n,
                self.streams[n].arn,
                self.streams[n].status,
                self.streams[n].mode,
                self.streams[n].created_ms,
            )
            for n in page
        ]
        token = self._encode_token("streams", after=page[-1]) if more and page else None
        return ListStreamsResult(page, more, summaries, token)

    async def list_shards(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        next_token: str | None = None,
        exclusive_start_shard_id: str | None = None,
        max_results: int | None = None,
        stream_creation_timestamp_ms: int | None = None,
        shard_filter_type: ShardFilterType | str | None = None,
        shard_filter_shard_id: str | None = None,
        shard_filter_timestamp_ms: int | None = None,
    ) -> ListShardsResult:
        if next_token is not None and (stream_name is not None or stream_arn is not None):
            raise InvalidArgumentException(m.LIST_SHARDS_BOTH)
        if next_token is None and stream_name is None and stream_arn is None:
            raise InvalidArgumentException(m.LIST_SHARDS_NEITHER)
        if max_results is not None and not 1 <= max_results <= 10000:
            raise validation_error([(max_results, "maxResults", "Member must have value between 1 and 10000")])
        limit = max_results or 1000
        if next_token is not None:
            tok = self._decode_token(next_token, "shards")
            st = self._stream(str(tok["stream"]))
            if st.tag != tok["tag"]:
                raise ResourceNotFoundException(self._fmt(m.STREAM_NOT_FOUND, st.name))
            self._require_shards(st)
            after: int | None = int(str(tok["after"]))
            ftype = tok.get("ftype")
            fts = tok.get("fts")
        else:
            st = self._stream(stream_name, stream_arn)
            if stream_creation_timestamp_ms is not None and stream_creation_timestamp_ms // 1000 != st.created_s:
                self._not_found(st.name)
            self._require_shards(st)
            after = parse_shard_id(exclusive_start_shard_id) if exclusive_start_shard_id else None
            ftype = ShardFilterType(shard_filter_type).value if shard_filter_type is not None else None
            fts = shard_filter_timestamp_ms
            if ftype == ShardFilterType.AFTER_SHARD_ID.value:
                if shard_filter_shard_id is None:
                    raise InvalidArgumentException("ShardId must be provided for the AFTER_SHARD_ID filter.")
                after = parse_shard_id(shard_filter_shard_id)
            if ftype in ("AT_TIMESTAMP", "FROM_TIMESTAMP") and fts is None:
                raise InvalidArgumentException(f"Timestamp must be provided for the {ftype} filter.")
        shards = self._filter_shards(st, ftype, fts)
        if after is not None:
            shards = [s for s in shards if s.index > after]
        page = shards[:limit]
        token = None
        if len(shards) > len(page):
            token = self._encode_token("shards", stream=st.name, tag=st.tag, after=page[-1].index, ftype=ftype, fts=fts)
        return ListShardsResult([s.to_model() for s in page], token)

    def _filter_shards(self, st: StreamState, ftype: object, fts: object) -> list[ShardState]:
        shards = self._live_shards(st)
        if ftype == "AT_LATEST":
            return [s for s in shards if s.is_open]
        if ftype == "AT_TRIM_HORIZON":
            live = {s.index for s in shards}
            return [s for s in shards if s.parent not in live and s.adjacent_parent not in live]
        if ftype in ("AT_TIMESTAMP", "FROM_TIMESTAMP") and isinstance(fts, int):
            at = ftype == "AT_TIMESTAMP"
            return [
                s
                for s in shards
                if (s.closed_ms is None or s.closed_ms > fts) and (not at or s.created_ms <= fts or s.parent is None)
            ]
        return shards

    def _live_shards(self, st: StreamState) -> list[ShardState]:
        """Shards not yet past retention (closed shards stay listed, and readable, until their data expires)."""
        cutoff = self.clock.now_ms() - st.retention_hours * 3600_000
        return [s for s in st.shards if s.log is not None and (s.closed_ms is None or s.closed_ms >= cutoff)]

    async def describe_limits(self) -> Limits:
        self._tick()
        return Limits(
            shard_limit=self.settings.shard_limit,
            open_shard_count=self._open_shard_total(),
            on_demand_stream_count=self._on_demand_count(),
            on_demand_stream_count_limit=self.settings.on_demand_stream_limit,
        )

    # ----------------------------------------------------------------- pagination tokens
    def _encode_token(self, kind: str, **fields: object) -> str:
        body = json.dumps({"k": kind, "t": self.clock.now_ms(), **fields}, separators=(",", ":")).encode()
        mac = self.iterators.sign(body)
        return base64.urlsafe_b64encode(body + mac).decode()

    def _decode_token(self, token: str, kind: str) -> dict[str, object]:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            body, mac = raw[:-16], raw[-16:]
            if len(raw) <= 16 or mac != self.iterators.sign(body):
                raise ValueError
            fields = json.loads(body)
            if not isinstance(fields, dict) or fields.get("k") != kind:
                raise ValueError
        except (ValueError, binascii.Error, UnicodeError):
            raise InvalidArgumentException(m.NEXT_TOKEN_INVALID) from None
        if self.clock.now_ms() - int(str(fields["t"])) > _NEXT_TOKEN_TTL_MS:
            raise ExpiredNextTokenException(m.NEXT_TOKEN_EXPIRED)
        return fields
