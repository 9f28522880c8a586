"""The pure rules of escalation: transitions, attempts and backoff, timers, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.alerts.records import new_notification
from connector_sla.escalation.chains import ChainLevel, ChainTarget
from connector_sla.escalation.maintenance import MaintenanceWindow
from connector_sla.escalation.rules import (
    LONGEST_RETRY,
    MAX_ATTEMPTS,
    AttemptResult,
    after_attempt,
    alert_drafts,
    classify_http,
    decide_ack_timeout,
    decide_l3,
    decide_release,
    level_change,
    new_transition,
    next_level,
    recovery_plan,
    retry_delay,
    watch_timer,
)
from connector_sla.timeutil import to_iso

NOW = datetime(2026, 12, 3, 19, 22, tzinfo=UTC)
STATE = {
    "connector_id": "orders-db",
    "connector_name": "Orders",
    "owner_team": "payments-data",
    "severity": "critical",
    "level": "L2",
    "incident_id": "inc_01JEXAMPLE0000000000000000",
    "incident_status": "open",
    "signals": {"freshness_lag": {"status": "critical", "value": 1000, "warning": 300, "critical": 900}},
    "last_transition": {"transition_id": "trn_L2", "kind": "escalated", "to_level": "L2"},
    "version": 7,
}


def alert(level="L2", transition_id="trn_L2", target="a@example.com", **changes):
    record = new_notification(
        incident_id=STATE["incident_id"],
        transition_id=transition_id,
        channel="email",
        target=target,
        kind="alert",
        level=level,
        now=NOW,
        context={"connector_id": "orders-db", "ack_timeout_seconds": 1800, "eta_required_within_seconds": 900},
    )
    return {**record, "dispatched_at": to_iso(NOW), **changes}


# ---------------------------------------------------------------------------------------------- transitions


def test_a_row_change_without_a_new_transition_id_is_not_a_transition():
    old = {"last_transition": {"transition_id": "trn_1", "kind": "opened"}}
    assert new_transition({"last_transition": {"transition_id": "trn_1", "kind": "opened"}}, old) is None
    assert new_transition({"version": 3}, old) is None
    assert new_transition({"last_transition": {"transition_id": "trn_2", "kind": "escalated"}}, old)["kind"] == (
        "escalated"
    )
    assert new_transition({"last_transition": {"transition_id": "trn_1", "kind": "opened"}}, None)["kind"] == "opened"


def test_levels_go_up_one_at_a_time_and_stop_at_l3():
    assert [next_level(level) for level in ("none", "L1", "L2", "L3")] == ["L1", "L2", "L3", None]


def test_each_target_of_the_level_gets_one_alert_held_under_a_window():
    level = ChainLevel("L2", (ChainTarget("email", "a@example.com"), ChainTarget("email", "b@example.com")), 1800)
    transition = {"transition_id": "trn_L2", "kind": "escalated"}
    window = MaintenanceWindow(
        "mnt_1", "team", "payments-data", to_iso(NOW), to_iso(NOW + timedelta(hours=2)), "upgrade", to_iso(NOW), "me"
    )

    drafts = alert_drafts(STATE, transition, level, None, NOW)
    held = alert_drafts(STATE, transition, level, window, NOW)

    assert [d["target"] for d in drafts] == ["a@example.com", "b@example.com"]
    assert len({d["notification_id"] for d in drafts}) == 2
    assert all(d["dispatched_at"] == to_iso(NOW) and d["summary"].startswith("[L2] Orders") for d in drafts)
    assert all(d["delivery_status"] == "held" and "upgrade" in d["suppressed_reason"] for d in held)
    assert all(d["due_kind"] == "release" and "dispatched_at" not in d for d in held)
    assert [d["notification_id"] for d in held] == [d["notification_id"] for d in drafts]


# ---------------------------------------------------------------------------------------------- attempts


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "sent"),
        (202, "sent"),
        (429, "retry"),
        (408, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "final"),
        (401, "final"),
        (404, "final"),
        (301, "final"),
    ],
)
def test_http_answers_are_classified(status, outcome):
    assert classify_http(status) == outcome


@given(attempt=st.integers(min_value=1, max_value=50), notification_id=st.text(min_size=1, max_size=40))
def test_backoff_grows_and_stays_bounded(attempt, notification_id):
    delay = retry_delay(attempt, notification_id)
    assert timedelta(seconds=30) <= delay <= LONGEST_RETRY * 1.2
    assert retry_delay(attempt + 1, notification_id) >= delay


def test_a_failed_attempt_is_retried_later_until_the_last_which_is_final():
    notification = alert(attempt_count=1)
    retry = after_attempt(notification, AttemptResult("retry", 503), NOW, attempt=1)
    last = after_attempt(notification, AttemptResult("retry", 503), NOW, attempt=MAX_ATTEMPTS)
    refused = after_attempt(notification, AttemptResult("final", 400), NOW, attempt=1)

    assert retry.row_status == "failed" and retry.set_["delivery_status"] == "pending"
    assert retry.set_["due_kind"] == "retry" and retry.set_["due_at"] > to_iso(NOW)
    for plan in (last, refused):
        assert plan.row_status == "failed_final" and plan.set_["delivery_status"] == "failed"
        # The chain keeps pushing: an undeliverable alert still times out
        assert plan.set_["due_kind"] == "ack_timeout"


def test_a_sent_alert_starts_its_ack_timer_and_a_sent_notice_starts_nothing():
    sent = after_attempt(alert(), AttemptResult("sent", 202), NOW, attempt=1)
    notice = after_attempt(alert(kind="resolved", ack_state="closed"), AttemptResult("sent", 202), NOW, attempt=1)

    assert sent.set_["due_kind"] == "ack_timeout"
    assert sent.set_["due_at"] == to_iso(NOW + timedelta(seconds=1800))
    assert "due_kind" not in notice.set_ and "due_at" in notice.remove


def test_an_alert_closed_while_its_attempt_failed_is_suppressed_not_retried():
    plan = after_attempt(alert(ack_state="closed"), AttemptResult("retry", 503), NOW, attempt=1)
    assert plan.set_["delivery_status"] == "suppressed" and "due_at" in plan.remove


def test_l3_alerts_watch_the_eta_before_the_ack_timeout():
    assert watch_timer(alert(level="L3"), NOW) == ("eta_reminder", NOW + timedelta(seconds=900))
    assert watch_timer(alert(level="L2", ack_state="acknowledged"), NOW) is None


# ---------------------------------------------------------------------------------------------- timers


def test_an_unacknowledged_alert_escalates_only_after_its_timeout():
    notification = alert()
    assert decide_ack_timeout(notification, STATE, [], NOW + timedelta(seconds=60)).action == "wait"
    decision = decide_ack_timeout(notification, STATE, [], NOW + timedelta(seconds=1800))
    assert decision.action == "escalate" and "L2 unacknowledged for 1800 s" in decision.reason


@pytest.mark.parametrize(
    ("state_changes", "reason"),
    [
        ({"incident_status": "closed"}, "is closed"),
        ({"incident_id": "inc_other0000000000"}, "is closed"),
        ({"level": "L3"}, "at L3 now"),
        ({"last_transition": {"transition_id": "trn_new", "kind": "ack_timeout", "to_level": "L2"}}, "newer L2 round"),
    ],
)
def test_a_timer_stops_when_the_incident_moved_on(state_changes, reason):
    decision = decide_ack_timeout(alert(), {**STATE, **state_changes}, [], NOW + timedelta(hours=1))
    assert decision.action == "stop" and reason in decision.reason


def test_a_peer_of_the_same_round_acknowledging_stops_the_escalation():
    peer = alert(target="b@example.com", ack_state="acknowledged")
    other_round = alert(transition_id="trn_old", target="c@example.com", ack_state="acknowledged")
    assert decide_ack_timeout(alert(), STATE, [peer], NOW + timedelta(hours=1)).action == "stop"
    assert decide_ack_timeout(alert(), STATE, [other_round], NOW + timedelta(hours=1)).action == "escalate"


L3_STATE = {
    **STATE,
    "level": "L3",
    "last_transition": {"transition_id": "trn_L2", "kind": "escalated", "to_level": "L3"},
}


def test_l3_reminds_every_eta_window_until_an_eta_and_re_escalates_when_unacknowledged():
    l3 = alert(level="L3")
    early = decide_l3(l3, L3_STATE, [], NOW + timedelta(minutes=10))
    remind = decide_l3(l3, L3_STATE, [], NOW + timedelta(minutes=16))
    overdue = decide_l3(l3, L3_STATE, [], NOW + timedelta(minutes=31))

    assert early.action == "wait" and early.next_due == NOW + timedelta(minutes=15)
    assert remind.action == "remind" and remind.reminder_index == 1 and remind.next_due == NOW + timedelta(minutes=30)
    assert overdue.action == "reescalate" and "no recovery ETA" in overdue.reason


def test_an_acknowledged_l3_without_eta_keeps_being_reminded():
    l3 = alert(level="L3", ack_state="acknowledged")
    decision = decide_l3(l3, L3_STATE, [], NOW + timedelta(minutes=47))
    assert decision.action == "remind" and decision.reminder_index == 3


def test_an_eta_waits_until_it_passes_then_re_escalates():
    eta = NOW + timedelta(hours=1)
    state = {**L3_STATE, "recovery_eta": to_iso(eta)}
    waiting = decide_l3(alert(level="L3"), state, [], NOW + timedelta(minutes=40))
    passed = decide_l3(alert(level="L3"), state, [], eta)
    assert waiting.action == "wait" and waiting.next_due == eta
    assert passed.action == "reescalate" and "passed without recovery" in passed.reason


def test_a_newer_l3_round_ends_the_old_watch():
    newer = alert(level="L3", transition_id="trn_again", created_at=to_iso(NOW + timedelta(minutes=31)))
    decision = decide_l3(alert(level="L3"), L3_STATE, [newer], NOW + timedelta(minutes=40))
    assert decision.action == "stop" and "newer L3 round" in decision.reason


def test_a_held_alert_is_released_held_or_suppressed():
    held = alert(delivery_status="held")
    window = MaintenanceWindow(
        "mnt_1", "team", "payments-data", to_iso(NOW), to_iso(NOW + timedelta(hours=2)), "upgrade", to_iso(NOW), "me"
    )
    assert decide_release(held, STATE, window, NOW).action == "hold"
    assert decide_release(held, STATE, None, NOW).action == "release"
    assert decide_release(held, {**STATE, "level": "L3"}, None, NOW).action == "suppress"
    assert decide_release(held, {**STATE, "incident_status": "closed"}, None, NOW).action == "suppress"


def test_a_re_escalation_forgets_the_eta_that_passed_and_keeps_the_rest():
    state = {**L3_STATE, "recovery_eta": to_iso(NOW), "eta_recorded_by": "dm", "critical_streak": 4}
    new_state, transition = level_change(
        state, kind="reescalated", to_level="L3", reason="eta passed", now=NOW, transition_id="trn_x", tick="t"
    )
    assert "recovery_eta" not in new_state and "eta_recorded_by" not in new_state
    assert new_state["critical_streak"] == 4 and new_state["polls_at_level"] == 0
    assert transition["kind"] == "reescalated" and transition["from_level"] == transition["to_level"] == "L3"
    assert None not in transition.values() and transition["day"] == "2026-12-03"


# ---------------------------------------------------------------------------------------------- recovery


def test_recovery_closes_open_notifications_and_tells_each_notified_target_once():
    sent_l1 = alert(level="L1", transition_id="trn_L1", target="x@example.com", delivery_status="sent")
    sent_l2 = alert(target="x@example.com", delivery_status="sent", ack_state="acknowledged")
    held = alert(target="y@example.com", delivery_status="held", suppressed_reason="held by mnt_1")
    closed = alert(target="z@example.com", delivery_status="sent", ack_state="closed")
    transition = {"transition_id": "trn_rec", "kind": "recovered"}

    closures, resolved = recovery_plan([sent_l1, sent_l2, held, closed], STATE, transition, NOW)

    assert {c.notification["target"] for c in closures} == {"x@example.com", "y@example.com"}
    assert all(c.set_["ack_state"] == "closed" and c.set_["ack_source"] == "recovery" for c in closures)
    [suppressed] = [c for c in closures if c.suppressed_reason]
    assert suppressed.notification is held and "held by mnt_1" in suppressed.suppressed_reason
    # Everyone whose alert went out hears of the recovery, even when their alert was already closed
    assert sorted(item["target"] for item in resolved) == ["x@example.com", "z@example.com"]
    notice = next(item for item in resolved if item["target"] == "x@example.com")
    assert notice["kind"] == "resolved" and notice["ack_state"] == "closed"
    assert sorted(notice["resolves"]) == sorted([sent_l1["notification_id"], sent_l2["notification_id"]])
    assert notice["level"] == "L2"
