"""A Powertools parser handler: the event is validated against KinesisDataStreamModel before the handler runs."""

import json

from _notes import fails_now, note
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel
from aws_lambda_powertools.utilities.typing import LambdaContext


@event_parser(model=KinesisDataStreamModel)
def handler(event: KinesisDataStreamModel, context: LambdaContext):
    note(kind="batch", seqs=[r.kinesis.sequenceNumber for r in event.Records])
    failures = []
    for record in event.Records:
        item = json.loads(record.kinesis.data)
        if fails_now(item):
            failures.append({"itemIdentifier": record.kinesis.sequenceNumber})
            continue
        note(
            kind="processed",
            id=item["id"],
            seq=record.kinesis.sequenceNumber,
            partition_key=record.kinesis.partitionKey,
            arrival=record.kinesis.approximateArrivalTimestamp,
            event_id=record.eventID,
            source_arn=record.eventSourceARN,
            role=record.invokeIdentityArn,
            region=record.awsRegion,
        )
    return {"batchItemFailures": failures}
