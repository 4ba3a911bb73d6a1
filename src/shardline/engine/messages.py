"""AWS's error texts, as data. Tests pin them; the engine formats them here and nowhere else.

Where AWS is inconsistent (a missing final period, a doubled space) the text is kept as AWS sends it.
"""

from __future__ import annotations

import time

__all__ = ["java_date"]

STREAM_NOT_FOUND = "Stream {stream} under account {account} not found."
STREAM_EXISTS = "Stream {stream} under account {account} already exists."
# Not AWS texts (AWS has no such states): a damaged stream's metadata, and a full disk.
STREAM_DAMAGED = (
    "Stream {stream} under account {account} is unavailable: its metadata file {path} is damaged ({reason}). "
    "Its data is kept; the stream is served again once the file is repaired."
)
DISK_FULL = "No space left on the device of the data directory: writes are refused until space is freed ({error})."
STORAGE_FAILED = (
    "The data directory had a write error (fsync failed: {error}): writes are refused, reads go on; restart the server "
    "to recover."
)
# AWS quirk: no final period on the state messages.
NOT_ACTIVE = "Stream {stream} under account {account} not ACTIVE, instead in state {state}"
NOT_WRITABLE = "Stream {stream} under account {account} not ACTIVE or UPDATING, instead in state {state}"
SHARD_LIMIT = (
    "This request would exceed the shard limit for the account {account} in {region}. "
    "Current shard count for the account: {current}. Limit: {limit}. "
    "Number of additional shards that would have resulted from this request: {requested}. "
    "Refer to the AWS Service Limits page "
    "(http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) "
    "for current limits and how to request higher limits."
)
ON_DEMAND_STREAM_LIMIT = (
    "This request would exceed the on-demand stream limit for the account {account} in {region}. "
    "Current on-demand stream count for the account: {current}. Limit: {limit}."
)
COULD_NOT_FIND_SHARD = "Could not find shard {shard} in stream {stream} under account {account}."
SHARD_NOT_EXIST = "Shard {shard} in stream {stream} under account {account} does not exist"
RATE_EXCEEDED = "Rate exceeded for shard {shard} in stream {stream} under account {account}."
READ_RATE_EXCEEDED = "Rate exceeded for Shard - {account}/{stream}/{shard}"
EXPLICIT_HASH_KEY = (
    "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {value}"
)
ORDERING_SEQ = (
    "ExclusiveMinimumSequenceNumber {seq} used in PutRecord on stream {stream} under account {account} is invalid."
)
RECORDS_TOO_LARGE = "Records size exceeds 5 MB limit"
LARGE_RECORDS_TOO_LARGE = "Records size exceeds 10 MB limit"
LARGE_RECORDS_REQUEST_BYTES = 10 * 1024 * 1024
ORDERING_WITH_AUTO = (
    "SequenceNumberForOrdering is not supported for stream {stream} under account {account}: its record distribution "
    "strategy is AUTO."
)
RECORD_TOO_LARGE = (
    "Record size {size} bytes (partition key + data) exceeds the stream's maximum record size of {limit} bytes"
)
ITER_SEQ_WITH_TYPE = (
    "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
    "(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {type} and also a "
    "StartingSequenceNumber."
)
ITER_NO_SEQ = (
    "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
    "(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {type} and no "
    "StartingSequenceNumber."
)
ITER_BAD_SEQ = (
    "StartingSequenceNumber {seq} used in GetShardIterator on shard {shard} in stream {stream} "
    "under account {account} is invalid."
)
ITER_OTHER_SHARD = (
    "Invalid StartingSequenceNumber. It encodes {encoded}, while it was used in a call to a shard with {shard}"
)
ITER_OTHER_STREAM = (
    "StartingSequenceNumber {seq} used in GetShardIterator on shard {shard} in stream {stream} "
    "under account {account} is invalid because it did not come from this stream."
)
ITER_AFTER_MAX = (
    "Invalid SequenceNumber for ShardIteratorType AFTER_SEQUENCE_NUMBER, SequenceNumber has reached max possible "
    "value for the shard."
)
ITER_NO_TIMESTAMP = (
    "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
    "Current request has no timestamp parameter."
)
ITER_FUTURE_TIMESTAMP = (
    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. "
    "timestampInMillis: {ts}, currentTimestampInMillis: {now}"
)
INVALID_ITERATOR = "Invalid ShardIterator."
ITERATOR_EXPIRED = (
    "Iterator expired. The iterator was created at time {created} while right now it is {now} "
    "which is further in the future than the tolerated delay of {ttl} milliseconds."
)
SPLIT_KEY = (
    "NewStartingHashKey {key} used in SplitShard() on shard {shard} in stream {stream} under account {account} "
    "is not both greater than one plus the shard's StartingHashKey {start} and less than the shard's "
    "EndingHashKey {end}."
)
ALREADY_RESHARDED = (
    "Shard {shard} in stream {stream} under account {account} has already been merged or split, and thus is not "
    "eligible for merging or splitting."
)
NOT_ADJACENT = (
    "Shards {shard} and {adjacent} in stream {stream} under account {account} are not an adjacent pair of shards "
    "eligible for merging"
)
ON_DEMAND_RESHARD = "Request is invalid. Stream {stream} under account {account} is in On-Demand mode."
SCALE_LIMIT = (
    "Target shard count or number of open shards cannot be greater than {limit}. "
    "Current open shard count: {open}, Target shard count: {target}"
)
SCALE_UP_DOUBLE = (
    "UpdateShardCount cannot scale up over double your current open shard count. "
    "Current open shard count: {open}, Target shard count: {target}"
)
SCALE_DOWN_HALF = (
    "UpdateShardCount cannot scale down below half your current open shard count. "
    "Current open shard count: {open}, Target shard count: {target}"
)
SCALE_OPS = (
    "Exceeded the limit of {limit} UpdateShardCount operations in a rolling 24-hour period for stream {stream} "
    "under account {account}."
)
RETENTION_MIN = "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
RETENTION_MAX = (
    "Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is too long."
)
RETENTION_SHORTER = (
    "Requested retention period ({hours} hours) for stream {stream} can not be shorter than existing retention "
    "period ({current} hours). Use DecreaseRetentionPeriod API."
)
RETENTION_LONGER = (
    "Requested retention period ({hours} hours) for stream {stream} can not be longer than existing retention "
    "period ({current} hours). Use IncreaseRetentionPeriod API."
)
TAG_LIMIT = (
    "Failed to add tags to stream {stream} under account {account} because a given stream cannot have more than "
    "{limit} tags associated with it."
)
TAG_CHARS = (
    "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."
)
LIST_SHARDS_NEITHER = "Either NextToken or StreamName should be provided."
LIST_SHARDS_BOTH = "NextToken and StreamName cannot be provided together."
NEXT_TOKEN_INVALID = "Invalid NextToken."
NEXT_TOKEN_EXPIRED = "The timestamp of the NextToken has expired."
NAME_OR_ARN = "Either StreamName or StreamARN should be provided."
NAME_ARN_MISMATCH = "StreamName {name} and StreamARN {arn} do not refer to the same stream."
BAD_ARN = "Invalid StreamARN {arn}."
HAS_CONSUMERS = (
    "Stream {stream} under account {account} has registered consumers. Deregister them first, or set "
    "EnforceConsumerDeletion to true."
)
CONSUMER_EXISTS = "Consumer {consumer} under stream {stream} already exists for account {account}."
CONSUMER_NOT_FOUND = "Consumer {consumer} under stream {stream} not found for account {account}."
CONSUMER_LIMIT = "Stream {stream} under account {account} has reached the maximum of {limit} registered consumers."
CONSUMER_ARGS = "Either ConsumerARN or both StreamARN and ConsumerName should be provided."
# SubscribeToShard. AWS documents only the error codes; the two texts AWS is seen to send are kept as sent (AWS quirk:
# " , account" with its space before the comma), the others are ours and say the same things as GetShardIterator's.
SUBSCRIPTION_IN_USE = "Another active subscription exists for this consumer: {account}:{stream}:{shard}:{consumer}"
CONSUMER_NOT_ACTIVE = (
    "Consumer {consumer} with creation timestamp {created} under stream: {stream} , account {account} is not in "
    "ACTIVE status."
)
SUBSCRIBE_NO_SEQ = "StartingPosition of type {type} needs a SequenceNumber."
SUBSCRIBE_BAD_SEQ = (
    "StartingSequenceNumber {seq} used in SubscribeToShard on shard {shard} in stream {stream} under account "
    "{account} is invalid."
)
SUBSCRIBE_OTHER_STREAM = (
    "StartingSequenceNumber {seq} used in SubscribeToShard on shard {shard} in stream {stream} under account "
    "{account} is invalid because it did not come from this stream."
)
# What GetShardIterator and SubscribeToShard say of a starting sequence number: (missing, not one, of another stream)
ITER_SEQ_TEXTS = (ITER_NO_SEQ, ITER_BAD_SEQ, ITER_OTHER_STREAM)
SUBSCRIBE_SEQ_TEXTS = (SUBSCRIBE_NO_SEQ, SUBSCRIBE_BAD_SEQ, SUBSCRIBE_OTHER_STREAM)
MODE_SWITCH_LIMIT = (
    "Stream {stream} under account {account} has exceeded the limit of {limit} capacity mode switches in a rolling "
    "24-hour period."
)
SHARD_COUNT_REQUIRED = "ShardCount must be provided for streams in PROVISIONED mode."


def java_date(ms: int) -> str:
    """A time as Java's Date.toString() prints it in UTC, which is how AWS writes times in messages."""
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(ms / 1000))
