"""Kinesis queues (engine/queues.py keeps them): create, describe, list, update, delete; receive, acknowledge,
change visibility; the same on dead-letter records, and restoring them."""

from __future__ import annotations

from typing import Any

from ...engine import Engine, EntryFailure, QueueDelivery, QueueInfo
from ..shapes import Timestamp
from ._registry import Params, Response, action, attached_actions, attached_out, stream_out


def _description(q: QueueInfo) -> Response:
    start: Response = {"Type": q.start_type}
    if q.start_ms is not None:
        start["Timestamp"] = Timestamp(q.start_ms)
    dead: Response = {"TargetType": "BUILT_IN" if q.dead_letter else "NONE"}
    if q.dead_letter:
        dead["MaxReceiveCount"] = q.max_receive_count
    return {
        **_head(q),
        "StreamConfigurationList": [{"StreamARN": q.stream_arn, "StartingPosition": start}],
        "QueueAttributes": {"VisibilityTimeoutSeconds": q.visibility_s, "DeadLetterConfiguration": dead},
    }


def _attributes(p: Params) -> dict[str, Any]:
    attrs = p.get("QueueAttributes") or {}
    dead = attrs.get("DeadLetterConfiguration") or {}
    return {
        "visibility_s": attrs.get("VisibilityTimeoutSeconds"),
        "dead_letter_target": dead.get("TargetType"),
        "max_receive_count": dead.get("MaxReceiveCount"),
    }


def _records(deliveries: list[QueueDelivery]) -> Response:
    out = []
    for d in deliveries:
        r = d.record
        out.append(
            {
                "ReceiptHandle": d.receipt_handle,
                "RecordId": r.sequence_number,
                "PartitionKey": r.partition_key,
                "Data": r.data,
                "ApproximateArrivalTimestamp": Timestamp(r.approximate_arrival_ms),
                "FirstReceiveTimestamp": Timestamp(d.first_receive_ms),
                "ReceiveCount": d.receive_count,
            }
        )
    return {"QueueRecords": out}


def _results(ok: list[str], failed: list[EntryFailure]) -> Response:
    return {
        "Successful": [{"ReceiptHandle": h} for h in ok],
        "Failed": [{"ReceiptHandle": h, "ErrorCode": code, "ErrorMessage": msg} for h, code, msg in failed],
    }


@action("CreateQueue")
async def create_queue(engine: Engine, p: Params) -> Response:
    streams = [
        (
            c["StreamARN"],
            (c.get("StartingPosition") or {}).get("Type", "LATEST"),
            (c.get("StartingPosition") or {}).get("Timestamp"),
        )
        for c in p["StreamConfigurationList"]
    ]
    q = await engine.create_queue(p["QueueName"], streams, tags=p.get("Tags"), **_attributes(p))
    return {"QueueDescription": _description(q)}


def _summary(q: QueueInfo) -> Response:
    return {**_head(q), "Streams": [stream_out(q.stream_arn, q.stream_created_ms)]}


def _head(q: QueueInfo) -> Response:
    return attached_out("Queue", q.name, q.queue_arn, q.status, q.created_ms)


@action("UpdateQueue")
async def update_queue(engine: Engine, p: Params) -> Response:
    q = await engine.update_queue(p["QueueARN"], **_attributes(p))
    return {"QueueDescription": _description(q)}


attached_actions("Queue", _description, _summary)


async def _receive(engine: Engine, p: Params, dead: bool) -> Response:
    got = await engine.receive_queue_records(
        p["QueueARN"],
        limit=p.get("Limit", 10),
        wait_s=p.get("WaitTimeSeconds", 9),
        visibility_s=p.get("VisibilityTimeoutSeconds"),
        dead_letter=dead,
    )
    return _records(got)


@action("ReceiveQueueRecords")
async def receive_queue_records(engine: Engine, p: Params) -> Response:
    return await _receive(engine, p, False)


@action("ReceiveDeadLetterQueueRecords")
async def receive_dead_letter_queue_records(engine: Engine, p: Params) -> Response:
    return await _receive(engine, p, True)


@action("AcknowledgeQueueRecords")
async def acknowledge_queue_records(engine: Engine, p: Params) -> Response:
    handles = [e["ReceiptHandle"] for e in p["Entries"]]
    return _results(*await engine.acknowledge_queue_records(p["QueueARN"], handles))


@action("AcknowledgeDeadLetterQueueRecords")
async def acknowledge_dead_letter_queue_records(engine: Engine, p: Params) -> Response:
    handles = [e["ReceiptHandle"] for e in p["Entries"]]
    return _results(*await engine.acknowledge_queue_records(p["QueueARN"], handles, dead_letter=True))


@action("UpdateQueueRecordsVisibility")
async def update_queue_records_visibility(engine: Engine, p: Params) -> Response:
    entries = [(e["ReceiptHandle"], e["VisibilityTimeoutSeconds"]) for e in p["Entries"]]
    return _results(*await engine.update_queue_records_visibility(p["QueueARN"], entries))


@action("UpdateDeadLetterQueueRecordsVisibility")
async def update_dead_letter_queue_records_visibility(engine: Engine, p: Params) -> Response:
    entries = [(e["ReceiptHandle"], e["VisibilityTimeoutSeconds"]) for e in p["Entries"]]
    return _results(*await engine.update_queue_records_visibility(p["QueueARN"], entries, dead_letter=True))


@action("RestoreDeadLetterQueueRecords")
async def restore_dead_letter_queue_records(engine: Engine, p: Params) -> Response:
    handles = [e["ReceiptHandle"] for e in p["Entries"]]
    return _results(*await engine.restore_dead_letter_queue_records(p["QueueARN"], handles))
