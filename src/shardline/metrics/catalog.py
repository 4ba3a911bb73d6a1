"""Every metric shardline exports: Prometheus name, type, base unit, meaning, and the CloudWatch metric it stands for.

Names follow the Prometheus conventions: one ``shardline_`` prefix, base units in the name (``_seconds``,
``_bytes``), counters end in ``_total``. CloudWatch's millisecond metrics become seconds here.

Stream metrics have stream-level series, and per-shard series in their own families (``shardline_shard_*``) rather
than a ``shard`` label on the stream families, so ``sum by (stream)`` over a stream family never counts a record
twice; this mirrors CloudWatch, where shard-level metrics are a separate dimension set (StreamName, ShardId).
Which shards get series: every shard of a stream whose enhanced monitoring (EnableEnhancedMonitoring) lists the
metric, and every shard of a stream with at most ``SHARD_SERIES_LIMIT`` live shards (cheap on one machine).
Mapping gauges (iterator age, lag, checkpoint age) are per shard being processed, with a ``shard`` label: a mapping
works on a handful of shards at a time, and per-shard values are what tells a stuck shard from an idle one.

Handler EMF metrics become ``shardline_custom_<metric>[_<unit>]`` summaries (``_sum`` and ``_count``), labelled
with the EMF namespace, the function that printed them and the dimensions of each dimension set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CUSTOM_PREFIX", "METRICS", "SHARD_SERIES_LIMIT", "Metric", "help_text"]

Kind = Literal["counter", "gauge", "histogram", "summary"]

SHARD_SERIES_LIMIT = 16
CUSTOM_PREFIX = "shardline_custom_"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: Kind
    unit: str  # base unit: seconds, bytes, records, requests, invocations, shards, 1 (state flags), ...
    help: str
    cloudwatch: str  # the CloudWatch metric (namespace and name, statistic) or "n/a" with why
    labels: tuple[str, ...] = ()


_STREAM = ("stream",)
_SHARD = ("stream", "shard")
_FUNCTION = ("function",)
_ESM = ("mapping", "function", "stream")
_ESM_SHARD = ("mapping", "function", "stream", "shard")

_ALL = [
    # ---------------------------------------------------------------- streams (AWS/Kinesis, dimension StreamName)
    Metric(
        "shardline_stream_incoming_records_total",
        "counter",
        "records",
        "Records written to the stream (PutRecord and PutRecords).",
        "AWS/Kinesis IncomingRecords (Sum)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_incoming_bytes_total",
        "counter",
        "bytes",
        "Bytes written to the stream (data plus partition key).",
        "AWS/Kinesis IncomingBytes (Sum)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_put_requests_total",
        "counter",
        "requests",
        "PutRecord and PutRecords calls by outcome: success, throttled (PutRecord only) or error.",
        "AWS/Kinesis PutRecord.Success, PutRecords.Success (Sum)",
        ("stream", "api", "outcome"),
    ),
    Metric(
        "shardline_stream_put_records_failed_total",
        "counter",
        "records",
        "Records a successful PutRecords call rejected, by reason: throttled, internal, or any when the engine "
        "does not tell them apart.",
        "AWS/Kinesis PutRecords.FailedRecords and PutRecords.ThrottledRecords (Sum)",
        ("stream", "reason"),
    ),
    Metric(
        "shardline_stream_write_throttled_total",
        "counter",
        "records",
        "Records rejected by write throttling (per-shard or on-demand limits, with --enforce-limits).",
        "AWS/Kinesis WriteProvisionedThroughputExceeded (Sum)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_read_throttled_total",
        "counter",
        "requests",
        "GetRecords calls rejected by read throttling.",
        "AWS/Kinesis ReadProvisionedThroughputExceeded (Sum)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_outgoing_records_total",
        "counter",
        "records",
        "Records returned by GetRecords.",
        "AWS/Kinesis GetRecords.Records (Sum)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_outgoing_bytes_total",
        "counter",
        "bytes",
        "Bytes returned by GetRecords.",
        "AWS/Kinesis GetRecords.Bytes (Sum)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_get_records_requests_total",
        "counter",
        "requests",
        "GetRecords calls by outcome: success or error.",
        "AWS/Kinesis GetRecords.Success (Sum)",
        ("stream", "outcome"),
    ),
    Metric(
        "shardline_stream_put_latency_seconds",
        "histogram",
        "seconds",
        "Time to serve a PutRecord or PutRecords call, including the fsync.",
        "AWS/Kinesis PutRecord.Latency, PutRecords.Latency (milliseconds there)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_get_records_latency_seconds",
        "histogram",
        "seconds",
        "Time to serve a GetRecords call.",
        "AWS/Kinesis GetRecords.Latency (milliseconds there)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_iterator_age_seconds",
        "gauge",
        "seconds",
        "How far the latest GetRecords on any shard was behind the tip (maximum over shards read in the last "
        "minute); no value while nobody reads.",
        "AWS/Kinesis GetRecords.IteratorAgeMilliseconds (Maximum)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_shards",
        "gauge",
        "shards",
        "Shards by state: open, or closed by resharding and still readable until retention.",
        "n/a (DescribeStreamSummary OpenShardCount)",
        ("stream", "state"),
    ),
    Metric(
        "shardline_stream_retention_seconds",
        "gauge",
        "seconds",
        "The stream's retention period; iterator-age alarms compare against it.",
        "n/a (DescribeStream RetentionPeriodHours)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_last_incoming_record_timestamp_seconds",
        "gauge",
        "seconds",
        "Arrival time (Unix seconds) of the newest record in the stream; shows abandoned streams.",
        "n/a (derived from IncomingRecords)",
        _STREAM,
    ),
    Metric(
        "shardline_stream_info",
        "gauge",
        "1",
        "Always 1; the labels carry the stream's status and capacity mode.",
        "n/a (DescribeStreamSummary)",
        ("stream", "status", "mode"),
    ),
    # ---------------------------------------------------------------- shards (enhanced shard-level metrics)
    Metric(
        "shardline_shard_incoming_records_total",
        "counter",
        "records",
        "Records written to the shard.",
        "AWS/Kinesis IncomingRecords, dimensions StreamName+ShardId (Sum)",
        _SHARD,
    ),
    Metric(
        "shardline_shard_incoming_bytes_total",
        "counter",
        "bytes",
        "Bytes written to the shard.",
        "AWS/Kinesis IncomingBytes, dimensions StreamName+ShardId (Sum)",
        _SHARD,
    ),
    Metric(
        "shardline_shard_outgoing_records_total",
        "counter",
        "records",
        "Records read from the shard by GetRecords.",
        "AWS/Kinesis OutgoingRecords, dimensions StreamName+ShardId (Sum)",
        _SHARD,
    ),
    Metric(
        "shardline_shard_outgoing_bytes_total",
        "counter",
        "bytes",
        "Bytes read from the shard by GetRecords.",
        "AWS/Kinesis OutgoingBytes, dimensions StreamName+ShardId (Sum)",
        _SHARD,
    ),
    Metric(
        "shardline_shard_write_throttled_total",
        "counter",
        "records",
        "Records rejected by the shard's write limits.",
        "AWS/Kinesis WriteProvisionedThroughputExceeded, dimensions StreamName+ShardId (Sum)",
        _SHARD,
    ),
    Metric(
        "shardline_shard_read_throttled_total",
        "counter",
        "requests",
        "GetRecords calls rejected by the shard's read limits.",
        "AWS/Kinesis ReadProvisionedThroughputExceeded, dimensions StreamName+ShardId (Sum)",
        _SHARD,
    ),
    Metric(
        "shardline_shard_iterator_age_seconds",
        "gauge",
        "seconds",
        "How far the latest GetRecords on the shard was behind its tip; no value when unread for a minute.",
        "AWS/Kinesis IteratorAgeMilliseconds, dimensions StreamName+ShardId (Maximum)",
        _SHARD,
    ),
    # ---------------------------------------------------------------- functions (AWS/Lambda, FunctionName)
    Metric(
        "shardline_function_invocations_total",
        "counter",
        "invocations",
        "Invocations by outcome: success, error (function error), timeout, or throttled (did not run).",
        "AWS/Lambda Invocations = success+error+timeout, Errors = error+timeout, Throttles = throttled (Sum)",
        ("function", "outcome"),
    ),
    Metric(
        "shardline_function_duration_seconds",
        "histogram",
        "seconds",
        "Time spent in the handler per invocation.",
        "AWS/Lambda Duration (milliseconds there)",
        _FUNCTION,
    ),
    Metric(
        "shardline_function_init_duration_seconds",
        "histogram",
        "seconds",
        "Time to start an execution environment and import the handler, per cold start.",
        "Lambda REPORT line Init Duration / Lambda Insights init_duration (milliseconds there)",
        _FUNCTION,
    ),
    Metric(
        "shardline_function_cold_starts_total",
        "counter",
        "invocations",
        "Invocations that started a new execution environment.",
        "n/a (Powertools ColdStart metric, Lambda Insights)",
        _FUNCTION,
    ),
    Metric(
        "shardline_function_concurrent_executions",
        "gauge",
        "invocations",
        "Invocations running now.",
        "AWS/Lambda ConcurrentExecutions (Maximum)",
        _FUNCTION,
    ),
    Metric(
        "shardline_function_concurrency_limit",
        "gauge",
        "invocations",
        "Most invocations that may run at once (reserved concurrency, or the pool's limit).",
        "n/a (GetFunctionConcurrency ReservedConcurrentExecutions)",
        _FUNCTION,
    ),
    # ---------------------------------------------------------------- event source mappings
    Metric(
        "shardline_esm_iterator_age_seconds",
        "gauge",
        "seconds",
        "Per shard being processed: age of the last record of the latest invoked batch, 0 once the shard is caught "
        "up and has settled what it read (a batch still being retried keeps its age). Take the maximum over shards "
        "for the mapping.",
        "AWS/Lambda IteratorAge (Maximum)",
        _ESM_SHARD,
    ),
    Metric(
        "shardline_esm_behind_latest_seconds",
        "gauge",
        "seconds",
        "Per shard being processed: MillisBehindLatest of the mapping's latest GetRecords.",
        "n/a (GetRecords MillisBehindLatest seen by the poller)",
        _ESM_SHARD,
    ),
    Metric(
        "shardline_esm_lag_records",
        "gauge",
        "records",
        "Per shard being processed: records between the checkpoint and the tip (offset lag). Sum over shards for "
        "the mapping.",
        "n/a (like OffsetLag, which Lambda emits for Kafka only)",
        _ESM_SHARD,
    ),
    Metric(
        "shardline_esm_checkpoint_age_seconds",
        "gauge",
        "seconds",
        "Per shard being processed: time since its checkpoint last advanced (or since processing started). With a "
        "lag above 0 a growing value is a stuck batch (poison pill).",
        "n/a",
        _ESM_SHARD,
    ),
    Metric(
        "shardline_esm_polled_records_total",
        "counter",
        "records",
        "Records read from the stream by the mapping.",
        "AWS/Lambda PolledEventCount (Sum)",
        _ESM,
    ),
    Metric(
        "shardline_esm_filtered_out_records_total",
        "counter",
        "records",
        "Records the filter criteria dropped before invocation.",
        "AWS/Lambda FilteredOutEventCount (Sum)",
        _ESM,
    ),
    Metric(
        "shardline_esm_invoked_records_total",
        "counter",
        "records",
        "Records sent to the function, retries included.",
        "AWS/Lambda InvokedEventCount (Sum)",
        _ESM,
    ),
    Metric(
        "shardline_esm_failed_invoke_records_total",
        "counter",
        "records",
        "Records in invocations that failed (function error, timeout, or reported as batch item failures).",
        "AWS/Lambda FailedInvokeEventCount (Sum)",
        _ESM,
    ),
    Metric(
        "shardline_esm_invocations_total",
        "counter",
        "invocations",
        "The mapping's invocations by outcome: success (including partial batch responses), error, or throttled.",
        "AWS/Lambda Invocations, Errors, Throttles for the mapping's function (Sum)",
        ("mapping", "function", "stream", "outcome"),
    ),
    Metric(
        "shardline_esm_dropped_records_total",
        "counter",
        "records",
        "Records given up on (retries exhausted or maximum record age) and not delivered to an on-failure "
        "destination: lost.",
        "AWS/Lambda DroppedEventCount (Sum)",
        _ESM,
    ),
    Metric(
        "shardline_esm_on_failure_delivered_records_total",
        "counter",
        "records",
        "Records given up on whose batch description reached the on-failure destination.",
        "AWS/Lambda OnFailureDestinationDeliveredEventCount (Sum)",
        _ESM,
    ),
    Metric(
        "shardline_esm_on_failure_delivery_errors_total",
        "counter",
        "requests",
        "Failed attempts to store an on-failure record at the destination (each is retried until it is stored).",
        "AWS/Lambda DestinationDeliveryFailures (Sum)",
        _ESM,
    ),
    Metric(
        "shardline_esm_on_failure_pending_records",
        "gauge",
        "records",
        "Records given up on whose on-failure record the destination has not accepted yet. Their shard waits, with "
        "its checkpoint before them, until it does: above 0 for long, the destination is down.",
        "n/a",
        _ESM,
    ),
    Metric(
        "shardline_esm_batch_size_records",
        "histogram",
        "records",
        "Records per invocation.",
        "n/a (InvokedEventCount / Invocations on average)",
        _ESM,
    ),
    Metric(
        "shardline_esm_state",
        "gauge",
        "1",
        "1 for the mapping's current state (Creating, Enabled, Disabled, ...), 0 for the others.",
        "n/a (GetEventSourceMapping State)",
        ("mapping", "function", "stream", "state"),
    ),
    Metric(
        "shardline_esm_status",
        "gauge",
        "1",
        "1 for the mapping's health: ok, stall (a shard's checkpoint has not moved for a minute while records wait) "
        "or stop (not running while records wait).",
        "n/a (Burrow-style consumer status)",
        ("mapping", "function", "stream", "status"),
    ),
    Metric(
        "shardline_esm_shards",
        "gauge",
        "shards",
        "Shards the mapping is processing now (active) and has finished (closed shards read to the end).",
        "n/a",
        ("mapping", "function", "stream", "state"),
    ),
    # ---------------------------------------------------------------- storage (the engine's journal, fsyncs, state)
    Metric(
        "shardline_journal_frames_total",
        "counter",
        "frames",
        "Put requests written to the write-ahead journal (one frame each, however many shards they touch).",
        "n/a (storage internals)",
    ),
    Metric(
        "shardline_journal_checkpoints_total",
        "counter",
        "checkpoints",
        "Journal checkpoints: staged records written to their shards, segments fsynced, position recorded.",
        "n/a (storage internals)",
    ),
    Metric(
        "shardline_journal_staged_bytes",
        "gauge",
        "bytes",
        "Memory held by records in the journal that have not reached their shard's segment files yet (about).",
        "n/a (storage internals)",
    ),
    Metric(
        "shardline_journal_unreplayed_bytes",
        "gauge",
        "bytes",
        "Journal bytes written since the last checkpoint: what recovery would replay after a crash now.",
        "n/a (storage internals)",
    ),
    Metric(
        "shardline_journal_replayed_records",
        "gauge",
        "records",
        "Records the last open replayed from the journal into their shards (nonzero after an unclean stop).",
        "n/a (storage internals)",
    ),
    Metric(
        "shardline_storage_fsync_rounds_total",
        "counter",
        "rounds",
        "Group-commit rounds under fsync=always: each makes every put queued before it durable with one fsync.",
        "n/a (storage internals)",
    ),
    Metric(
        "shardline_storage_state",
        "gauge",
        "1",
        "1 for the data directory's current state, 0 for the others: ok; disk_full, the last write failed for want "
        "of space (writes resume once space is freed); failed, an fsync failed (writes refused until a restart).",
        "n/a (storage internals)",
        ("state",),
    ),
    # ---------------------------------------------------------------- alarms and the monitor itself
    Metric(
        "shardline_alarm_state",
        "gauge",
        "1",
        "1 for the alarm's current state (OK, ALARM, INSUFFICIENT_DATA), 0 for the others.",
        "n/a (DescribeAlarms StateValue)",
        ("alarm", "state"),
    ),
    Metric(
        "shardline_metrics_series",
        "gauge",
        "series",
        "Time series kept by the metrics store (bounded).",
        "n/a",
    ),
    Metric(
        "shardline_metrics_sample_seconds_total",
        "counter",
        "seconds",
        "Time the monitor spent sampling and storing metrics (its own cost).",
        "n/a",
    ),
    Metric(
        "shardline_metrics_emf_lines_total",
        "counter",
        "lines",
        "Embedded Metric Format lines found in handler output, by result: ok or invalid.",
        "n/a (CloudWatch Logs EMF extraction)",
        ("result",),
    ),
]

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def help_text(m: Metric) -> str:
    return f"{m.help} CloudWatch: {m.cloudwatch}."
