"""Kinesis channels: a channel delivers a stream's records to Amazon S3 or to streaming tables in Amazon S3 Tables.

Neither destination exists here, so a channel has no local effect: shardline keeps what CreateChannel and UpdateChannel
set, checks it as AWS documents, and answers DescribeChannel and ListChannels with it through the same lifecycle
(CREATING, ACTIVE, UPDATING, DELETING), as the issue of "store it and return it as AWS does" asks of such features.
No record is delivered anywhere (docs/queues.md says so, and the creation is logged).

The destination, encryption and logging configurations are kept as the documents the request carried (the engine
reads only what its rules need). All channels live in ``channels.json`` in the data directory (sealed, replaced
atomically).
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .._fsutil import atomic_write
from ..errors import InvalidArgumentException, ResourceInUseException
from ..storage.catalog import read_sealed, seal
from .attached import Attachments
from .streams import StreamState

__all__ = ["ChannelInfo", "Channels"]

log = logging.getLogger("shardline.engine")

_FILE = "channels.json"
# The texts of these checks are shardline's: AWS documents the rules, not their messages.
ONE_DESTINATION = "Specify either S3DestinationConfiguration or S3TablesDestinationConfiguration, but not both."
ONE_STREAM = "StreamConfigurationList must contain exactly one entry: one stream is supported per channel."
ONE_TABLE = "S3TablesConfigurationList must contain exactly one entry: one table is supported per channel."
FORMAT_FOR = "RecordFormatType {fmt} is not supported for {dest} destinations."
GSR_REQUIRED = "GSRSchemaARN is required when the channel destination is a streaming table."
WRONG_UPDATE = "Channel {name} delivers to {dest}: {given} cannot be updated."
_FORMATS = {"S3": ("JSON", "STRING", "BYTE_ARRAY"), "S3_TABLES": ("GSR_JSON", "JSON")}


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel as DescribeChannel shows it; ``destination`` and the configurations are the request's documents."""

    channel_id: str
    channel_arn: str
    name: str
    status: str
    created_ms: int
    role_arn: str
    stream_arn: str
    stream_created_ms: int
    record_configuration: dict[str, Any]
    destination_type: str  # S3 | S3_TABLES
    destination: dict[str, Any]
    encryption: dict[str, Any] | None
    logging: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ChannelState:
    """A channel as ``channels.json`` keeps it."""

    channel_id: str  # 32 hex digits: the ARN's resource id
    name: str
    status: str
    status_until_ms: int
    created_ms: int
    role_arn: str
    stream_name: str
    stream_id: str  # the stream incarnation it is on
    stream_created_ms: int
    record: dict[str, Any]
    dest_type: str  # S3 | S3_TABLES
    dest: dict[str, Any]
    encryption: dict[str, Any] | None
    logging: dict[str, Any] | None
    tags: dict[str, str]

    @property
    def ident(self) -> str:
        return self.channel_id

    def to_dict(self) -> dict[str, Any]:
        return {_FILE_KEYS.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelState:
        return cls(**{f.name: d[_FILE_KEYS.get(f.name, f.name)] for f in fields(cls)})


# The names in channels.json that are not the field's.
_FILE_KEYS = {"channel_id": "id", "role_arn": "role", "stream_name": "stream"}


class Channels(Attachments):
    _channel_map: dict[str, ChannelState] | None = None

    async def create_channel(
        self,
        name: str,
        role_arn: str,
        streams: Sequence[tuple[str, dict[str, Any]]],
        *,
        s3: dict[str, Any] | None = None,
        s3_tables: dict[str, Any] | None = None,
        encryption: dict[str, Any] | None = None,
        logging_config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> ChannelInfo:
        """``streams``: (stream ARN, record configuration) per entry."""
        channels = self._channels()
        if (s3 is None) == (s3_tables is None):
            raise InvalidArgumentException(ONE_DESTINATION)
        if len(streams) != 1:
            raise InvalidArgumentException(ONE_STREAM)
        dest_type = "S3" if s3 is not None else "S3_TABLES"
        destination = dict(s3 if s3 is not None else s3_tables or {})
        stream_arn, record_config = streams[0]
        fmt = str(record_config.get("RecordFormatType"))
        if fmt not in _FORMATS[dest_type]:
            raise InvalidArgumentException(FORMAT_FOR.format(fmt=fmt, dest=dest_type))
        if dest_type == "S3_TABLES":
            if len(destination.get("S3TablesConfigurationList", [])) != 1:
                raise InvalidArgumentException(ONE_TABLE)
            if not record_config.get("GSRSchemaARN"):
                raise InvalidArgumentException(GSR_REQUIRED)
        st = self._new_attached("channel", channels, name, stream_arn, tags)
        c = ChannelState(
            channel_id=secrets.token_hex(16),
            name=name,
            status="CREATING",
            status_until_ms=0,
            created_ms=self.clock.now_ms(),
            role_arn=role_arn,
            stream_name=st.name,
            stream_id=st.stream_id,
            stream_created_ms=st.created_ms,
            record=dict(record_config),
            dest_type=dest_type,
            dest=destination,
            encryption=encryption,
            logging=logging_config,
            tags=dict(tags or {}),
        )
        with self._channels_change():
            self._enter_status(c, "CREATING")
            channels[c.channel_id] = c
        log.warning(
            "channel %s on stream %s stored: shardline keeps its configuration but delivers nothing to %s",
            name,
            st.name,
            dest_type,
        )
        return self._channel_info(c)

    async def describe_channel(self, channel_arn: str) -> ChannelInfo:
        return self._channel_info(self._channel(channel_arn))

    async def list_channels(
        self,
        *,
        stream_filter: Sequence[tuple[str, int | None]] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[ChannelInfo], str | None]:
        page, token = self._list_attached(self._channels(), self._tick_channel, stream_filter, max_results, next_token)
        return [self._channel_info(c) for c in page], token

    async def update_channel(
        self,
        channel_arn: str,
        *,
        s3: dict[str, Any] | None = None,
        s3_tables: dict[str, Any] | None = None,
        logging_config: dict[str, Any] | None = None,
    ) -> ChannelInfo:
        """Only the data freshness (in the destination's document) and the logging configuration change."""
        c = self._channel(channel_arn)
        self._require_attached_active("channel", c)
        given = "S3DestinationConfiguration" if s3 is not None else "S3TablesDestinationConfiguration"
        update = s3 if s3 is not None else s3_tables
        if update is not None and (
            (s3 is not None) != (c.dest_type == "S3") or (s3 is not None and s3_tables is not None)
        ):
            raise InvalidArgumentException(WRONG_UPDATE.format(name=c.name, dest=c.dest_type, given=given))
        with self._channels_change():
            if update is not None:
                c.dest = c.dest | update
            if logging_config is not None:
                c.logging = logging_config
            self._enter_status(c, "UPDATING")
        return self._channel_info(c)

    async def delete_channel(self, channel_arn: str) -> None:
        c = self._channel(channel_arn)
        if c.status != "DELETING":
            with self._channels_change():
                self._delete_attached(c)

    def _refuse_queues(self, st: StreamState, what: str) -> None:
        # (documented: "A stream cannot be deleted while it has active channels"; the text is shardline's)
        if what.startswith("deleting") and self._on_stream(self._channels(), st):
            raise ResourceInUseException(
                self._fmt("Stream {stream} under account {account} has channels. Delete them first.", st.name)
            )
        super()._refuse_queues(st, what)

    # ----------------------------------------------------------------- state
    def _channel(self, channel_arn: str) -> ChannelState:
        return self._find_attached("channel", self._channels(), channel_arn, self._tick_channel)

    def _tick_channel(self, c: ChannelState) -> None:
        if not self._transition_due(c):
            return
        with self._channels_change() as channels:
            if c.status == "DELETING":
                del channels[c.channel_id]
            else:
                c.status = "ACTIVE"

    def _channel_info(self, c: ChannelState) -> ChannelInfo:
        logging_config = c.logging or {"CloudWatchLogs": {"Enabled": False}}
        cw = logging_config["CloudWatchLogs"]
        if cw.get("Enabled"):  # (documented defaults of the log group and stream)
            cw = {"LogGroupName": f"/aws/kinesis/{c.name}/{c.channel_id}", "LogStreamName": "DestinationDelivery"} | cw
        info = ChannelInfo(
            channel_id=c.channel_id,
            channel_arn=self._attached_arn("channel", c.channel_id),
            name=c.name,
            status=c.status,
            created_ms=c.created_ms,
            role_arn=c.role_arn,
            stream_arn=self.stream_arn(c.stream_name),
            stream_created_ms=c.stream_created_ms,
            record_configuration=c.record,
            destination_type=c.dest_type,
            destination=c.dest,
            encryption=c.encryption,
            logging={"CloudWatchLogs": cw},
        )
        return replace(info, tags=dict(c.tags))

    def _channels(self) -> dict[str, ChannelState]:
        if self._channel_map is None:
            path = self.catalog.root / _FILE
            found = read_sealed(path.read_bytes()).get("channels", {}) if path.exists() else {}
            self._channel_map = {cid: ChannelState.from_dict(c) for cid, c in found.items()}
        return self._channel_map

    @contextmanager
    def _channels_change(self) -> Iterator[dict[str, ChannelState]]:
        """A change to the channels, all or nothing: the body changes them (the map it is given, and its channels),
        which are saved on leaving; if the body or the save raises, they are put back as they were."""
        channels = self._channels()
        before = copy.deepcopy({cid: c.to_dict() for cid, c in channels.items()})
        try:
            yield channels
            with self._refuse_when_full():
                saved = {cid: c.to_dict() for cid, c in channels.items()}
                atomic_write(self.catalog.root / _FILE, seal({"channels": saved}))
        except BaseException:
            self._channel_map = {cid: ChannelState.from_dict(d) for cid, d in before.items()}
            raise
