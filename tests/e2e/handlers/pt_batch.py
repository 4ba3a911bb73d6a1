"""A Powertools batch handler as its documentation writes it: BatchProcessor for Kinesis, partial responses."""

from _notes import fails_now, note
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
logger = Logger()
metrics = Metrics()


def record_handler(record: KinesisStreamRecord):
    item = record.kinesis.data_as_json()
    if fails_now(item):
        raise ValueError(f"cannot process item {item['id']}")
    metrics.add_metric(name="ItemsProcessed", unit=MetricUnit.Count, value=1)
    note(kind="processed", id=item["id"], seq=record.kinesis.sequence_number)


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context: LambdaContext):
    note(kind="batch", seqs=[r["kinesis"]["sequenceNumber"] for r in event["Records"]])
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
