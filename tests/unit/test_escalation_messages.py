"""What each channel says: email subject and body, the generic webhook body, PagerDuty Events v2 bodies."""

from __future__ import annotations

from connector_sla.escalation.messages import (
    alert_summary,
    email_message,
    next_steps,
    pagerduty_events,
    webhook_payload,
)

SIGNALS = {
    "freshness_lag": {"status": "critical", "value": 1840, "warning": 300, "critical": 900},
    "pending_replay": {"status": "warning", "value": 150, "warning": 100, "critical": 1000},
    "dead_letter_growth": {"status": "ok", "value": 0, "warning": 10, "critical": 50},
}
NOTIFICATION = {
    "notification_id": "ntf_0123456789ABCDEFGHJKMNPQRS",
    "incident_id": "inc_01JEXAMPLE0000000000000000",
    "connector_id": "orders-db",
    "connector_name": "Orders (Postgres CDC)",
    "owner_team": "payments-data",
    "level": "L2",
    "kind": "alert",
    "severity": "critical",
    "signals": SIGNALS,
    "ack_timeout_seconds": 1800,
    "summary": alert_summary(
        level="L2",
        severity="critical",
        connector_id="orders-db",
        connector_name="Orders (Postgres CDC)",
        signals=SIGNALS,
    ),
    "created_at": "2026-12-03T19:22:00.000Z",
}
RUNBOOK = "https://runbooks.example.com/connector-sla"


def test_the_summary_names_level_connector_and_the_worst_signals_first():
    assert NOTIFICATION["summary"] == (
        "[L2] Orders (Postgres CDC) (orders-db) SLA critical: freshness lag, pending replay backlog"
    )


def test_an_email_carries_connector_level_signals_runbook_and_next_steps():
    subject, body = email_message(NOTIFICATION, runbook_url=RUNBOOK)
    assert subject == NOTIFICATION["summary"]
    for text in (
        "Connector: Orders (Postgres CDC) (orders-db)",
        "Level: L2",
        "freshness lag: critical at 1840 s (warning 300 s, critical 900 s)",
        "pending replay backlog: warning at 150 rows",
        f"Runbook: {RUNBOOK}",
        "What to do next:",
        "within 30 minutes",
    ):
        assert text in body, text
    assert body.index("freshness lag") < body.index("dead-letter growth")


def test_each_kind_and_level_says_what_to_do():
    assert "source-health" in next_steps({**NOTIFICATION, "level": "L1"})
    l3 = next_steps({**NOTIFICATION, "level": "L3", "eta_required_within_seconds": 900})
    assert "POST /alerts/incidents/inc_01JEXAMPLE0000000000000000/eta within 15 minutes" in l3
    assert "escalates to the next level" not in l3
    assert "Record one now" in next_steps({**NOTIFICATION, "kind": "reminder"})
    assert "nothing more is needed" in next_steps({**NOTIFICATION, "kind": "resolved"})


def test_the_webhook_body_carries_the_correlation_keys_the_provider_sends_back():
    payload = webhook_payload(NOTIFICATION, "dlv_0123456789ABCDEFGHJKMNPQRS_2", runbook_url=RUNBOOK)
    assert payload["custom_details"]["notification_id"] == NOTIFICATION["notification_id"]
    assert payload["custom_details"]["delivery_id"] == "dlv_0123456789ABCDEFGHJKMNPQRS_2"
    assert payload["custom_details"]["incident_id"] == NOTIFICATION["incident_id"]
    assert payload["level"] == "L2" and payload["signals"] == SIGNALS and payload["runbook_url"] == RUNBOOK
    assert payload["status"] == "triggered" and "resolves" not in payload


def test_pagerduty_gets_a_trigger_deduplicated_by_notification_and_resolves_per_alert():
    [trigger] = pagerduty_events(NOTIFICATION, "dlv_x_1", routing_key="rk", runbook_url=RUNBOOK)
    assert trigger["routing_key"] == "rk" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == NOTIFICATION["notification_id"]
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "orders-db"
    assert trigger["payload"]["custom_details"]["delivery_id"] == "dlv_x_1"
    assert trigger["links"] == [{"href": RUNBOOK, "text": "Runbook"}]
    resolved = {**NOTIFICATION, "kind": "resolved", "resolves": ["ntf_A", "ntf_B"]}
    resolves = pagerduty_events(resolved, "dlv_y_1", routing_key="rk", runbook_url=RUNBOOK)
    assert [(event["event_action"], event["dedup_key"]) for event in resolves] == [
        ("resolve", "ntf_A"),
        ("resolve", "ntf_B"),
    ]
