"""Every sample event in events/ (the files ``sam local invoke -e`` takes) runs through its function's real handler.

API samples go to the function that serves their route in the template; the others (schedules, the stream batch,
asynchronous payloads) to the function whose folder names them. None may crash, and API answers are JSON (or the
dashboard's HTML) with a message whenever they refuse.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse

from connector_sla.storage.aws import client
from devstack.functions import LambdaContext
from tests.support import EVENTS_DIR, Aws

SAMPLES = sorted(EVENTS_DIR.glob("*.json"))


def function_of(aws: Aws, sample: Path, event: dict) -> str:
    if "httpMethod" in event:
        routes = [route for spec in aws.functions.values() for route in spec.routes]
        matches = [route for route in routes if route.method == event["httpMethod"] and _matches(route.path, event)]
        assert matches, f"{sample.name}: no function serves {event['httpMethod']} {event['path']}"
        return matches[0].function
    folders = {spec.code_dir.name: logical_id for logical_id, spec in aws.functions.items()}
    folder = max((name for name in folders if sample.name.startswith(f"{name}_")), key=len)
    return folders[folder]


def _matches(template_path: str, event: dict) -> bool:
    return event.get("resource") == template_path or event["path"] == template_path


@pytest.mark.parametrize("sample", SAMPLES, ids=[sample.stem for sample in SAMPLES])
def test_the_sample_runs_through_its_function_without_a_crash(aws, sample):
    # Given a sample event and the function it belongs to; in-process moto runs no function, so the asynchronous
    # invocations a sample starts (an export, a replay, a job run) are accepted without running
    event = json.loads(sample.read_text())
    logical_id = function_of(aws, sample, event)
    handler = aws.load_handler(logical_id)
    accepted = (AWSResponse("https://lambda.local.invalid", 202, {}, None), {"StatusCode": 202})
    client("lambda").meta.events.register("before-call.lambda.Invoke", lambda **_: accepted)

    # When it reaches the real handler on moto built from the template, with the function's own timeout
    spec = aws.functions[logical_id]
    answer = handler.lambda_handler(event, LambdaContext(spec, deadline=time.monotonic() + spec.timeout))

    # Then it is handled: an API answer below 500 that explains any refusal, or a result for the other triggers
    if "httpMethod" not in event:
        assert isinstance(answer, dict), (sample.name, answer)
        return
    assert answer["statusCode"] < 500, (sample.name, answer)
    if answer["headers"].get("Content-Type", "").startswith("text/html"):
        assert "<html" in answer["body"].lower()
        return
    body = json.loads(answer["body"]) if answer["body"] else {}
    if answer["statusCode"] >= 400:
        assert body.get("message"), (sample.name, body)


def test_an_api_request_logs_its_correlation_and_connector_ids_and_emits_its_metric(aws, capsys):
    # Given the sample that registers a connector
    event = json.loads((EVENTS_DIR / "connectors_api_put_connector.json").read_text())
    handler = aws.load_handler("ConnectorsApiFunction")
    spec = aws.functions["ConnectorsApiFunction"]

    # When it is handled, its log handler writing to a buffer (Powertools binds a service's handler to the stream
    # of the first logger created, so capturing stdout alone misses it in a long test session)
    buffer = io.StringIO()
    previous = handler.logger.registered_handler.setStream(buffer)
    capsys.readouterr()
    try:
        answer = handler.lambda_handler(event, LambdaContext(spec, deadline=time.monotonic() + spec.timeout))
    finally:
        handler.logger.registered_handler.setStream(previous)
    assert answer["statusCode"] == 201
    output = buffer.getvalue() + capsys.readouterr().out
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]

    # Then its structured log lines carry the request's correlation id and the connector id, once attached
    logged = [line for line in lines if "message" in line]
    assert logged, lines
    assert all(line["correlation_id"] == event["requestContext"]["requestId"] for line in logged)
    assert any(line.get("connector_id") == "orders-postgres" for line in logged)
    # And the registration is counted in an EMF metric of the service's namespace
    [emf] = [line for line in lines if "_aws" in line]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ConnectorSla"
    assert {"Name": "ConnectorsRegistered", "Unit": "Count"} in directive["Metrics"]
    assert emf["ConnectorsRegistered"] in (1, 1.0, [1.0])
