"""`make run`'s demo, played against a fresh local stack: the runbook flow from breach to a verified evidence bundle.

The demo drives the stack only through its HTTP API (and the fake provider, as a responder would), so this test
checks the runbook end to end, and that what a newcomer sees after `make run` is what the runbook promises.
"""

from __future__ import annotations

import pytest

from connector_sla.evidence.verify import verify_bundle
from devstack.access import check, read_calls
from devstack.demo import INVENTORY, ORDERS, Demo
from devstack.stack import LocalStack
from devstack.template import ACCOUNT_ID, REGION
from tests.e2e.support import stack_options

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("devstack")
    options = stack_options(state_dir, speed=30, access_log_dir=state_dir / "access")
    lines: list[str] = []
    stack = LocalStack(options, log=lines.append)
    stack.start()
    stack.wait_until_ready()
    demo = Demo(stack, say=lines.append, out_dir=state_dir / "evidence")
    try:
        result = demo.run()
        yield stack, result, lines
    finally:
        demo.stop()
        stack.stop()


def test_the_breach_opens_one_incident_per_connector_and_escalates_orders_to_l3(played):
    _, result, lines = played

    assert set(result.incidents) == {ORDERS, INVENTORY}
    assert all(incident.startswith("inc_") for incident in result.incidents.values())
    assert result.levels_seen[ORDERS] == ["L1", "L2", "L3"]
    assert result.emails == ["data-platform-owner@example.com", "risk-owner@example.com"]
    assert any(line.startswith("provider  bridge opened for incident " + result.incidents[ORDERS]) for line in lines)


def test_the_sla_bus_carries_warning_escalation_and_recovery_events(played):
    stack, result, _ = played

    assert result.sla_events[0] == "event_connector_sla"
    assert "event_connector_sla_escalation" in result.sla_events
    assert result.sla_events[-1] == "event_connector_sla_recovery"
    [recovery] = [
        event
        for event in stack.sla_events
        if event["detail-type"] == "event_connector_sla_recovery" and event["detail"]["connector_id"] == ORDERS
    ]
    assert recovery["detail"]["incident_id"] == result.incidents[ORDERS]
    assert recovery["detail"]["duration_seconds"] > 0 and recovery["detail"]["runbook_url"].startswith("https://")


def test_the_signed_ack_callback_removes_the_linked_row_from_the_unacked_list_and_is_in_the_history(played):
    _, result, _ = played

    assert result.acknowledged, "the demo acknowledged no page"
    assert not set(result.acknowledged) & set(result.still_unacked)
    assert result.unacked_after_ack == result.unacked_before_ack - len(result.acknowledged)
    acknowledged = [item for item in result.callback_history if item["status"] == "acknowledged"]
    assert [item["notification_id"] for item in acknowledged] == result.acknowledged
    assert all(item["signature"] == "verified" and item["ack_applied"] for item in acknowledged)


def test_the_patched_rows_are_replayed_once_each_to_the_connectors_queue(played):
    _, result, _ = played

    assert result.failures_replayed == 2
    assert sorted(message["payload"]["order_id"] for message in result.replayed_messages) == ["A-1", "A-2"]
    assert {"coupon"} & {key for message in result.replayed_messages for key in message["payload"]} == set()
    assert len({message["replay_key"] for message in result.replayed_messages}) == 2


def test_the_reconcile_dry_run_reports_the_lost_ack_and_the_real_run_applies_it(played):
    _, result, _ = played

    dry, real = result.reconcile_dry_run, result.reconcile_real_run
    assert dry["dry_run"] is True and dry["counts"]["would_update"] == 1 and "updated" not in dry["counts"]
    assert [change["ack_state_after"] for change in dry["changes"]] == ["acknowledged"]
    assert real["dry_run"] is False and real["counts"]["updated"] == 1 and real["counts"]["errors"] == 0


def test_recovery_closes_both_incidents_sends_resolved_notices_and_the_bundle_verifies_offline(played):
    _, result, lines = played

    assert result.recovered == [ORDERS, INVENTORY]
    assert result.resolved_notices >= 3  # the page, and every email of L2 and L3
    assert result.export["status"] == "succeeded"
    counts = {item["name"]: item["records"] for item in result.export["files"]}
    assert all(counts[name] > 0 for name in ("transitions.jsonl", "deliveries.jsonl", "callbacks.jsonl"))
    assert result.bundle_verified is True
    assert result.bundle_path is not None and verify_bundle(result.bundle_path).verified
    assert lines[-1].startswith("demo ") and "/ops/dashboard" in lines[-1]


def test_every_aws_call_the_functions_made_is_granted_by_their_own_policy_in_the_template(played):
    # Given every AWS call each function made while the demo played (moto itself enforces no IAM)
    stack, _, _ = played
    recorded = read_calls(stack.options.access_log_dir)
    exercised = {
        "SlaEvaluatorFunction",
        "EscalationFunction",
        "EscalationTimerFunction",
        "OncallCallbackFunction",
        "ConnectorsApiFunction",
        "FailuresApiFunction",
        "ReplayWorkerFunction",
        "AlertsApiFunction",
        "EscalationApiFunction",
        "JobsApiFunction",
        "JobRunnerFunction",
        "EvidenceApiFunction",
        "EvidenceExportFunction",
    }
    assert exercised <= {name for name, calls in recorded.items() if calls}, sorted(recorded)

    # When each call is turned into the IAM actions and ARNs AWS would authorize
    problems = check(stack.options.access_log_dir, stack.template, region=REGION, account=ACCOUNT_ID)

    # Then the function's own policy allows every one of them
    assert problems == []
