"""The Lambda Invoke API, for functions that invoke other functions (async jobs, evaluator shards).

The workers' ``AWS_ENDPOINT_URL_LAMBDA`` points here. ``Event`` invocations are queued and run one at a time per
function with the function's async retry count; a final failure goes to its OnFailure queue, as Lambda does.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from devstack.functions import FunctionSpec, InvocationError

ASYNC_RETRY_DELAY_SECONDS = 1.0


class LambdaApi:
    """A WSGI app for ``POST /2015-03-31/functions/{name}/invocations`` plus the async invocation queues."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        invoke: Callable[[str, Any], Any],
        sqs_client: Any,
        log: Callable[[str], None],
    ) -> None:
        self.functions = functions
        self.invoke = invoke
        self.sqs = sqs_client
        self.log = log
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def find(self, name_or_arn: str) -> FunctionSpec | None:
        name = unquote(name_or_arn)
        for spec in self.functions.values():
            if name in (spec.name, spec.arn, spec.logical_id) or name.startswith(spec.arn + ":"):
                return spec
        return None

    def invoke_async(self, logical_id: str, payload: Any) -> None:
        """Queue an ``Event`` invocation of ``logical_id``."""
        if logical_id not in self._queues:
            self._queues[logical_id] = queue.Queue()
            thread = threading.Thread(target=self._drain, args=(logical_id,), name=f"async-{logical_id}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._queues[logical_id].put(payload)

    def stop(self) -> None:
        self._stop.set()
        for pending in self._queues.values():
            pending.put(None)

    def _drain(self, logical_id: str) -> None:
        spec = self.functions[logical_id]
        pending = self._queues[logical_id]
        while not self._stop.is_set():
            payload = pending.get()
            if payload is None:
                return
            for attempt in range(spec.async_retries + 1):
                try:
                    self.invoke(logical_id, payload)
                    self.log(f"async     {logical_id} finished")
                    break
                except InvocationError as error:
                    self.log(f"async     {logical_id} failed (attempt {attempt + 1}): {error}")
                    if attempt == spec.async_retries:
                        self._report_failure(spec, payload, error, attempt + 1)
                    elif self._stop.wait(ASYNC_RETRY_DELAY_SECONDS):
                        return

    def _report_failure(self, spec: FunctionSpec, payload: Any, error: InvocationError, attempts: int) -> None:
        if not spec.async_failure_queue_arn:
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": spec.arn,
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": payload,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": error.payload,
        }
        name = spec.async_failure_queue_arn.rsplit(":", 1)[-1]
        url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        parts = request.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "2015-03-31" or parts[1] != "functions" or parts[3] != "invocations":
            return _error(404, "UnknownOperationException", "only Invoke is emulated")(environ, start_response)
        spec = self.find(parts[2])
        if spec is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {parts[2]}")(environ, start_response)
        raw = request.get_data(as_text=True) or "{}"
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "InvalidRequestContentException", "payload is not JSON")(environ, start_response)
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind == "Event":
            self.invoke_async(spec.logical_id, payload)
            return Response(b"", status=202)(environ, start_response)
        if kind == "DryRun":
            return Response(b"", status=204)(environ, start_response)
        try:
            result = self.invoke(spec.logical_id, payload)
            response = Response(json.dumps(result), status=200, content_type="application/json")
        except InvocationError as error:
            response = Response(json.dumps(error.payload), status=200, content_type="application/json")
            response.headers["X-Amz-Function-Error"] = "Unhandled"
        response.headers["X-Amz-Executed-Version"] = "$LATEST"
        return response(environ, start_response)


def _error(status: int, kind: str, message: str) -> Response:
    response = Response(
        json.dumps({"Type": "User", "message": message}), status=status, content_type="application/json"
    )
    response.headers["X-Amzn-ErrorType"] = kind
    return response
