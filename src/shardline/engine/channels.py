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

import base64
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .._fsutil import atomic_write
from ..errors import InvalidArgumentException, ResourceInUseException, ResourceNotFoundException
from ..models import StreamMode
from ..storage.catalog import read_sealed, seal
from ._base import EngineBase
from .streams import StreamState

__all__ = ["ChannelInfo", "Channels"]

log = logging.getLogger("shardline.engine")

_FILE = "channels.json"
LIST_DEFAULT = 100
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


class Channels(EngineBase):
    _channel_map: dict[str, dict[str, Any]] | None = None

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
        if tags:
            self._validate_tags(name, {}, tags)
        st = self._stream(None, stream_arn)
        self._require_shards(st)
        if st.mode is not StreamMode.ON_DEMAND:
            raise InvalidArgumentException(
                self._fmt(
                    "Channels are supported only on data streams in on-demand capacity mode; stream {stream} under "
                    "account {account} is PROVISIONED.",
                    st.name,
                )
            )
        if any(c["name"] == name for c in channels.values()):
            raise ResourceInUseException(f"Channel {name} under account {self.account} already exists.")
        now = self.clock.now_ms()
        cid = secrets.token_hex(16)
        entry: dict[str, Any] = {
            "id": cid,
            "name": name,
            "status": "CREATING",
            "status_until_ms": now + int(self._delay_s("CREATING") * 1000),
            "created_ms": now,
            "role": role_arn,
            "stream": st.name,
            "stream_id": st.stream_id,
            "stream_created_ms": st.created_ms,
            "record": dict(record_config),
            "dest_type": dest_type,
            "dest": destination,
            "encryption": encryption,
            "logging": logging_config,
            "tags": dict(tags or {}),
        }
        channels[cid] = entry
        self._store_channels()
        log.warning(
            "channel %s on stream %s stored: shardline keeps its configuration but delivers nothing to %s",
            name,
            st.name,
            dest_type,
        )
        return self._channel_info(entry)

    async def describe_channel(self, channel_arn: str) -> ChannelInfo:
        return self._channel_info(self._channel(channel_arn))

    async def list_channels(
        self,
        *,
        stream_filter: Sequence[tuple[str, int | None]] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[ChannelInfo], str | None]:
        entries = sorted(self._channels().values(), key=lambda c: (c["created_ms"], c["id"]))
        for c in entries:
            self._tick_channel(c)
        entries = [c for c in entries if c["id"] in self._channels()]
        if stream_filter is not None:
            wanted = [(self._name_from_arn(arn), ts) for arn, ts in stream_filter]
            entries = [c for c in entries if any(_matches(c, n, ts) for n, ts in wanted)]
        if next_token is not None:
            try:
                created, cid = base64.urlsafe_b64decode(next_token.encode()).decode().split(":")
                after = (int(created), cid)
            except (ValueError, UnicodeDecodeError):
                raise InvalidArgumentException(f"Invalid NextToken: {next_token}") from None
            entries = [c for c in entries if (c["created_ms"], c["id"]) > after]
        limit = min(max_results or LIST_DEFAULT, LIST_DEFAULT)
        page = entries[:limit]
        token = None
        if len(entries) > limit:
            token = base64.urlsafe_b64encode(f"{page[-1]['created_ms']}:{page[-1]['id']}".encode()).decode()
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
        if c["status"] != "ACTIVE":
            raise ResourceInUseException(
                f"Channel {c['name']} under account {self.account} is not ACTIVE: {c['status']}."
            )
        given = "S3DestinationConfiguration" if s3 is not None else "S3TablesDestinationConfiguration"
        update = s3 if s3 is not None else s3_tables
        if update is not None:
            if (s3 is not None) != (c["dest_type"] == "S3") or (s3 is not None and s3_tables is not None):
                raise InvalidArgumentException(WRONG_UPDATE.format(name=c["name"], dest=c["dest_type"], given=given))
            c["dest"] = c["dest"] | update
        if logging_config is not None:
            c["logging"] = logging_config
        c["status"] = "UPDATING"
        c["status_until_ms"] = self.clock.now_ms() + int(self._delay_s("UPDATING") * 1000)
        self._store_channels()
        return self._channel_info(c)

    async def delete_channel(self, channel_arn: str) -> None:
        c = self._channel(channel_arn)
        if c["status"] == "DELETING":
            return
        c["status"] = "DELETING"
        c["status_until_ms"] = self.clock.now_ms() + int(self._delay_s("DELETING") * 1000)
        self._store_channels()

    def _refuse_queues(self, st: StreamState, what: str) -> None:
        # (documented: "A stream cannot be deleted while it has active channels"; the text is shardline's)
        if what.startswith("deleting") and any(
            c["stream_id"] == st.stream_id and c["status"] != "DELETING" for c in self._channels().values()
        ):
            raise ResourceInUseException(
                self._fmt("Stream {stream} under account {account} has channels. Delete them first.", st.name)
            )
        super()._refuse_queues(st, what)

    # ----------------------------------------------------------------- state
    def _channel(self, channel_arn: str) -> dict[str, Any]:
        prefix = f"arn:aws:kinesis:{self.settings.region}:{self.account}:channel/"
        cid = channel_arn[len(prefix) :] if channel_arn.startswith(prefix) else ""
        c = self._channels().get(cid)
        if c is not None:
            self._tick_channel(c)
        if c is None or cid not in self._channels():
            raise ResourceNotFoundException(f"Channel {channel_arn} not found.")
        return c

    def _tick_channel(self, c: dict[str, Any]) -> None:
        if c["status"] == "ACTIVE" or self.clock.now_ms() < c["status_until_ms"]:
            return
        if c["status"] == "DELETING":
            del self._channels()[c["id"]]
        else:
            c["status"] = "ACTIVE"
        self._store_channels()

    def _channel_info(self, c: dict[str, Any]) -> ChannelInfo:
        logging_config = c["logging"] or {"CloudWatchLogs": {"Enabled": False}}
        cw = logging_config["CloudWatchLogs"]
        if cw.get("Enabled"):  # (documented defaults of the log group and stream)
            cw = {"LogGroupName": f"/aws/kinesis/{c['name']}/{c['id']}", "LogStreamName": "DestinationDelivery"} | cw
        info = ChannelInfo(
            channel_id=c["id"],
            channel_arn=f"arn:aws:kinesis:{self.settings.region}:{self.account}:channel/{c['id']}",
            name=c["name"],
            status=c["status"],
            created_ms=c["created_ms"],
            role_arn=c["role"],
            stream_arn=self.stream_arn(c["stream"]),
            stream_created_ms=c["stream_created_ms"],
            record_configuration=c["record"],
            destination_type=c["dest_type"],
            destination=c["dest"],
            encryption=c["encryption"],
            logging={"CloudWatchLogs": cw},
        )
        return replace(info, tags=dict(c["tags"]))

    def _channels(self) -> dict[str, dict[str, Any]]:
        if self._channel_map is None:
            path = self.catalog.root / _FILE
            self._channel_map = read_sealed(path.read_bytes()).get("channels", {}) if path.exists() else {}
        return self._channel_map

    def _store_channels(self) -> None:
        try:
            atomic_write(self.catalog.root / _FILE, seal({"channels": self._channels()}))
        except OSError as exc:
            full = self._no_space(exc)
            if full is None:
                raise
            raise full from exc


def _matches(c: dict[str, Any], stream: str, created_ms: int | None) -> bool:
    return c["stream"] == stream and (created_ms is None or created_ms // 1000 == c["stream_created_ms"] // 1000)
