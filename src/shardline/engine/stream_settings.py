"""Per-stream settings of the current Kinesis model: the maximum record size, the warm throughput and the record
distribution strategy (UpdateMaxRecordSize, UpdateStreamWarmThroughput, UpdateStreamRecordDistributionStrategy, and
the same fields of CreateStream).

- The maximum record size (1024..10240 KiB, default 1024) has its local effect on the put path (engine/data.py): a
  record whose partition key and data exceed it is refused, and a stream allowing records over 1 MiB takes PutRecords
  requests of up to 10 MiB. It takes effect at once, as on AWS.
- The warm throughput is what AWS keeps ready for an on-demand stream of an account with the minimum throughput
  billing commitment; here nothing needs warming, so it is stored and answered: the stream is UPDATING for
  ``updating_delay_s`` after a change, and ``CurrentMiBps`` reaches ``TargetMiBps`` when it is ACTIVE again.
- The record distribution strategy (on-demand streams only): ``AUTO`` spreads records over the open shards in turn,
  ignoring partition keys and explicit hash keys (engine/data.py), ``USER_PARTITION_KEY`` (the default) routes by key.

Everything is part of the stream's metadata (streams.py), so it survives a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgumentException, LimitExceededException, validation_error
from ..models import StreamMode, StreamStatus
from .account import Account

__all__ = [
    "AUTO",
    "DISTRIBUTION_STRATEGIES",
    "MAX_RECORD_KIB",
    "MAX_WARM_MIBPS",
    "MIN_RECORD_KIB",
    "USER_PARTITION_KEY",
    "StreamSettings",
    "WarmThroughput",
    "check_max_record_kib",
    "check_strategy",
]

MIN_RECORD_KIB = 1024
MAX_RECORD_KIB = 10240
MAX_WARM_MIBPS = 10240  # "Scale to more than 10 GiBps for an on-demand stream" is over AWS's default limit
AUTO = "AUTO"
USER_PARTITION_KEY = "USER_PARTITION_KEY"
DISTRIBUTION_STRATEGIES = (USER_PARTITION_KEY, AUTO)
_COMMITTED = ("ENABLED", "ENABLED_UNTIL_EARLIEST_ALLOWED_END")

WARM_NOT_ON_DEMAND = (
    "Warm throughput is only supported for streams in ON_DEMAND mode. Stream {stream} under account {account} is in "
    "PROVISIONED mode."
)
WARM_NO_COMMITMENT = (
    "Warm throughput requires the MinimumThroughputBillingCommitment to be enabled for account {account}."
)
WARM_LIMIT = (
    "Requested warm throughput of {mibps} MiBps for stream {stream} under account {account} exceeds the limit of "
    "{limit} MiBps."
)
AUTO_NOT_ON_DEMAND = (
    "Record distribution strategy AUTO is only supported for streams in ON_DEMAND mode. Stream {stream} under account "
    "{account} is in PROVISIONED mode."
)


@dataclass(frozen=True, slots=True)
class WarmThroughput:
    stream_arn: str
    stream_name: str
    target_mibps: int
    current_mibps: int


def check_max_record_kib(kib: object, member: str = "maxRecordSizeInKiB") -> int:
    """The maximum record size, or the ValidationException AWS answers out of 1024..10240."""
    if type(kib) is not int or kib < MIN_RECORD_KIB:
        raise validation_error([(kib, member, f"Member must have value greater than or equal to {MIN_RECORD_KIB}")])
    if kib > MAX_RECORD_KIB:
        raise validation_error([(kib, member, f"Member must have value less than or equal to {MAX_RECORD_KIB}")])
    return kib


def check_strategy(strategy: object) -> None:
    if strategy not in DISTRIBUTION_STRATEGIES:
        raise validation_error(
            [
                (
                    strategy,
                    "recordDistributionStrategy",
                    f"Member must satisfy enum value set: [{', '.join(DISTRIBUTION_STRATEGIES)}]",
                )
            ]
        )


class StreamSettings(Account):
    # ----------------------------------------------------------------- maximum record size
    async def update_max_record_size(self, max_record_size_kib: int, *, stream_arn: str | None = None) -> None:
        kib = check_max_record_kib(max_record_size_kib)
        st = self._stream(None, stream_arn)
        self._require_active(st)
        with self._change(st):
            st.max_record_size_kib = kib

    # ----------------------------------------------------------------- warm throughput
    async def update_stream_warm_throughput(
        self, warm_throughput_mibps: int, *, stream_name: str | None = None, stream_arn: str | None = None
    ) -> WarmThroughput:
        st = self._stream(stream_name, stream_arn)
        self._check_warm(st.name, warm_throughput_mibps, st.mode)
        self._require_active(st)
        with self._change(st):
            st.warm_current_mibps = st.warm_current(self.clock.now_ms())
            st.warm_target_mibps = warm_throughput_mibps
            self._set_status(st, StreamStatus.UPDATING)
            st.warm_until_ms = st.status_until_ms
        self._tick()
        return WarmThroughput(st.arn, st.name, warm_throughput_mibps, st.warm_current(self.clock.now_ms()) or 0)

    def _check_warm(self, name: str, mibps: int, mode: StreamMode) -> None:
        if type(mibps) is not int or mibps < 0:
            raise validation_error(
                [(mibps, "warmThroughputMiBps", "Member must have value greater than or equal to 0")]
            )
        if mode is not StreamMode.ON_DEMAND:
            raise InvalidArgumentException(self._fmt(WARM_NOT_ON_DEMAND, name))
        if self._commitment()["Status"] not in _COMMITTED:
            raise InvalidArgumentException(self._fmt(WARM_NO_COMMITMENT, name))
        if mibps > MAX_WARM_MIBPS:
            raise LimitExceededException(self._fmt(WARM_LIMIT, name, mibps=mibps, limit=MAX_WARM_MIBPS))

    # ----------------------------------------------------------------- record distribution
    async def update_stream_record_distribution_strategy(self, stream_arn: str, strategy: str) -> None:
        check_strategy(strategy)
        st = self._stream(None, stream_arn)
        self._check_distribution(st.name, strategy, st.mode)
        self._require_shards(st)
        with self._change(st):
            st.distribution = strategy

    def _check_distribution(self, stream: str, strategy: str, mode: StreamMode) -> None:
        if strategy == AUTO and mode is not StreamMode.ON_DEMAND:
            raise InvalidArgumentException(self._fmt(AUTO_NOT_ON_DEMAND, stream))

    # ----------------------------------------------------------------- CreateStream's fields
    def _check_new_stream(
        self, name: str, mode: StreamMode, max_record_kib: int | None, warm_mibps: int | None, strategy: str | None
    ) -> None:
        if max_record_kib is not None:
            check_max_record_kib(max_record_kib)
        if strategy is not None:
            check_strategy(strategy)
            self._check_distribution(name, strategy, mode)
        if warm_mibps is not None:
            self._check_warm(name, warm_mibps, mode)
