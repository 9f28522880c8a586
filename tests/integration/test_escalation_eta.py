"""L3: the duty manager owes a recovery ETA. Without one a reminder goes out; an ETA that passes re-escalates;
an unacknowledged L3 round without ETA re-escalates; races with other state writers are re-decided."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from connector_sla.callbacks.signatures import sign_hmac_sha256
from connector_sla.timeutil import parse_iso, to_iso
from tests.integration.test_escalation_support import later, read_secret, scenario
from tests.support import call_api

__all__ = ["scenario"]


def reach_l3(scenario, connector_id="orders-db"):
    incident_id = scenario.open_incident(connector_id)
    scenario.commit(connector_id, "escalated", level="L2", severity="critical")
    scenario.commit(connector_id, "escalated", level="L3", severity="critical")
    scenario.deliver_stream()
    l3 = [item for item in scenario.notifications(incident_id) if item["kind"] == "alert" and item["level"] == "L3"]
    return incident_id, l3


def post_eta(scenario, incident_id, eta, **extra):
    return call_api(
        scenario.aws,
        scenario.escalation_api,
        "EscalationApiFunction",
        "POST",
        f"/alerts/incidents/{incident_id}/eta",
        body={"eta": eta, **extra},
    )


def test_no_eta_within_the_configured_time_sends_one_reminder_to_the_l3_targets(scenario):
    # Given an incident at L3 (duty manager email and bridge, ETA required within 15 minutes)
    incident_id, l3 = reach_l3(scenario)
    dispatched = parse_iso(l3[0]["dispatched_at"])
    assert l3[0]["due_kind"] == "eta_reminder"

    # When the timer ticks 16 minutes later, and again a minute after
    scenario.tick(later(dispatched, minutes=16))
    scenario.tick(later(dispatched, minutes=17))

    # Then each L3 target got exactly one reminder asking for the ETA
    reminders = [item for item in scenario.notifications(incident_id) if item["kind"] == "reminder"]
    assert sorted(item["channel"] for item in reminders) == ["bridge", "email"]
    assert all(item["delivery_status"] == "sent" for item in reminders)
    [email] = [m for m in scenario.emails() if m.subject.startswith("REMINDER")]
    assert f"POST /alerts/incidents/{incident_id}/eta" in email.body
    assert scenario.ledger.read("orders-db")["level"] == "L3"


def test_an_eta_is_recorded_through_the_ledger_and_its_passing_re_escalates(scenario):
    # Given an incident at L3
    incident_id, l3 = reach_l3(scenario)
    eta = datetime.now(UTC) + timedelta(minutes=40)

    # When the duty manager records an ETA
    status, recorded = post_eta(scenario, incident_id, to_iso(eta), note="failing over to the replica")

    # Then the state row carries it, through an eta_recorded transition
    assert status == 200, recorded
    state = scenario.ledger.read("orders-db")
    assert state["recovery_eta"] == to_iso(eta) and state["last_transition"]["kind"] == "eta_recorded"
    assert recorded["transition_id"] == state["last_transition"]["transition_id"]
    eta_transition = scenario.transitions("orders-db")[-1]
    assert eta_transition["eta"] == to_iso(eta) and "failing over to the replica" in eta_transition["reason"]
    # And once the stream carries it, the L3 watch waits for the ETA instead of reminding
    scenario.deliver_stream()
    scenario.tick(later(parse_iso(l3[0]["dispatched_at"]), minutes=16))
    assert [item for item in scenario.notifications(incident_id) if item["kind"] == "reminder"] == []
    # When the ETA passes without recovery
    scenario.tick(later(eta, seconds=1))
    # Then the incident re-escalates (L3 again, ETA cleared) and L3 is notified again, once
    state = scenario.ledger.read("orders-db")
    assert state["last_transition"]["kind"] == "reescalated" and "recovery_eta" not in state
    reescalated = [t for t in scenario.transitions("orders-db") if t["kind"] == "reescalated"]
    assert len(reescalated) == 1 and reescalated[0]["eta"] == to_iso(eta)
    scenario.deliver_stream()
    rounds = {item["transition_id"] for item in scenario.notifications(incident_id) if item["level"] == "L3"}
    assert rounds == {l3[0]["transition_id"], reescalated[0]["transition_id"]}
    # And the first round's watches are over: only the new round waits
    watching = [item for item in scenario.notifications(incident_id) if item.get("due_kind") == "eta_reminder"]
    assert {item["transition_id"] for item in watching} == {reescalated[0]["transition_id"]}


def test_an_eta_sent_through_the_callback_brings_the_watch_forward_and_re_escalates_when_it_passes(scenario):
    # Given an incident at L3 whose watch would next remind in 15 minutes
    incident_id, l3 = reach_l3(scenario)
    [email] = [item for item in l3 if item["channel"] == "email"]
    reminder_due = parse_iso(email["due_at"])
    eta = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    assert eta < reminder_due

    # When the duty manager acknowledges in the on-call tool with an ETA 5 minutes ahead (a signed callback)
    body = json.dumps(
        {
            "event_id": "evt-eta-1",
            "status": "acknowledged",
            "delivery_id": email["last_delivery_id"],
            "eta": to_iso(eta),
            "acknowledged_by": "duty-manager@example.com",
        }
    ).encode()
    stamp = str(int(time.time()))
    status, answer = call_api(
        scenario.aws,
        scenario.aws.load_handler("OncallCallbackFunction"),
        "OncallCallbackFunction",
        "POST",
        "/alerts/oncall/callback",
        raw_body=body,
        headers={
            "X-Callback-Timestamp": stamp,
            "X-Callback-Signature": sign_hmac_sha256(read_secret(scenario.aws), stamp, body),
        },
    )
    assert status == 200 and answer["eta_recorded"] is True, answer
    scenario.deliver_stream()

    # Then every L3 watch now falls due at the ETA, not at the later reminder
    watching = [item for item in scenario.notifications(incident_id) if item.get("due_kind") == "eta_reminder"]
    assert sorted(item["channel"] for item in watching) == ["bridge", "email"]
    assert {item["due_at"] for item in watching} == {to_iso(eta)}
    # When the ETA passes without recovery
    scenario.tick(later(eta, seconds=1))
    # Then the incident re-escalates once, naming the ETA that passed, and no reminder was sent
    reescalated = [t for t in scenario.transitions("orders-db") if t["kind"] == "reescalated"]
    assert len(reescalated) == 1 and reescalated[0]["eta"] == to_iso(eta)
    assert [item for item in scenario.notifications(incident_id) if item["kind"] == "reminder"] == []


def test_an_unacknowledged_l3_round_without_eta_re_escalates_after_its_ack_timeout(scenario):
    # Given an incident at L3 whose round nobody acknowledges and no ETA is recorded
    incident_id, l3 = reach_l3(scenario)
    dispatched = parse_iso(l3[0]["dispatched_at"])

    # When the timer ticks past the reminder and then past the L3 ack timeout (30 minutes)
    scenario.tick(later(dispatched, minutes=16))
    scenario.tick(later(dispatched, minutes=31))

    # Then one re-escalation was committed, and the stream brings a new L3 round
    kinds = [t["kind"] for t in scenario.transitions("orders-db")]
    assert kinds.count("reescalated") == 1
    scenario.deliver_stream()
    alerts = [item for item in scenario.notifications(incident_id) if item["kind"] == "alert" and item["level"] == "L3"]
    assert len(alerts) == 4


def test_a_concurrent_state_write_is_re_read_and_decided_again(scenario):
    # Given an L2 alert past its ack timeout, and the evaluator writing the state just before the timer commits
    incident_id = scenario.open_incident("orders-db")
    scenario.commit("orders-db", "escalated", level="L2", severity="critical")
    scenario.deliver_stream()
    l2 = [item for item in scenario.notifications(incident_id) if item["level"] == "L2"]
    ledger = scenario.timer.timers.ledger
    real_commit = ledger.commit
    raced = []

    def commit_after_a_competing_write(connector_id, state, **kwargs):
        if not raced:
            raced.append(True)
            scenario.commit("orders-db", "severity_changed", level="L2", severity="critical")
        return real_commit(connector_id, state, **kwargs)

    ledger.commit = commit_after_a_competing_write

    # When the timer fires the ack timeout
    scenario.tick(later(parse_iso(l2[0]["dispatched_at"]), minutes=31))

    # Then the first commit lost the race, the timer re-read and escalated once, keeping the evaluator's write
    kinds = [t["kind"] for t in scenario.transitions("orders-db")]
    assert kinds[-2:] == ["severity_changed", "ack_timeout"]
    assert scenario.ledger.read("orders-db")["level"] == "L3"


def test_a_timer_skips_when_the_incident_moved_on(scenario):
    # Given an L1 alert, and the incident recovered before its ack timeout fired (stream not yet processed)
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    [alert] = scenario.notifications(incident_id)
    scenario.commit("orders-db", "recovered", level="none", severity="ok", status="closed")

    # When the timer fires the stale ack timeout
    scenario.tick(later(parse_iso(alert["dispatched_at"]), hours=1))

    # Then nothing escalates and the timer is gone
    assert "ack_timeout" not in [t["kind"] for t in scenario.transitions("orders-db")]
    assert "due_at" not in scenario.notification(alert["notification_id"])


def test_eta_input_is_validated_and_nothing_is_written_when_refused(scenario):
    # Given an incident at L3
    incident_id, _ = reach_l3(scenario)
    before = scenario.ledger.read("orders-db")["version"]
    now = datetime.now(UTC)
    cases = [
        (incident_id, {"eta": to_iso(now - timedelta(minutes=5))}, 400, "eta must be in the future"),
        (incident_id, {"eta": to_iso(now + timedelta(days=9))}, 400, "within 7 days"),
        (incident_id, {"eta": "2030-01-01T10:00:00"}, 400, "body.eta"),
        (incident_id, {"eta": to_iso(now + timedelta(hours=1)), "by": "me"}, 400, "body.by"),
        ("inc_01JUNKNOWN0000000000000000", {"eta": to_iso(now + timedelta(hours=1))}, 404, "no notifications"),
    ]
    for target, body, expected_status, expected in cases:
        # When an ETA is posted with bad input
        status, error = call_api(
            scenario.aws,
            scenario.escalation_api,
            "EscalationApiFunction",
            "POST",
            f"/alerts/incidents/{target}/eta",
            body=body,
        )
        # Then it is refused with a message that says what was wrong
        assert status == expected_status and expected in error["message"], (body, error)
    # And the state row was not written
    assert scenario.ledger.read("orders-db")["version"] == before
    # And an ETA for a closed incident is a conflict
    scenario.commit("orders-db", "recovered", level="none", severity="ok", status="closed")
    status, error = post_eta(scenario, incident_id, to_iso(now + timedelta(hours=1)))
    assert status == 409 and "closed" in error["message"]
