"""The sample events in events/ (the ones ``sam local invoke -e`` takes) run through the real handlers."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_escalation_support import context, scenario
from tests.support import EVENTS_DIR, load_event

__all__ = ["scenario"]


def test_the_sample_stream_records_page_and_then_resolve(scenario):
    # Given the sample opened record and the sample recovered record of the same incident
    opened = load_event("escalation_state_stream.json")
    recovered = load_event("escalation_recovered_stream.json")
    incident_id = opened["Records"][0]["dynamodb"]["NewImage"]["incident_id"]["S"]

    # When they reach the escalation handler in order
    first = scenario.escalation.lambda_handler(opened, context(scenario.aws, "EscalationFunction"))
    second = scenario.escalation.lambda_handler(recovered, context(scenario.aws, "EscalationFunction"))

    # Then the incident was paged and then resolved, without a failed record
    assert first == second == {"batchItemFailures": []}
    assert [w["payload"]["status"] for w in scenario.provider.received("webhook")] == ["triggered", "resolved"]
    kinds = sorted(item["kind"] for item in scenario.notifications(incident_id))
    assert kinds == ["alert", "resolved"]


def test_the_sample_timer_tick_runs(scenario):
    # When the sample scheduled event reaches the timer handler
    result = scenario.timer.lambda_handler(
        load_event("escalation_timer_tick.json"), context(scenario.aws, "EscalationTimerFunction")
    )

    # Then it judged the timers at the tick's time and found none due
    assert result == {"tick": "2026-12-03T19:22:00Z", "outcomes": {}}


@pytest.mark.parametrize(
    ("prefix", "logical_id", "handler"),
    [("alerts_api", "AlertsApiFunction", "alerts_api"), ("escalation_api", "EscalationApiFunction", "escalation_api")],
)
def test_every_sample_request_of_the_alerts_routes_is_answered_without_a_server_error(
    scenario, prefix, logical_id, handler
):
    # Given the connector the samples name
    scenario.register_connector("orders-postgres")
    samples = sorted(EVENTS_DIR.glob(f"{prefix}_*.json"))
    assert samples, prefix
    for path in samples:
        event = json.loads(path.read_text())
        # When the sample request reaches its function
        response = getattr(scenario, handler).lambda_handler(event, context(scenario.aws, logical_id))
        # Then it is answered (a sample may name an incident that does not exist: 404), never with a 5xx
        assert response["statusCode"] < 500, (path.name, response)
        assert "message" in json.loads(response["body"]) or response["statusCode"] < 300, path.name
