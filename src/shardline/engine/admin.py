"""Stream settings: retention, tags, capacity mode, consumers, enhanced monitoring, encryption."""

from __future__ import annotations

from typing import Unpack

from ..errors import (
    InvalidArgumentException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
    enum_rule,
    validation_error,
)
from ..models import Consumer, ConsumerRef, StreamMode, StreamStatus, Tag
from . import messages as m
from ._base import EngineBase, valid_tag_text
from .streams import ConsumerState, StreamState

__all__ = ["Admin"]

SHARD_LEVEL_METRICS = (
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
)


class Admin(EngineBase):
    # ----------------------------------------------------------------- retention
    async def increase_stream_retention_period(
        self, retention_period_hours: int, *, stream_name: str | None = None, stream_arn: str | None = None
    ) -> None:
        st = self._stream(stream_name, stream_arn)
        hours = self._check_retention(retention_period_hours)
        if hours < st.retention_hours:
            raise InvalidArgumentException(
                m.RETENTION_SHORTER.format(hours=hours, stream=st.name, current=st.retention_hours)
            )
        self._set_retention(st, hours)

    async def decrease_stream_retention_period(
        self, retention_period_hours: int, *, stream_name: str | None = None, stream_arn: str | None = None
    ) -> None:
        st = self._stream(stream_name, stream_arn)
        hours = self._check_retention(retention_period_hours)
        if hours > st.retention_hours:
            raise InvalidArgumentException(
                m.RETENTION_LONGER.format(hours=hours, stream=st.name, current=st.retention_hours)
            )
        self._set_retention(st, hours)

    def _check_retention(self, hours: int) -> int:
        if hours < 24:
            raise InvalidArgumentException(m.RETENTION_MIN.format(hours=hours))
        if hours > 8760:
            raise InvalidArgumentException(m.RETENTION_MAX.format(hours=hours))
        return hours

    def _set_retention(self, st: StreamState, hours: int) -> None:
        self._require_active(st)
        with self._change(st):
            st.retention_hours = hours

    # ----------------------------------------------------------------- tags
    async def add_tags_to_stream(
        self, tags: dict[str, str], *, stream_name: str | None = None, stream_arn: str | None = None
    ) -> None:
        st = self._stream(stream_name, stream_arn)
        self._validate_tags(st.name, st.tags, tags)
        with self._change(st):
            st.tags.update(tags)

    async def remove_tags_from_stream(
        self, tag_keys: list[str], *, stream_name: str | None = None, stream_arn: str | None = None
    ) -> None:
        st = self._stream(stream_name, stream_arn)
        if any(not valid_tag_text(k) for k in tag_keys):
            raise InvalidArgumentException(m.TAG_CHARS)
        with self._change(st):
            for k in tag_keys:
                st.tags.pop(k, None)

    async def list_tags_for_stream(
        self,
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
        exclusive_start_tag_key: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Tag], bool]:
        if not 1 <= limit <= 50:
            raise validation_error([(limit, "limit", "Member must have value between 1 and 50")])
        st = self._stream(stream_name, stream_arn)
        keys = sorted(k for k in st.tags if exclusive_start_tag_key is None or k > exclusive_start_tag_key)
        page = keys[:limit]
        return [Tag(k, st.tags[k]) for k in page], len(keys) > len(page)

    # ----------------------------------------------------------------- capacity mode
    async def update_stream_mode(self, stream_arn: str, stream_mode: StreamMode | str) -> None:
        st = self._stream(None, stream_arn)
        mode = StreamMode(stream_mode)
        self._require_active(st)
        if mode is st.mode:
            return
        if mode is StreamMode.PROVISIONED:
            self._refuse_queues(st, "switching it to PROVISIONED")
        recent = self._recent(st.mode_switches_ms)
        if len(recent) >= self.settings.max_mode_switches_per_day:
            raise LimitExceededException(
                self._fmt(m.MODE_SWITCH_LIMIT, st.name, limit=self.settings.max_mode_switches_per_day)
            )
        if mode is StreamMode.ON_DEMAND and self._on_demand_count() + 1 > self.settings.on_demand_stream_limit:
            raise LimitExceededException(
                self._fmt(
                    m.ON_DEMAND_STREAM_LIMIT,
                    st.name,
                    current=self._on_demand_count(),
                    limit=self.settings.on_demand_stream_limit,
                )
            )
        with self._change(st):
            st.mode_switches_ms = [*recent, self.clock.now_ms()]
            st.mode = mode
            self._set_status(st, StreamStatus.UPDATING)
        self._make_buckets(st)
        self._tick()

    # ----------------------------------------------------------------- consumers (enhanced fan-out registry)
    async def register_stream_consumer(self, stream_arn: str, consumer_name: str) -> Consumer:
        st = self._stream(None, stream_arn)
        self._require_shards(st)
        if consumer_name in st.consumers:
            raise ResourceInUseException(self._fmt(m.CONSUMER_EXISTS, st.name, consumer=consumer_name))
        if len(st.consumers) >= self.settings.max_consumers_per_stream:
            raise LimitExceededException(
                self._fmt(m.CONSUMER_LIMIT, st.name, limit=self.settings.max_consumers_per_stream)
            )
        c = ConsumerState(consumer_name, self.clock.now_ms(), "CREATING", self._transition_deadline("CREATING"))
        with self._change(st):
            st.consumers[consumer_name] = c
        model = self._consumer_model(st, c)
        self._tick()
        return model

    async def deregister_stream_consumer(self, **ref: Unpack[ConsumerRef]) -> None:
        st, c = self._find_consumer(ref)
        if c.status == "DELETING":
            return  # already on its way out: asking again does not push its end back
        with self._change(st):
            c.status = "DELETING"
            c.status_until_ms = self._transition_deadline("DELETING")
        self._end_subscriptions(st, c.name)
        self._tick()

    async def describe_stream_consumer(self, **ref: Unpack[ConsumerRef]) -> Consumer:
        st, c = self._find_consumer(ref)
        return self._consumer_model(st, c)

    async def list_stream_consumers(self, stream_arn: str) -> list[Consumer]:
        st = self._stream(None, stream_arn)
        return [self._consumer_model(st, c) for c in sorted(st.consumers.values(), key=lambda c: c.created_ms)]

    def consumer_arn(self, st: StreamState, c: ConsumerState) -> str:
        return f"{st.arn}/consumer/{c.name}:{c.created_ms // 1000}"

    def _consumer_model(self, st: StreamState, c: ConsumerState) -> Consumer:
        return Consumer(c.name, self.consumer_arn(st, c), c.status, c.created_ms, st.arn)

    def _find_consumer(self, ref: ConsumerRef) -> tuple[StreamState, ConsumerState]:
        consumer_arn = ref.get("consumer_arn")
        if consumer_arn is not None:
            stream_part, sep, rest = consumer_arn.partition("/consumer/")
            if not sep or ":" not in rest:
                raise InvalidArgumentException(f"Invalid ConsumerARN {consumer_arn}.")
            st = self._stream(None, stream_part)
            name = rest.rsplit(":", 1)[0]
            c = st.consumers.get(name)
            if c is None or self.consumer_arn(st, c) != consumer_arn:
                raise ResourceNotFoundException(self._fmt(m.CONSUMER_NOT_FOUND, st.name, consumer=name))
            return st, c
        stream_arn, consumer_name = ref.get("stream_arn"), ref.get("consumer_name")
        if stream_arn is None or consumer_name is None:
            raise InvalidArgumentException(m.CONSUMER_ARGS)
        st = self._stream(None, stream_arn)
        c = st.consumers.get(consumer_name)
        if c is None:
            raise ResourceNotFoundException(self._fmt(m.CONSUMER_NOT_FOUND, st.name, consumer=consumer_name))
        return st, c

    # ----------------------------------------------------------------- enhanced monitoring and encryption
    async def enable_enhanced_monitoring(
        self, shard_level_metrics: list[str], *, stream_name: str | None = None, stream_arn: str | None = None
    ) -> tuple[list[str], list[str]]:
        """Returns (current, desired) shard-level metrics."""
        return self._set_monitoring(stream_name, stream_arn, shard_level_metrics, enable=True)

    async def disable_enhanced_monitoring(
        self, shard_level_metrics: list[str], *, stream_name: str | None = None, stream_arn: str | None = None
    ) -> tuple[list[str], list[str]]:
        return self._set_monitoring(stream_name, stream_arn, shard_level_metrics, enable=False)

    def _set_monitoring(
        self, stream_name: str | None, stream_arn: str | None, metrics: list[str], *, enable: bool
    ) -> tuple[list[str], list[str]]:
        bad = [x for x in metrics if x != "ALL" and x not in SHARD_LEVEL_METRICS]
        if bad or not metrics:
            allowed = enum_rule([*SHARD_LEVEL_METRICS, "ALL"])
            raise validation_error([(metrics, "shardLevelMetrics", f"Member must satisfy constraint: [{allowed}]")])
        st = self._stream(stream_name, stream_arn)
        chosen = set(SHARD_LEVEL_METRICS) if "ALL" in metrics else set(metrics)
        current = list(st.shard_level_metrics)
        now = set(current) | chosen if enable else set(current) - chosen
        with self._change(st):
            st.shard_level_metrics = [x for x in SHARD_LEVEL_METRICS if x in now]
        return current, list(st.shard_level_metrics)

    async def start_stream_encryption(
        self,
        encryption_type: str,
        key_id: str,
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
    ) -> None:
        """Accepted and reported, as AWS reports it; records on disk stay as stored."""
        if encryption_type != "KMS":
            raise validation_error([(encryption_type, "encryptionType", enum_rule(["NONE", "KMS"]))])
        self._set_encryption(stream_name, stream_arn, "KMS", key_id)

    async def stop_stream_encryption(
        self,
        encryption_type: str,
        key_id: str,
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
    ) -> None:
        self._set_encryption(stream_name, stream_arn, "NONE", None)

    def _set_encryption(
        self, stream_name: str | None, stream_arn: str | None, encryption_type: str, key_id: str | None
    ) -> None:
        st = self._stream(stream_name, stream_arn)
        self._require_active(st)
        with self._change(st):
            st.encryption_type, st.key_id = encryption_type, key_id
            self._set_status(st, StreamStatus.UPDATING)
        self._tick()
