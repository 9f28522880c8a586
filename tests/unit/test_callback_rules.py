"""Pure rules of recording a callback: forward-only ACK, what leaves the indexes, stable ids, records, ETAs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.alerts.ack import ACK_STATES, ack_rank
from connector_sla.callbacks.eta import decide_eta
from connector_sla.callbacks.intake import (
    NORMALIZED_STATUSES,
    CallbackIntake,
    callback_id_for,
    check_intake,
    target_notification_id,
)
from connector_sla.callbacks.rules import callback_record, plan_ack
from connector_sla.timeutil import to_iso

AT = datetime(2026, 12, 3, 19, 22, tzinfo=UTC)


def intake(**overrides) -> CallbackIntake:
    values = {"provider": "generic", "status": "acknowledged", "received_at": AT, "notification_id": "ntf_A"}
    return CallbackIntake(**{**values, **overrides})


def notification(**overrides) -> dict:
    row = {
        "notification_id": "ntf_A",
        "incident_id": "inc_1",
        "connector_id": "orders",
        "kind": "alert",
        "ack_state": "unacked",
        "unacked_shard": "3",
        "due_shard": "3",
        "due_at": "2026-12-03T19:37:00.000Z",
        "due_kind": "ack_timeout",
        "version": 4,
    }
    return {**row, **overrides}


@given(current=st.sampled_from(ACK_STATES), status=st.sampled_from(NORMALIZED_STATUSES))
def test_the_ack_state_never_moves_backwards(current, status):
    # Given a notification in any ACK state and a callback with any status
    row = notification(ack_state=current)

    # When the callback's effect is planned
    change = plan_ack(row, intake(status=status))

    # Then it applies exactly when the status is ACK-like and ahead, and the state never goes back
    assert change.applied == (status in {"acknowledged", "resolved", "closed"} and ack_rank(status) > ack_rank(current))
    assert ack_rank(change.after) >= ack_rank(change.before)
    assert change.before == current
    if not change.applied:
        assert change.set_fields == {} and change.remove_fields == ()


def test_an_acknowledgement_leaves_the_unacked_index_and_cancels_the_ack_timeout():
    # Given an unacked alert waiting on its ack timeout
    row = notification()

    # When an acknowledged callback is planned
    change = plan_ack(row, intake(actor="dana@example.com"))

    # Then it sets the state, time and who, and removes the sparse index attributes
    assert change.set_fields["ack_state"] == "acknowledged"
    assert change.set_fields["acknowledged_at"] == "2026-12-03T19:22:00.000Z"
    assert change.set_fields["ack_source"] == "callback"
    assert change.set_fields["ack_by"] == "dana@example.com"
    assert set(change.remove_fields) == {"unacked_shard", "due_shard", "due_at", "due_kind"}
    assert change.clears_ack_timer


def test_an_acknowledgement_keeps_a_delivery_retry_timer():
    change = plan_ack(notification(due_kind="retry"), intake())
    assert change.remove_fields == ("unacked_shard",)
    assert not change.clears_ack_timer


def test_without_a_responder_the_provider_is_who_acknowledged():
    assert plan_ack(notification(), intake()).set_fields["ack_by"] == "generic"


def test_a_late_acknowledgement_after_resolved_changes_nothing():
    change = plan_ack(notification(ack_state="resolved"), intake(status="acknowledged"))
    assert (change.applied, change.before, change.after) == (False, "resolved", "resolved")


def test_the_same_provider_event_is_the_same_callback_and_other_providers_are_not():
    first = callback_id_for(intake(provider_event_id="evt-1", dedup_basis=b"1.{}"))
    again = callback_id_for(intake(provider_event_id="evt-1", dedup_basis=b"2.{ }"))
    other_provider = callback_id_for(intake(provider="pagerduty", provider_event_id="evt-1"))
    assert first == again
    assert first != other_provider
    assert first.startswith("cbk_")


@given(body=st.binary(max_size=64), other=st.binary(max_size=64))
def test_without_an_event_id_the_signed_body_and_timestamp_identify_a_callback(body, other):
    same = callback_id_for(intake(dedup_basis=b"1796325720." + body)) == callback_id_for(
        intake(dedup_basis=b"1796325720." + other)
    )
    assert same == (body == other)


def test_a_delivery_id_names_its_notification():
    assert target_notification_id(None, "dlv_01JEXAMPLE_3") == "ntf_01JEXAMPLE"
    assert target_notification_id("ntf_B", "dlv_01JEXAMPLE_3") == "ntf_B"
    assert target_notification_id(None, "not-ours") is None


@pytest.mark.parametrize(
    "overrides",
    [{"status": "acked"}, {"source": "email"}, {"signature": "skipped"}, {"notification_id": None}],
)
def test_an_intake_outside_the_contract_is_refused(overrides):
    with pytest.raises(ValueError):
        check_intake(intake(**overrides))


def test_a_matched_record_takes_incident_and_connector_from_the_notification():
    # Given a callback that claims another incident than the notification's
    claim = intake(incident_id="inc_claimed", provider_event_id="evt-9", actor="dana")
    row = notification()

    # When its record is built
    record = callback_record(claim, callback_id="cbk_X", notification=row, change=plan_ack(row, claim))

    # Then our own notification is trusted, and nothing absent is stored as null
    assert record["incident_id"] == "inc_1" and record["connector_id"] == "orders"
    assert record["matched"] is True and "unmatched_reason" not in record
    assert record["ack_applied"] is True
    assert (record["ack_state_before"], record["ack_state_after"]) == ("unacked", "acknowledged")
    assert record["day"] == "2026-12-03" and record["received_at"] == "2026-12-03T19:22:00.000Z"
    assert None not in record.values()


def test_an_unmatched_record_keeps_what_the_provider_sent():
    claim = intake(notification_id="ntf_gone", incident_id="inc_claimed")
    record = callback_record(claim, callback_id="cbk_Y", notification=None, change=None)
    assert record["matched"] is False
    assert record["unmatched_reason"] == "notification_not_found"
    assert (record["notification_id"], record["incident_id"]) == ("ntf_gone", "inc_claimed")
    assert "ack_applied" in record and record["ack_applied"] is False


# ---------------------------------------------------------------------------------------------- ETA


def open_state(**overrides) -> dict:
    state = {
        "connector_id": "orders",
        "incident_id": "inc_1",
        "incident_status": "open",
        "level": "L3",
        "severity": "critical",
        "version": 7,
    }
    return {**state, **overrides}


def test_an_eta_for_the_open_incident_becomes_an_eta_recorded_transition():
    eta = "2026-12-03T21:00:00.000Z"
    decision = decide_eta(open_state(), incident_id="inc_1", eta=eta, provider="generic", responder="dana", at=AT)
    assert decision.reason == "recorded"
    assert decision.state["recovery_eta"] == eta and decision.state["eta_recorded_by"] == "generic"
    assert decision.transition["kind"] == "eta_recorded"
    assert decision.transition["actor"] == "generic" and decision.transition["eta"] == eta
    assert decision.transition["from_level"] == decision.transition["to_level"] == "L3"
    assert "responder dana" in decision.transition["reason"]


@pytest.mark.parametrize(
    ("state", "eta", "reason"),
    [
        (None, "2026-12-03T21:00:00.000Z", "incident_not_open"),
        (open_state(incident_status="closed"), "2026-12-03T21:00:00.000Z", "incident_not_open"),
        (open_state(incident_id="inc_2"), "2026-12-03T21:00:00.000Z", "incident_not_open"),
        (open_state(), "2026-12-03T19:00:00.000Z", "eta_in_the_past"),
        (
            open_state(eta_recorded_at=to_iso(AT + timedelta(minutes=5))),
            "2026-12-03T21:00:00.000Z",
            "newer_eta_recorded",
        ),
        (open_state(recovery_eta="2026-12-03T21:00:00.000Z"), "2026-12-03T22:00:00+01:00", "eta_unchanged"),
        (open_state(), "2026-12-10T19:22:01.000Z", "eta_too_far_ahead"),
    ],
)
def test_an_eta_is_not_recorded_when_it_would_be_wrong(state, eta, reason):
    decision = decide_eta(state, incident_id="inc_1", eta=eta, provider="generic", responder=None, at=AT)
    assert (decision.state, decision.transition, decision.reason) == (None, None, reason)
