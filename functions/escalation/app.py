"""Escalation: SLA state changes from the ConnectorsTable stream (STATE rows only) become notifications.

Powertools batch processing reports partial failures, so a record that fails is retried (and finally sent to the
OnFailure queue) while the records behind it are still processed.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.escalation.wiring import stream_consumer
from connector_sla.timeutil import utcnow

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
consumer = stream_consumer()


def record_handler(record: DynamoDBRecord) -> None:
    outcomes = consumer.handle(record.raw_event, now=utcnow())
    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"notification_{outcome}", unit=MetricUnit.Count, value=count)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    records = event.get("Records") or []
    consumer.begin_batch(records, now=utcnow(), time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
