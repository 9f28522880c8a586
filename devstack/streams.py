"""DynamoDB Streams into Lambda, as an event source mapping does it.

Records are read from moto's stream, filtered by the mapping's FilterCriteria, batched (BatchSize and
MaximumBatchingWindowInSeconds) and delivered in Lambda's event shape. A partial batch failure response retries
from the first failed record; a function error bisects the batch when BisectBatchOnFunctionError is set. A batch
that exhausts MaximumRetryAttempts (or outlives MaximumRecordAgeInSeconds) is reported to the OnFailure queue and
the mapping moves on, so the records behind it are still processed.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devstack.functions import FunctionSpec, InvocationError, StreamMapping
from devstack.patterns import matches

POLL_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 2.0

Invoke = Callable[[str, dict[str, Any]], Any]


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A boto3 attribute value as Lambda serializes it (binary values base64-encoded)."""
    ((kind, raw),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(raw).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(item).decode() for item in raw]}
    if kind == "M":
        return {"M": {key: _attribute(inner) for key, inner in raw.items()}}
    if kind == "L":
        return {"L": [_attribute(inner) for inner in raw]}
    return {kind: raw}


def to_lambda_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A record from GetRecords in the shape Lambda hands to the function."""
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = int(created.timestamp())
    for image in ("Keys", "NewImage", "OldImage"):
        if image in stream:
            stream[image] = {key: _attribute(value) for key, value in stream[image].items()}
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", region),
        "dynamodb": stream,
        "eventSourceARN": stream_arn,
    }


class StreamPump:
    """Reads one stream and feeds one function, on a thread of its own."""

    def __init__(
        self,
        mapping: StreamMapping,
        function: FunctionSpec,
        streams_client: Any,
        sqs_client: Any,
        invoke: Invoke,
        log: Callable[[str], None],
        *,
        region: str,
        table_label: str,
    ) -> None:
        self.mapping = mapping
        self.function = function
        self.streams = streams_client
        self.sqs = sqs_client
        self.invoke = invoke
        self.log = log
        self.region = region
        self.label = f"{table_label} -> {function.logical_id}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{function.logical_id}", daemon=True)
        self._iterators: dict[str, str | None] = {}
        self.delivered = 0
        self.failed_to_queue = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -------------------------------------------------------------------------------------------- reading

    def _open_iterators(self) -> None:
        description = self.streams.describe_stream(StreamArn=self.mapping.stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self.streams.get_shard_iterator(
                    StreamArn=self.mapping.stream_arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType=self.mapping.starting_position,
                )["ShardIterator"]

    def _read(self) -> list[tuple[str, dict[str, Any]]]:
        records = []
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            response = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard_id] = response.get("NextShardIterator")
            records.extend((shard_id, record) for record in response.get("Records", []))
        return records

    def _run(self) -> None:
        buffer: list[tuple[str, dict[str, Any]]] = []
        first_arrival = 0.0
        while not self._stop.is_set():
            try:
                if not self._iterators:
                    self._open_iterators()
                for shard_id, record in self._read():
                    lambda_record = to_lambda_record(record, self.mapping.stream_arn, self.region)
                    if self.mapping.filters and not any(matches(f, lambda_record) for f in self.mapping.filters):
                        continue
                    if not buffer:
                        first_arrival = time.monotonic()
                    buffer.append((shard_id, lambda_record))
                waited = time.monotonic() - first_arrival
                if buffer and (len(buffer) >= self.mapping.batch_size or waited >= self.mapping.batching_window):
                    batch, buffer = buffer[: self.mapping.batch_size], buffer[self.mapping.batch_size :]
                    self._deliver(batch[0][0], [record for _, record in batch])
                    continue
            except Exception as error:  # noqa: BLE001 - the pump must survive a transient moto error
                self.log(f"stream    {self.label}: read failed ({error}); retrying")
            self._stop.wait(POLL_SECONDS)

    # -------------------------------------------------------------------------------------------- delivering

    def _deliver(self, shard_id: str, batch: list[dict[str, Any]]) -> None:
        """Deliver ``batch`` until every record succeeded or was reported to the OnFailure queue."""
        attempts = 0
        while batch and not self._stop.is_set():
            try:
                result = self.invoke(self.function.logical_id, {"Records": batch})
            except InvocationError as error:
                if self.mapping.bisect and len(batch) > 1:
                    middle = len(batch) // 2
                    self.log(f"stream    {self.label}: function error on {len(batch)} records, bisecting")
                    self._deliver(shard_id, batch[:middle])
                    self._deliver(shard_id, batch[middle:])
                    return
                failed_from = 0
                reason = error.payload.get("errorMessage", "function error")
            else:
                failed_from = self._first_failure(batch, result)
                if failed_from is None:
                    self.delivered += len(batch)
                    self.log(f"stream    {self.label}: {len(batch)} record(s) delivered")
                    return
                reason = f"{len(batch) - failed_from} of {len(batch)} record(s) reported failed"
                self.delivered += failed_from
                batch = batch[failed_from:]
            attempts += 1
            if self._exhausted(batch, attempts):
                self._report_failure(shard_id, batch, attempts)
                return
            retries = "unlimited" if self.mapping.max_retries < 0 else self.mapping.max_retries
            self.log(f"stream    {self.label}: {reason}; retry {attempts}/{retries} from the first failed record")
            self._stop.wait(min(MAX_BACKOFF_SECONDS, 0.1 * 2**attempts))

    def _first_failure(self, batch: list[dict[str, Any]], result: Any) -> int | None:
        if not self.mapping.report_item_failures or not isinstance(result, dict):
            return None
        failures = result.get("batchItemFailures") or []
        if not failures:
            return None
        positions = {record["dynamodb"]["SequenceNumber"]: index for index, record in enumerate(batch)}
        indexes = []
        for failure in failures:
            identifier = (failure or {}).get("itemIdentifier")
            if identifier not in positions:
                return 0  # Lambda treats an unknown or empty identifier as a failure of the whole batch
            indexes.append(positions[identifier])
        return min(indexes)

    def _exhausted(self, batch: list[dict[str, Any]], attempts: int) -> bool:
        if 0 <= self.mapping.max_retries < attempts:
            return True
        if self.mapping.max_record_age > 0:
            oldest = batch[0]["dynamodb"].get("ApproximateCreationDateTime", time.time())
            return time.time() - float(oldest) > self.mapping.max_record_age
        return False

    def _report_failure(self, shard_id: str, batch: list[dict[str, Any]], attempts: int) -> None:
        first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": first.get("ApproximateCreationDateTime"),
                "approximateArrivalOfLastRecord": last.get("ApproximateCreationDateTime"),
                "batchSize": len(batch),
                "streamArn": self.mapping.stream_arn,
            },
        }
        queue = self.mapping.on_failure_queue_arn
        target = queue.rsplit(":", 1)[-1] if queue else "nowhere (no OnFailure destination)"
        if queue:
            url = self.sqs.get_queue_url(QueueName=target)["QueueUrl"]
            self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))
        self.failed_to_queue += len(batch)
        self.log(f"stream    {self.label}: {len(batch)} record(s) failed {attempts} times; reported to {target}")
