"""The local stream pump honours the mapping's filter, batching, partial failures, bisection and retry limit."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

from devstack.functions import InvocationError
from devstack.streams import StreamPump


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def put_rows(aws, *rows):
    dynamodb = aws.client("dynamodb")
    for pk, sk in rows:
        dynamodb.put_item(TableName=aws.name("ConnectorsTable"), Item={"pk": {"S": pk}, "sk": {"S": sk}})


def start_pump(aws, invoke, **overrides):
    spec = aws.functions["EscalationFunction"]
    mapping = dataclasses.replace(spec.streams[0], batching_window=0.3, **overrides)
    logs = []
    pump = StreamPump(
        mapping,
        spec,
        aws.client("dynamodbstreams"),
        aws.client("sqs"),
        invoke,
        logs.append,
        region="us-east-1",
        table_label="ConnectorsTable",
    )
    pump.start()
    return pump, logs


def keys(batch):
    return [record["dynamodb"]["Keys"]["pk"]["S"] for record in batch["Records"]]


def test_only_state_rows_are_delivered_in_lambdas_record_shape(aws):
    batches = []
    put_rows(aws, ("c1", "STATE"), ("c1", "PROGRESS"), ("c2", "STATE"))
    pump, _ = start_pump(aws, lambda _, event: batches.append(event) or {"batchItemFailures": []})
    try:
        assert wait_for(lambda: sum(len(batch["Records"]) for batch in batches) >= 2)
        time.sleep(0.5)
    finally:
        pump.stop()
    delivered = [record for batch in batches for record in batch["Records"]]
    assert [record["dynamodb"]["Keys"]["sk"]["S"] for record in delivered] == ["STATE", "STATE"]
    assert all(batch["Records"] for batch in batches), "an empty batch was delivered"
    record = delivered[0]
    assert record["eventSource"] == "aws:dynamodb" and record["eventSourceARN"].startswith("arn:aws:dynamodb")
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)


def test_a_partial_failure_is_retried_from_the_first_failed_record(aws):
    batches = []
    failed_once = threading.Event()

    def invoke(_, event):
        batches.append(keys(event))
        if not failed_once.is_set() and len(event["Records"]) == 3:
            failed_once.set()
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    put_rows(aws, ("a", "STATE"), ("b", "STATE"), ("c", "STATE"))
    pump, _ = start_pump(aws, invoke)
    try:
        assert wait_for(lambda: len(batches) >= 2)
    finally:
        pump.stop()
    assert batches[:2] == [["a", "b", "c"], ["b", "c"]]
    assert pump.delivered == 3


def test_a_poison_record_is_bisected_out_retried_and_reported_while_the_others_go_through(aws):
    delivered = []

    def invoke(_, event):
        if "poison" in keys(event):
            raise InvocationError({"errorMessage": "cannot process"})
        delivered.extend(keys(event))
        return {"batchItemFailures": []}

    put_rows(aws, ("a", "STATE"), ("poison", "STATE"), ("b", "STATE"), ("c", "STATE"))
    pump, logs = start_pump(aws, invoke, max_retries=2)
    try:
        assert wait_for(lambda: pump.failed_to_queue == 1 and len(delivered) == 3)
    finally:
        pump.stop()
    assert sorted(delivered) == ["a", "b", "c"]
    sqs = aws.client("sqs")
    messages = sqs.receive_message(QueueUrl=aws.name("EscalationFailureQueue"), MaxNumberOfMessages=10)["Messages"]
    info = json.loads(messages[0]["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == aws.template.attribute("ConnectorsTable", "StreamArn")
    assert any("bisecting" in line for line in logs)
