"""Exactly once, nothing lost: partial batch failures are reported, retried records send nothing twice, and a
record that always fails ends in the OnFailure queue while the records behind it are processed."""

from __future__ import annotations

import dataclasses
import json
import time

from botocore.exceptions import ClientError

from connector_sla.storage.aws import client
from devstack.functions import InvocationError
from devstack.streams import StreamPump
from tests.integration.test_escalation_support import context, scenario

__all__ = ["scenario"]


def refuse_notifications_of(connector_id):
    """DynamoDB refusing every notification write of one connector (a poison record for the function)."""

    def refuse(params, **_):
        item = params.get("Item") or {}
        if item.get("connector_id", {}).get("S") == connector_id:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "PutItem")

    client("dynamodb").meta.events.register("provide-client-params.dynamodb.PutItem", refuse)
    return refuse


def poison_sequence(scenario, connector_id):
    records = scenario.new_stream_records()
    return next(r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == connector_id)


def test_a_failing_record_is_reported_and_its_retry_sends_nothing_twice(scenario):
    # Given three connectors opening incidents, the middle one's notifications failing to be written
    incidents = [scenario.open_incident(name) for name in ("a-db", "poison-db", "c-db")]
    records = scenario.new_stream_records()
    hook = refuse_notifications_of("poison-db")

    # When the batch is processed
    response = scenario.deliver_stream(records)

    # Then only the poison record is reported failed, and the others were paged
    sequence = {r["dynamodb"]["NewImage"]["pk"]["S"]: r["dynamodb"]["SequenceNumber"] for r in records}
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence["poison-db"]}]}
    assert len(scenario.provider.received("webhook")) == 2
    # When the cause is gone and Lambda retries from the failed record to the end of the batch
    client("dynamodb").meta.events.unregister("provide-client-params.dynamodb.PutItem", hook)
    retried = records[[r["dynamodb"]["SequenceNumber"] for r in records].index(sequence["poison-db"]) :]
    response = scenario.deliver_stream(retried)
    # Then the poison record is paged now, and the record after it was not paged twice
    assert response == {"batchItemFailures": []}
    pages = [w["payload"]["incident_id"] for w in scenario.provider.received("webhook")]
    assert sorted(pages) == sorted(incidents)


def test_a_record_that_always_fails_goes_to_the_failure_queue_and_the_rest_are_processed(scenario):
    # Given the real stream mapping (retries, bisection, OnFailure queue) feeding the escalation handler
    refuse_notifications_of("poison-db")
    spec = scenario.aws.functions["EscalationFunction"]
    mapping = dataclasses.replace(spec.streams[0], batching_window=0.2, max_retries=2)
    logs: list[str] = []

    def invoke(_logical_id, event):
        try:
            return scenario.escalation.lambda_handler(event, context(scenario.aws, "EscalationFunction"))
        except Exception as error:
            raise InvocationError({"errorMessage": str(error)}) from error

    pump = StreamPump(
        mapping,
        spec,
        scenario.aws.client("dynamodbstreams"),
        scenario.aws.client("sqs"),
        invoke,
        logs.append,
        region="us-east-1",
        table_label="ConnectorsTable",
    )

    # When a poison record sits between healthy ones on the stream
    incidents = [scenario.open_incident(name) for name in ("a-db", "poison-db", "c-db")]
    pump.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not pump.failed_to_queue:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        pump.stop()

    # Then the poison record was reported to the OnFailure queue after its retries
    sqs = scenario.aws.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=scenario.aws.name("EscalationFailureQueue").rsplit("/", 1)[-1])["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1
    batch_info = json.loads(messages[0]["Body"])["DDBStreamBatchInfo"]
    assert batch_info["startSequenceNumber"] == poison_sequence(scenario, "poison-db")
    # And the records behind it were processed: both healthy incidents were paged exactly once
    pages = sorted(w["payload"]["incident_id"] for w in scenario.provider.received("webhook"))
    assert pages == sorted([incidents[0], incidents[2]])
