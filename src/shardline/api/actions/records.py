"""Data plane: PutRecord, PutRecords, GetShardIterator, GetRecords."""

from __future__ import annotations

from ...engine import Engine
from ...models import PutRecordsRequestEntry
from ..shapes import Timestamp
from ._registry import Params, Response, action, stream_ref


@action("PutRecord")
async def put_record(engine: Engine, p: Params) -> Response:
    r = await engine.put_record(
        data=p["Data"],
        partition_key=p["PartitionKey"],
        explicit_hash_key=p.get("ExplicitHashKey"),
        sequence_number_for_ordering=p.get("SequenceNumberForOrdering"),
        **stream_ref(p),
    )
    return {"ShardId": r.shard_id, "SequenceNumber": r.sequence_number, "EncryptionType": r.encryption_type}


@action("PutRecords")
async def put_records(engine: Engine, p: Params) -> Response:
    entries = [PutRecordsRequestEntry(e["Data"], e["PartitionKey"], e.get("ExplicitHashKey")) for e in p["Records"]]
    r = await engine.put_records(entries, **stream_ref(p))
    out = [
        {"SequenceNumber": e.sequence_number, "ShardId": e.shard_id}
        if e.error_code is None
        else {"ErrorCode": e.error_code, "ErrorMessage": e.error_message}
        for e in r.records
    ]
    return {"FailedRecordCount": r.failed_record_count, "Records": out, "EncryptionType": r.encryption_type}


@action("GetShardIterator")
async def get_shard_iterator(engine: Engine, p: Params) -> Response:
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
    r = await engine.get_records(p["ShardIterator"], limit=p.get("Limit"))
    records = []
    for rec in r.records:
        item: Response = {
            "SequenceNumber": rec.sequence_number,
            "ApproximateArrivalTimestamp": Timestamp(rec.approximate_arrival_ms),
            "Data": rec.data,
            "PartitionKey": rec.partition_key,
        }
        if rec.encryption_type:
            item["EncryptionType"] = rec.encryption_type
        records.append(item)
    out: Response = {"Records": records, "MillisBehindLatest": r.millis_behind_latest}
    if r.next_shard_iterator is not None:
        out["NextShardIterator"] = r.next_shard_iterator
    if r.child_shards is not None:
        out["ChildShards"] = [
            {
                "ShardId": c.shard_id,
                "ParentShards": list(c.parent_shards),
                "HashKeyRange": {
                    "StartingHashKey": str(c.hash_key_range.starting_hash_key),
                    "EndingHashKey": str(c.hash_key_range.ending_hash_key),
                },
            }
            for c in r.child_shards
        ]
    return out
