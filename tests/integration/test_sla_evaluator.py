"""The scheduled evaluator on moto: transitions, SLA events, exactly-once per tick, writes only on change."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from connector_sla.sla.evaluator import Evaluator
from connector_sla.sla.rules import Tick
from connector_sla.timeutil import parse_iso
from tests.support import call_api, load_event

API = "ConnectorsApiFunction"
EVALUATOR = "SlaEvaluatorFunction"


class Harness:
    def __init__(self, aws):
        self.aws = aws
        self.api_handler = aws.load_handler(API)
        self.evaluator = aws.load_handler(EVALUATOR)
        self.events_queue = self._capture_sla_events()
        self.minute = 0

    def _capture_sla_events(self):
        sqs, events = self.aws.client("sqs"), self.aws.client("events")
        url = sqs.create_queue(QueueName="sla-events-capture")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bus = self.aws.name("SlaEventBus")
        events.put_rule(Name="capture", EventBusName=bus, EventPattern=json.dumps({"source": ["connector-sla"]}))
        events.put_targets(Rule="capture", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        return url

    def api(self, method, path, **kwargs):
        return call_api(self.aws, self.api_handler, API, method, path, **kwargs)

    def register(self, connector_id="orders", **policy):
        status, body = self.api(
            "PUT",
            f"/events/connectors/{connector_id}",
            body={
                "name": connector_id.title(),
                "owner_team": "payments",
                "sources": [{"source_id": "primary"}, {"source_id": "replica"}],
                "policy": {"poll_window_seconds": 60, **policy},
            },
        )
        assert status in (200, 201), body

    def report(self, connector_id="orders", *, lag=0, source="primary", **counts):
        last = datetime.now(UTC) - timedelta(seconds=lag)
        body = {"sources": [{"source_id": source, "last_event_at": last.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}], **counts}
        status, answer = self.api("POST", f"/events/connectors/{connector_id}/checkpoints", body=body)
        assert status == 202, answer

    def tick(self, event_time=None):
        """One scheduled tick, each in its own poll window unless a time is given."""
        if event_time is None:
            base = datetime(2026, 12, 3, 12, 0, tzinfo=UTC) + timedelta(minutes=self.minute)
            self.minute += 1
            event_time = base.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {**load_event("sla_evaluator_tick.json"), "time": event_time}
        return self.evaluator.lambda_handler(event, self.aws.context(EVALUATOR)), event_time

    def sla_events(self):
        messages = self.aws.client("sqs").receive_message(QueueUrl=self.events_queue, MaxNumberOfMessages=10)
        found = [json.loads(message["Body"]) for message in messages.get("Messages", [])]
        for message in messages.get("Messages", []):
            self.aws.client("sqs").delete_message(QueueUrl=self.events_queue, ReceiptHandle=message["ReceiptHandle"])
        return found

    def state(self, connector_id="orders"):
        status, body = self.api("GET", "/events/connectors/sla/states", query={"connector_id": connector_id})
        assert status == 200
        return body["states"][0] if body["states"] else None

    def transitions(self, connector_id="orders"):
        status, body = self.api(
            "GET", "/events/connectors/sla/states", query={"view": "transitions", "connector_id": connector_id}
        )
        assert status == 200
        return body["transitions"]


@pytest.fixture
def harness(aws):
    return Harness(aws)


def test_a_stale_connector_opens_an_incident_and_announces_it(harness):
    harness.register()
    harness.report(lag=400)
    result, _ = harness.tick()
    assert result["transitions"] == {"opened": 1} and result["events_published"] == 1
    state = harness.state()
    assert state["severity"] == "warning" and state["level"] == "L1" and state["incident_id"].startswith("inc_")
    assert state["unmet_recovery"] == ["freshness_lag"]
    [event] = harness.sla_events()
    assert event["detail-type"] == "event_connector_sla" and event["source"] == "connector-sla"
    detail = event["detail"]
    assert detail["connector_id"] == "orders" and detail["incident_id"] == state["incident_id"]
    assert detail["level"] == "L1" and detail["severity"] == "warning"
    assert detail["signals"]["freshness_lag"]["warning"] == 300 and detail["signals"]["freshness_lag"]["value"] >= 400
    assert detail["runbook_url"].startswith("https://") and detail["occurred_at"]


def test_the_same_tick_delivered_twice_records_one_transition_and_one_event(harness):
    harness.register()
    harness.report(lag=400)
    harness.tick("2026-12-03T12:00:00Z")
    again, _ = harness.tick("2026-12-03T12:00:00Z")
    assert again["changed"] == 0 and again["transitions"] == {}
    assert len(harness.transitions()) == 1
    assert len(harness.sla_events()) == 1


def test_two_evaluators_racing_on_one_connector_produce_one_transition(harness, aws):
    harness.register()
    harness.report(lag=400)
    # Given two evaluators that both read the fleet before either writes
    first, second = Evaluator.from_settings(), Evaluator.from_settings()
    rows = list(first.store.scan_fleet())
    second.store.scan_fleet = lambda **_: iter(rows)
    tick = Tick("2026-12-03T12:00:00Z", datetime(2026, 12, 3, 12, 0, tzinfo=UTC))
    # When both evaluate the same tick
    report_one = first.run_pass(tick, lambda: datetime.now(UTC))
    report_two = second.run_pass(tick, lambda: datetime.now(UTC))
    # Then the loser re-reads, finds the window recorded, and writes nothing
    assert report_one.changed == 1 and report_two.changed == 0 and report_two.stale_retries == 1
    assert [transition["kind"] for transition in harness.transitions()] == ["opened"]


def test_critical_repeat_escalates_and_recovery_closes_with_the_duration(harness, monkeypatch):
    # The evaluator's clock moves a minute per tick (the reports stay within the warning threshold of it)
    started = datetime.now(UTC)
    monkeypatch.setattr(harness.evaluator, "utcnow", lambda: started + timedelta(minutes=harness.minute - 1))
    harness.register(recovery_clean_windows=2)
    harness.report(lag=1000)
    harness.tick()
    harness.tick()
    assert harness.state()["level"] == "L2"
    harness.report(lag=1)
    harness.tick()
    assert harness.state()["incident_status"] == "open"  # one clean window is not enough
    harness.tick()
    state = harness.state()
    assert state["level"] == "none" and state["incident_status"] == "closed"
    kinds = [transition["kind"] for transition in harness.transitions()]
    assert kinds == ["opened", "escalated", "severity_changed", "recovered"]
    events = {event["detail-type"]: event["detail"] for event in harness.sla_events()}
    assert events["event_connector_sla_escalation"]["from_level"] == "L1"
    assert events["event_connector_sla_escalation"]["to_level"] == "L2"
    # The incident lasted from its first warning (tick 1) to the recovery (tick 4): three minutes
    opened, recovered = harness.transitions()[0], harness.transitions()[-1]
    assert int((parse_iso(recovered["at"]) - parse_iso(opened["at"])).total_seconds()) == 180
    assert events["event_connector_sla_recovery"]["duration_seconds"] == 180 == recovered["details"]["duration_seconds"]
    # The transition history verifies as a hash chain
    history = harness.transitions()
    assert all(later["prev_hash"] == earlier["record_hash"] for earlier, later in itertools.pairwise(history))


def test_unchanged_connectors_cost_no_writes(harness, aws):
    for index in range(20):
        harness.register(f"c{index}")
        harness.report(f"c{index}", lag=5)
    harness.tick()  # first evaluation records every connector once
    writes = []
    aws.client("dynamodb")  # the handler's client is created at import; count at the botocore level instead
    harness.evaluator.evaluator.ledger.connectors.dynamodb.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: writes.append(model.name)
    )
    result, _ = harness.tick()
    assert result["connectors"] == 20 and result["changed"] == 0
    assert [name for name in writes if name not in ("Scan", "Query")] == []
    assert writes.count("Scan") <= 2


def test_a_failed_publication_stays_in_the_outbox_and_goes_out_with_the_next_pass(harness, monkeypatch):
    harness.register()
    harness.report(lag=400)
    publisher = harness.evaluator.evaluator.publisher

    def broken(_):
        raise ConnectionError("eventbridge unreachable")

    original = publisher.publish
    monkeypatch.setattr(publisher, "publish", broken)
    result, _ = harness.tick()
    assert result["transitions"] == {"opened": 1} and result["events_published"] == 0
    assert harness.sla_events() == []
    monkeypatch.setattr(publisher, "publish", original)
    result, _ = harness.tick()
    assert result["events_published"] == 1
    assert [event["detail-type"] for event in harness.sla_events()] == ["event_connector_sla"]


def test_matrix_failover_switches_to_the_healthy_backup_and_announces_it(harness):
    harness.register()
    harness.report(lag=5, source="replica")
    harness.report(lag=2000, source="primary")
    harness.tick()
    status, body = harness.api("GET", "/events/connectors/source-health")
    assert status == 200
    item = body["items"][0]
    assert item["active_source"] == "replica" and item["last_failover"]["from_source"] == "primary"
    kinds = [transition["kind"] for transition in harness.transitions()]
    assert kinds == ["failover"]  # the replica is fresh, so no incident
    assert [event["detail-type"] for event in harness.sla_events()] == ["event_connector_source_failover"]


def test_shards_evaluate_every_connector_exactly_once(aws, harness):
    for index in range(12):
        harness.register(f"s{index}")
        harness.report(f"s{index}", lag=400)
    shard = aws.load_handler("SlaShardEvaluatorFunction")
    total = 4
    evaluated = 0
    for segment in range(total):
        result = shard.lambda_handler(
            {"tick_id": "2026-12-03T12:00:00Z", "segment": segment, "total_segments": total},
            aws.context("SlaShardEvaluatorFunction"),
        )
        evaluated += result["connectors"]
    assert evaluated == 12
    for index in range(12):
        assert harness.state(f"s{index}")["level"] == "L1"


def test_the_transition_history_filters_by_incident_and_by_time(harness):
    # Given a connector whose first incident closed and a second one opened
    harness.register(recovery_clean_windows=1)
    harness.report(lag=400)
    harness.tick()
    harness.report(lag=1)
    harness.tick()
    harness.report(lag=400)
    harness.tick()
    history = harness.transitions()
    assert [item["kind"] for item in history] == ["opened", "recovered", "opened"]
    first, second = history[0]["incident_id"], history[2]["incident_id"]
    assert first != second

    # When the history is read for one incident, and for a time range
    status, by_incident = harness.api(
        "GET", "/events/connectors/sla/states", query={"view": "transitions", "incident_id": first}
    )
    assert status == 200
    query = {"view": "transitions", "connector_id": "orders", "since": history[1]["at"], "until": history[2]["at"]}
    status, by_time = harness.api("GET", "/events/connectors/sla/states", query=query)
    assert status == 200

    # Then each lists exactly the transitions it names (since inclusive, until exclusive)
    assert [item["transition_id"] for item in by_incident["transitions"]] == [
        item["transition_id"] for item in history[:2]
    ]
    assert [item["transition_id"] for item in by_time["transitions"]] == [history[1]["transition_id"]]


def test_a_history_filter_on_the_current_view_is_a_400_that_says_which_view_it_needs(harness):
    status, body = harness.api("GET", "/events/connectors/sla/states", query={"incident_id": "inc_1"})
    assert status == 400 and "view=transitions" in body["message"]
