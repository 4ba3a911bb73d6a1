"""Data plane: PutRecord, PutRecords, GetShardIterator, GetRecords."""

from __future__ import annotations

from ...engine import Engine
from ...errors import DryRunOperationException
from ..shapes import RecordList
from ._registry import Params, Response, action, child_shards_out, stream_ref


async def _dry_run(engine: Engine, p: Params) -> None:
    """DryRun checks the request and the stream, then stops before any effect."""
    if p.get("DryRun"):
        if p.get("StreamName") is not None or p.get("StreamARN") is not None:
            await engine.describe_stream_summary(**stream_ref(p))
        raise DryRunOperationException("The request was rejected because the DryRun parameter was specified.")


@action("PutRecord")
async def put_record(engine: Engine, p: Params) -> Response:
    await _dry_run(engine, p)
    r = await engine.put_record(
        data=p["Data"],
        partition_key=p.get("PartitionKey"),  # (optional on AUTO distribution streams; the engine checks)
        explicit_hash_key=p.get("ExplicitHashKey"),
        sequence_number_for_ordering=p.get("SequenceNumberForOrdering"),
        **stream_ref(p),
    )
    return _encryption({"ShardId": r.shard_id, "SequenceNumber": r.sequence_number}, r.encryption_type)


@action("PutRecords")
async def put_records(engine: Engine, p: Params) -> Response:
    await _dry_run(engine, p)
    entries = [(e["Data"], e.get("PartitionKey"), e.get("ExplicitHashKey")) for e in p["Records"]]
    r = await engine.put_records(entries, **stream_ref(p))
    out = [
        {"SequenceNumber": e.sequence_number, "ShardId": e.shard_id}
        if e.error_code is None
        else {"ErrorCode": e.error_code, "ErrorMessage": e.error_message}
        for e in r.records
    ]
    return _encryption({"FailedRecordCount": r.failed_record_count, "Records": out}, r.encryption_type)


def _encryption(out: Response, encryption_type: str) -> Response:
    # AWS quirk: a put to an unencrypted stream leaves EncryptionType out rather than answering "NONE".
    if encryption_type != "NONE":
        out["EncryptionType"] = encryption_type
    return out


@action("GetShardIterator")
async def get_shard_iterator(engine: Engine, p: Params) -> Response:
    await _dry_run(engine, p)
    it = await engine.get_shard_iterator(
        shard_id=p["ShardId"],
        shard_iterator_type=p["ShardIteratorType"],
        starting_sequence_number=p.get("StartingSequenceNumber"),
        timestamp_ms=p.get("Timestamp"),
        **stream_ref(p),
    )
    return {"ShardIterator": it}


@action("GetRecords")
async def get_records(engine: Engine, p: Params) -> Response:
    await _dry_run(engine, p)
    r = await engine.get_records(p["ShardIterator"], limit=p.get("Limit"))
    out: Response = {"Records": RecordList(r.records), "MillisBehindLatest": r.millis_behind_latest}
    if r.next_shard_iterator is not None:
        out["NextShardIterator"] = r.next_shard_iterator
    if r.child_shards is not None:
        out["ChildShards"] = child_shards_out(r.child_shards)
    return out
