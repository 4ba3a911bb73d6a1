"""Every engine setting with its default. Each field says what it costs or what it guarantees."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["FsyncPolicy", "Settings"]

FsyncPolicy = Literal["always", "interval", "never"]


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("shardline-data"))
    region: str = "us-east-1"
    account_id: str = "000000000000"

    # Durability. always: a put returns only after its bytes are fsynced (concurrent puts share one fsync, and
    # readers never see a record before it is durable); interval: fsync every fsync_interval_ms, a crash loses at
    # most that window; never: the OS decides, a power loss may lose recent puts (a process kill loses nothing).
    fsync: FsyncPolicy = "always"
    fsync_interval_ms: int = 200

    # Write-ahead journal (storage/journal.py): every put is one journal write whatever the shards it touches;
    # records reach their shard's segment files in batches of one frame per shard. A shard's batch never spans more
    # than journal_batch_span_ms of arrival time, and staged records are capped at about journal_staged_bytes of
    # memory (the engine's top put rate fills it in about half a second). A checkpoint every journal_checkpoint_ms
    # writes what is staged, fsyncs the segments and bounds what recovery replays. Each frame costs a write of its
    # own, so with many busy shards larger batches are cheaper per record: a lower cap or span writes more, smaller
    # frames.
    journal_staged_bytes: int = 32 * 1024 * 1024
    journal_batch_span_ms: int = 1000
    journal_checkpoint_ms: int = 1000
    journal_file_bytes: int = 64 * 1024 * 1024

    # Storage layout. Larger segments mean fewer files; retention deletes whole segments, so a segment also rolls
    # after segment_max_age_s to keep the retention overshoot bounded.
    segment_bytes: int = 64 * 1024 * 1024
    segment_max_age_s: float = 3600.0
    index_interval_bytes: int = 64 * 1024
    open_read_files: int = 256  # bound on cached read descriptors across all shards

    # Kinesis behaviour.
    # How long a stream stays CREATING, UPDATING (a reshard, a mode or encryption change) or DELETING, and a consumer
    # CREATING or DELETING; None takes status_delay_s. While CREATING or DELETING a stream has no shards to use, and a
    # reshard shows its result only when UPDATING ends, as on AWS (where each takes seconds). 0 (the engine's default,
    # for embedded use and tests) makes every change at once; `shardline serve` and `up` default to 0.5 s.
    status_delay_s: float = 0.0
    creating_delay_s: float | None = None
    updating_delay_s: float | None = None
    deleting_delay_s: float | None = None
    iterator_ttl_ms: int = 300_000
    shard_limit: int = 500  # account-wide open shards (AWS default in the large regions)
    on_demand_stream_limit: int = 50
    on_demand_initial_shards: int = 4
    max_scaling_ops_per_day: int = 10
    max_mode_switches_per_day: int = 2
    max_record_bytes: int = 1024 * 1024  # partition key + data
    max_put_records_bytes: int = 5 * 1024 * 1024
    max_consumers_per_stream: int = 20

    # Throughput limits (off unless enforce_limits). Per open shard for PROVISIONED streams; per stream at AWS's
    # on-demand maxima for ON_DEMAND streams.
    enforce_limits: bool = False
    shard_write_bytes_per_s: int = 1024 * 1024
    shard_write_records_per_s: int = 1000
    shard_read_bytes_per_s: int = 2 * 1024 * 1024
    shard_read_calls_per_s: int = 5
    on_demand_write_bytes_per_s: int = 200 * 1024 * 1024
    on_demand_write_records_per_s: int = 200_000
    on_demand_read_bytes_per_s: int = 400 * 1024 * 1024

    # Enhanced fan-out (SubscribeToShard). A subscription ends after subscription_lifetime_s (AWS: 5 minutes; the
    # client resubscribes from its last ContinuationSequenceNumber). Under enforce_limits each consumer reads each
    # shard at subscription_bytes_per_s at most (AWS: 2 MiB/s); records past it are pushed later, not refused.
    subscription_lifetime_s: float = 300.0
    subscription_bytes_per_s: int = 2 * 1024 * 1024

    # Background work.
    retention_check_interval_s: float = 30.0

    def __post_init__(self) -> None:
        if self.fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be always, interval or never, not {self.fsync!r}")
        for name, least in _LEAST.items():
            if getattr(self, name) < least:
                raise ValueError(f"{name} {_AT_LEAST.get(least, f'must be at least {least}')}")
        if not 0 < self.subscription_lifetime_s <= 86_400:
            raise ValueError("subscription_lifetime_s must be between 0 and 86400 seconds")
        for name in ("status_delay_s", "creating_delay_s", "updating_delay_s", "deleting_delay_s"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 86_400:
                raise ValueError(f"{name} must be between 0 and 86400 seconds, not {value!r}")
        if not (self.account_id.isdigit() and len(self.account_id) == 12):
            raise ValueError(f"account_id must be 12 digits, not {self.account_id!r}")


# The least value of these settings, and how the error below it says so.
_LEAST = {
    "journal_staged_bytes": 0,
    "journal_batch_span_ms": 0,
    "journal_checkpoint_ms": 1,
    "journal_file_bytes": 4096,
    "segment_bytes": 4096,
    "index_interval_bytes": 1,
    "subscription_bytes_per_s": 1,
}
_AT_LEAST = {0: "must not be negative", 1: "must be positive"}
