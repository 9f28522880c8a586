"""Maintenance windows hold notifications while states are still evaluated, and the records say why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector_sla.timeutil import parse_iso, to_iso
from tests.integration.test_escalation_support import later, scenario
from tests.support import call_api

__all__ = ["scenario"]


def open_window(scenario, scope, scope_id, minutes=60, reason="database failover rehearsal"):
    now = datetime.now(UTC)
    body = {"scope": scope, "scope_id": scope_id, "ends_at": to_iso(now + timedelta(minutes=minutes)), "reason": reason}
    status, window = call_api(
        scenario.aws, scenario.escalation_api, "EscalationApiFunction", "POST", "/alerts/maintenance-windows", body=body
    )
    assert status == 201, window
    return window


def test_a_team_window_holds_notifications_while_the_state_is_still_recorded(scenario):
    # Given a maintenance window on the connector's owner team
    window = open_window(scenario, "team", "payments-data")

    # When its connector opens an incident
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()

    # Then the state and transition are recorded, but nothing was sent: the notification is held, and says why
    assert scenario.ledger.read("orders-db")["level"] == "L1"
    assert scenario.provider.received() == []
    [held] = scenario.notifications(incident_id)
    assert held["delivery_status"] == "held" and held["maintenance_window_id"] == window["window_id"]
    assert (
        "database failover rehearsal" in held["suppressed_reason"] and window["window_id"] in held["suppressed_reason"]
    )
    assert held["due_kind"] == "release" and held["attempt_count"] == 0
    # And a tick inside the window keeps holding it
    scenario.tick(later(parse_iso(held["due_at"]), seconds=1))
    assert scenario.notification(held["notification_id"])["delivery_status"] == "held"
    assert scenario.provider.received() == []


def test_a_window_of_another_connector_holds_nothing(scenario):
    # Given a window on a different connector
    scenario.register_connector("billing-db")
    open_window(scenario, "connector", "billing-db")

    # When orders-db opens an incident
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()

    # Then it is paged as usual
    [notification] = scenario.notifications(incident_id)
    assert notification["delivery_status"] == "sent"


def test_cancelling_the_window_releases_the_held_alert_on_the_next_tick(scenario):
    # Given a held L1 alert
    scenario.register_connector("orders-db")
    window = open_window(scenario, "connector", "orders-db")
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    [held] = scenario.notifications(incident_id)

    # When the window is ended early through the API and the timer ticks at the hold's re-check
    status, cancelled = call_api(
        scenario.aws,
        scenario.escalation_api,
        "EscalationApiFunction",
        "DELETE",
        f"/alerts/maintenance-windows/{window['window_id']}",
    )
    assert status == 200 and cancelled["status"] == "cancelled"
    scenario.tick(later(parse_iso(held["due_at"]), seconds=1))

    # Then the alert goes out, with its ack timer starting from the release
    released = scenario.notification(held["notification_id"])
    assert released["delivery_status"] == "sent" and "released_at" in released
    assert released["maintenance_window_id"] == window["window_id"] and "suppressed_reason" not in released
    assert released["due_kind"] == "ack_timeout"
    assert len(scenario.provider.received("webhook")) == 1
    # And the cancelled window is still listed, as evidence
    status, page = call_api(
        scenario.aws,
        scenario.escalation_api,
        "EscalationApiFunction",
        "GET",
        "/alerts/maintenance-windows",
        query={"include_ended": "true"},
    )
    assert [item["status"] for item in page["items"]] == ["cancelled"]


def test_a_held_alert_of_a_level_the_incident_left_is_suppressed_with_a_delivery_row(scenario):
    # Given an incident that opened and escalated to L2 during a window
    scenario.register_connector("orders-db")
    window = open_window(scenario, "connector", "orders-db")
    incident_id = scenario.open_incident("orders-db")
    scenario.commit("orders-db", "escalated", level="L2", severity="critical")
    scenario.deliver_stream()

    # When the window ends and the timer ticks
    call_api(
        scenario.aws,
        scenario.escalation_api,
        "EscalationApiFunction",
        "DELETE",
        f"/alerts/maintenance-windows/{window['window_id']}",
    )
    due = max(parse_iso(item["due_at"]) for item in scenario.notifications(incident_id))
    scenario.tick(later(due, seconds=1))

    # Then only the current level (L2) is delivered; the superseded L1 page is suppressed and says why
    notifications = {item["level"]: item for item in scenario.notifications(incident_id) if item["channel"] != "email"}
    l1 = notifications["L1"]
    assert l1["delivery_status"] == "suppressed" and "superseded" in l1["suppressed_reason"]
    [row] = scenario.deliveries(l1["notification_id"])
    assert row["status"] == "suppressed" and "superseded" in row["error"]
    l2 = [item for item in scenario.notifications(incident_id) if item["level"] == "L2"]
    assert {item["delivery_status"] for item in l2} == {"sent"}
    assert scenario.provider.received("webhook") == []


def test_recovery_during_a_window_suppresses_the_held_alerts_and_sends_no_resolved_notice(scenario):
    # Given a held alert
    open_window(scenario, "team", "payments-data")
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()

    # When the connector recovers while the window is on
    scenario.commit("orders-db", "recovered", level="none", severity="ok", status="closed")
    scenario.deliver_stream()

    # Then the alert is closed and suppressed with the reason, and nobody was told anything
    [alert] = scenario.notifications(incident_id)
    assert alert["ack_state"] == "closed" and alert["delivery_status"] == "suppressed"
    assert "recovered while the notification was held" in alert["suppressed_reason"]
    [row] = scenario.deliveries(alert["notification_id"])
    assert row["status"] == "suppressed"
    assert scenario.provider.received() == [] and scenario.emails() == []


def test_windows_are_validated_and_nothing_is_written_when_refused(scenario):
    now = datetime.now(UTC)
    cases = [
        (
            {
                "scope": "team",
                "scope_id": "payments-data",
                "ends_at": to_iso(now - timedelta(minutes=1)),
                "reason": "x y z",
            },
            "ends_at must be in the future",
        ),
        (
            {
                "scope": "team",
                "scope_id": "payments-data",
                "ends_at": to_iso(now + timedelta(days=20)),
                "reason": "long",
            },
            "at most 14 days",
        ),
        (
            {
                "scope": "connector",
                "scope_id": "unknown-db",
                "ends_at": to_iso(now + timedelta(hours=1)),
                "reason": "nope",
            },
            "not registered",
        ),
        (
            {"scope": "region", "scope_id": "eu", "ends_at": to_iso(now + timedelta(hours=1)), "reason": "nope"},
            "body.scope",
        ),
        (
            {"scope": "team", "scope_id": "payments-data", "ends_at": "2030-01-01T00:00:00", "reason": "no offset"},
            "body.ends_at",
        ),
    ]
    for body, expected in cases:
        # When an invalid window is posted
        status, error = call_api(
            scenario.aws,
            scenario.escalation_api,
            "EscalationApiFunction",
            "POST",
            "/alerts/maintenance-windows",
            body=body,
        )
        # Then it is a 400 that says what was wrong
        assert status == 400 and expected in error["message"], (body, error)
    # And no window exists
    status, page = call_api(
        scenario.aws,
        scenario.escalation_api,
        "EscalationApiFunction",
        "GET",
        "/alerts/maintenance-windows",
        query={"include_ended": "true"},
    )
    assert page["items"] == []
    status, error = call_api(
        scenario.aws, scenario.escalation_api, "EscalationApiFunction", "DELETE", "/alerts/maintenance-windows/mnt_nope"
    )
    assert status == 404
