"""An incident's whole escalation through the real handlers: L1 page, L2 emails, ack timeout to L3 with the
bridge, recovery with resolved notices, and stream redeliveries that send nothing twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

from connector_sla.evidence.chain import ChainVerifier
from connector_sla.timeutil import parse_iso
from tests.integration.test_escalation_support import CallbackRelay, later, read_secret, scenario

__all__ = ["scenario"]


def alerts_of(notifications, level):
    return [item for item in notifications if item["kind"] == "alert" and item["level"] == level]


def test_opened_pages_the_oncall_provider_once_with_a_signed_webhook(scenario):
    # Given a connector whose SLA state opens an incident at L1
    incident_id = scenario.open_incident("orders-db")

    # When the stream record reaches the escalation function
    response = scenario.deliver_stream()

    # Then the default on-call provider received one signed webhook naming the notification and the delivery
    assert response == {"batchItemFailures": []}
    [webhook] = scenario.provider.received("webhook")
    assert webhook["signature"] == "verified"
    payload = webhook["payload"]
    [notification] = scenario.notifications(incident_id)
    assert payload["incident_id"] == incident_id and payload["level"] == "L1"
    assert payload["custom_details"] == {
        "notification_id": notification["notification_id"],
        "delivery_id": notification["last_delivery_id"],
        "incident_id": incident_id,
        "connector_id": "orders-db",
        "level": "L1",
        "kind": "alert",
    }
    assert payload["signals"]["freshness_lag"]["status"] == "warning"
    assert payload["runbook_url"].startswith("https://")
    # And the notification is sent, unacknowledged, with its ack timer, and its one delivery row is sealed
    assert notification["delivery_status"] == "sent" and notification["ack_state"] == "unacked"
    assert notification["due_kind"] == "ack_timeout" and "unacked_shard" in notification
    [row] = scenario.deliveries(notification["notification_id"])
    assert row["status"] == "sent" and row["response_code"] == 202 and row["attempt"] == 1
    assert isinstance(row["latency_ms"], int) and row["latency_ms"] >= 0 and "error" not in row
    assert (row["notification_id"], row["channel"], row["target"]) == (
        notification["notification_id"],
        "oncall",
        "generic",
    )
    assert row["delivery_id"] == "dlv_" + notification["notification_id"][4:] + "_1"
    assert ChainVerifier().check(row, "deliveries") is None
    assert notification["delivery_chain_hash"] == row["record_hash"]


def test_the_signature_is_an_hmac_of_timestamp_and_body_with_the_provider_secret(scenario):
    # Given the provider's signing secret
    secret = read_secret(scenario.aws)
    captured = {}
    original = scenario.provider.provider._verify

    def capture(request, body):
        captured.update(headers=dict(request.headers), body=body)
        return original(request, body)

    scenario.provider.provider._verify = capture

    # When an incident opens
    scenario.open_incident("orders-db")
    scenario.deliver_stream()

    # Then X-Signature is sha256=<hex HMAC of "<X-Signature-Timestamp>.<raw body>">
    timestamp = captured["headers"]["X-Signature-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + captured["body"], hashlib.sha256).hexdigest()
    assert captured["headers"]["X-Signature"] == f"sha256={expected}"
    assert json.loads(captured["body"])["custom_details"]["delivery_id"].startswith("dlv_")


def test_a_redelivered_batch_sends_nothing_twice(scenario):
    # Given an opened incident whose batch was processed
    incident_id = scenario.open_incident("orders-db")
    records = scenario.new_stream_records()
    scenario.deliver_stream(records)

    # When the same batch is delivered again (as after a partial failure), twice
    scenario.deliver_stream(records)
    scenario.deliver_stream(records)

    # Then the provider still has one webhook, and the notification one delivery row
    assert len(scenario.provider.received("webhook")) == 1
    [notification] = scenario.notifications(incident_id)
    assert len(scenario.deliveries(notification["notification_id"])) == 1


def test_critical_repeat_emails_the_risk_and_platform_owners_with_what_to_do(scenario):
    # Given an open incident that escalates to L2
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    scenario.commit("orders-db", "escalated", level="L2", severity="critical")

    # When the escalation function sees it
    scenario.deliver_stream()

    # Then the risk owner and the platform owner each get one email with the connector, level, signals, runbook
    emails = scenario.emails()
    recipients = sorted(address for message in emails for address in message.destinations["ToAddresses"])
    assert recipients == ["data-platform-owner@example.com", "risk-owner@example.com"]
    for message in emails:
        assert "[L2]" in message.subject and "orders-db" in message.subject
        assert "freshness lag: critical at 420 s" in message.body
        assert "Runbook: https://" in message.body
        assert "What to do next:" in message.body and "escalates to the next level" in message.body
    l2 = alerts_of(scenario.notifications(incident_id), "L2")
    assert {item["channel"] for item in l2} == {"email"}
    assert all(item["delivery_status"] == "sent" for item in l2)


def test_unacknowledged_l2_escalates_to_l3_through_the_ledger_and_opens_the_bridge(scenario):
    # Given an incident at L2 whose emails were sent and nobody acknowledged
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    scenario.commit("orders-db", "escalated", level="L2", severity="critical")
    scenario.deliver_stream()
    l2 = alerts_of(scenario.notifications(incident_id), "L2")
    dispatched = parse_iso(l2[0]["dispatched_at"])

    # When the timer ticks before the ack timeout, then after it
    scenario.tick(later(dispatched, seconds=600))
    assert scenario.ledger.read("orders-db")["level"] == "L2"
    scenario.tick(later(dispatched, seconds=1801))

    # Then one ack_timeout transition moved the incident to L3, sealed in the connector's chain
    state = scenario.ledger.read("orders-db")
    assert state["level"] == "L3" and state["last_transition"]["kind"] == "ack_timeout"
    kinds = [transition["kind"] for transition in scenario.transitions("orders-db")]
    assert kinds.count("ack_timeout") == 1
    # And once the stream carries it, the duty manager is emailed and the bridge webhook opens the bridge
    scenario.deliver_stream()
    l3 = alerts_of(scenario.notifications(incident_id), "L3")
    assert sorted(item["channel"] for item in l3) == ["bridge", "email"]
    assert [item["payload"]["level"] for item in scenario.provider.received("bridge")] == ["L3"]
    assert scenario.provider.received("bridge")[0]["signature"] == "verified"
    assert any("duty-manager@example.com" in m.destinations["ToAddresses"] for m in scenario.emails())
    # And the L2 timers are gone: a later tick does not escalate again
    scenario.tick(later(dispatched, seconds=1900))
    assert [t["kind"] for t in scenario.transitions("orders-db")].count("ack_timeout") == 1


def test_an_acknowledged_l1_does_not_escalate(scenario):
    # Given an L1 page that the responder acknowledged (as a callback would record it)
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    [notification] = scenario.notifications(incident_id)
    from connector_sla.alerts.records import ack_changes
    from connector_sla.alerts.store import NotificationStore
    from connector_sla.escalation.wiring import notification_store

    store: NotificationStore = notification_store()
    set_, remove = ack_changes(notification, "acknowledged", at=datetime.now(UTC), source="callback", actor="sre")
    store.update(notification, set_=set_, remove=remove, now=datetime.now(UTC))

    # When the timer ticks long after the ack timeout
    scenario.tick(later(parse_iso(notification["dispatched_at"]), hours=2))

    # Then the incident stays at L1
    assert scenario.ledger.read("orders-db")["level"] == "L1"
    assert "ack_timeout" not in [t["kind"] for t in scenario.transitions("orders-db")]


def test_recovery_sends_resolved_notices_to_everyone_notified_and_closes_the_notifications(scenario):
    # Given an incident that paged L1 and emailed L2
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    scenario.commit("orders-db", "escalated", level="L2", severity="critical")
    scenario.deliver_stream()

    # When the connector recovers
    scenario.commit("orders-db", "recovered", level="none", severity="ok", status="closed")
    records = scenario.new_stream_records()
    scenario.deliver_stream(records)
    scenario.deliver_stream(records)  # redelivered: nothing is sent twice

    # Then every alert is closed by the recovery, and no timer is left
    notifications = scenario.notifications(incident_id)
    alerts = [item for item in notifications if item["kind"] == "alert"]
    assert all(item["ack_state"] == "closed" and item["ack_source"] == "recovery" for item in alerts)
    assert not [item for item in notifications if "due_at" in item or "unacked_shard" in item]
    # And each target that was told gets exactly one resolved notice
    resolved = [item for item in notifications if item["kind"] == "resolved"]
    assert sorted((item["channel"], item["target"]) for item in resolved) == [
        ("email", "data-platform-owner@example.com"),
        ("email", "risk-owner@example.com"),
        ("oncall", "generic"),
    ]
    assert all(item["delivery_status"] == "sent" and item["ack_state"] == "closed" for item in resolved)
    [oncall_notice] = [item for item in resolved if item["channel"] == "oncall"]
    assert oncall_notice["resolves"] == [a["notification_id"] for a in alerts if a["channel"] == "oncall"]
    webhooks = scenario.provider.received("webhook")
    assert [w["payload"]["status"] for w in webhooks] == ["triggered", "resolved"]
    assert scenario.provider.provider.incidents[oncall_notice["resolves"][0]].status == "resolved"
    assert len([m for m in scenario.emails() if m.subject.startswith("[RESOLVED] ")]) == 2


def test_the_fake_provider_acknowledges_with_a_signed_callback_that_stops_the_escalation(scenario):
    # Given the local fake provider acknowledging each page shortly after it arrives, through the real callback route
    with CallbackRelay(scenario.aws) as relay:
        scenario.provider.provider.callback_url = relay.url
        scenario.provider.provider.auto_ack_seconds = 0.2

        # When an incident opens and L1 is paged
        incident_id = scenario.open_incident("orders-db")
        scenario.deliver_stream()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not scenario.provider.provider.callbacks_sent:
            time.sleep(0.05)

    # Then the provider sent one signed ACK callback naming the notification and its delivery, and it was accepted
    [sent] = scenario.provider.provider.callbacks_sent
    [notification] = scenario.notifications(incident_id)
    assert sent["status"] == 200, relay.answers
    assert sent["payload"]["notification_id"] == notification["notification_id"]
    assert sent["payload"]["delivery_id"] == notification["last_delivery_id"]
    # And the notification is acknowledged, out of the unacknowledged list, its ack timer gone
    assert notification["ack_state"] == "acknowledged" and notification["ack_source"] == "callback"
    assert "unacked_shard" not in notification and "due_at" not in notification
    # And a tick long after the ack timeout leaves the incident at L1
    scenario.tick(later(parse_iso(notification["dispatched_at"]), hours=2))
    assert scenario.ledger.read("orders-db")["level"] == "L1"
