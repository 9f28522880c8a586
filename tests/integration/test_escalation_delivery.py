"""Channels and deliveries: outages are retried with backoff until a final state, PagerDuty gets Events API v2,
SES throttling is retried, refused targets fail at once, and a failing target is not hammered within a batch."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from connector_sla.alerts.providers import ProviderConfig, ProviderStore
from connector_sla.config import settings
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import parse_iso
from tests.integration.test_escalation_support import later, scenario
from tests.support import call_api

__all__ = ["scenario"]


def just_after(timestamp):
    """The first whole-second tick at or after a timestamp (scheduled events carry whole seconds)."""
    return later(parse_iso(timestamp), seconds=1)


def only_alert(scenario, incident_id):
    [notification] = [item for item in scenario.notifications(incident_id) if item["kind"] == "alert"]
    return notification


def test_a_provider_outage_leaves_the_notification_pending_retried_and_visible(scenario):
    # Given the on-call provider answers 503 to the next two calls
    scenario.provider.fail_next(2, status=503)
    incident_id = scenario.open_incident("orders-db")

    # When the incident opens
    scenario.deliver_stream()

    # Then the notification is pending with a retry timer, and the failed attempt is in the delivery log
    notification = only_alert(scenario, incident_id)
    assert notification["delivery_status"] == "pending" and notification["due_kind"] == "retry"
    status, page = call_api(
        scenario.aws,
        scenario.alerts_api,
        "AlertsApiFunction",
        "GET",
        "/alerts/deliveries",
        query={"incident_id": incident_id},
    )
    assert status == 200
    [failed] = page["items"]
    assert (failed["status"], failed["response_code"], failed["attempt"]) == ("failed", 503, 1)
    assert "HTTP 503" in failed["error"]
    # When the timer ticks before the backoff, nothing is sent; after it, attempt 2 fails, attempt 3 is delivered
    scenario.tick(parse_iso(notification["created_at"]))
    assert len(scenario.deliveries(notification["notification_id"])) == 1
    scenario.tick(just_after(notification["next_attempt_at"]))
    second = scenario.notification(notification["notification_id"])
    scenario.tick(just_after(second["next_attempt_at"]))
    # Then three attempts are recorded, the last one sent, and the notification now waits for its ACK
    rows = scenario.deliveries(notification["notification_id"])
    assert [(row["attempt"], row["status"]) for row in rows] == [(1, "failed"), (2, "failed"), (3, "sent")]
    assert [row["chain_seq"] for row in rows] == [1, 2, 3]
    delivered = scenario.notification(notification["notification_id"])
    assert delivered["delivery_status"] == "sent" and delivered["due_kind"] == "ack_timeout"
    assert delivered["last_delivery_id"].endswith("_3")
    assert len(scenario.provider.received("webhook")) == 1


def test_attempts_are_bounded_and_end_in_a_final_failure_that_still_escalates(scenario):
    # Given a provider that stays down
    scenario.provider.fail_next(100, status=500)
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    notification = only_alert(scenario, incident_id)

    # When the timer keeps ticking at each retry time
    for _ in range(8):
        current = scenario.notification(notification["notification_id"])
        if current["delivery_status"] != "pending":
            break
        scenario.tick(just_after(current["next_attempt_at"]))

    # Then five attempts were made, the last marked final, and the ack timer still pushes the chain on
    rows = scenario.deliveries(notification["notification_id"])
    assert [row["status"] for row in rows] == ["failed"] * 4 + ["failed_final"]
    final = scenario.notification(notification["notification_id"])
    assert final["delivery_status"] == "failed" and final["due_kind"] == "ack_timeout"
    scenario.tick(later(parse_iso(final["due_at"]), seconds=1))
    assert scenario.ledger.read("orders-db")["level"] == "L2"


def test_one_failing_target_is_called_once_per_batch_and_the_rest_wait_for_the_timer(scenario):
    # Given three connectors opening incidents in one batch while the provider is down for one call
    scenario.provider.fail_next(1, status=503)
    incidents = [scenario.open_incident(name) for name in ("a-db", "b-db", "c-db")]

    # When the batch is processed
    scenario.deliver_stream()

    # Then the provider was called once; the other two notifications are deferred to the timer, not lost
    assert len(scenario.provider.received()) == 0
    notifications = [only_alert(scenario, incident) for incident in incidents]
    assert sorted(item["attempt_count"] for item in notifications) == [0, 0, 1]
    assert all(item["delivery_status"] == "pending" and item["due_kind"] == "retry" for item in notifications)
    # And the next tick after the deferred ones fall due delivers them (the failed one waits for its backoff)
    deferred = [item for item in notifications if item["attempt_count"] == 0]
    scenario.tick(just_after(max(item["due_at"] for item in deferred)))
    assert len(scenario.provider.received("webhook")) == 2


def test_pagerduty_events_v2_trigger_and_resolve(scenario):
    # Given a PagerDuty provider (routing key in its secret) paged at L1 by a connector chain
    secrets = scenario.aws.client("secretsmanager")
    secrets.create_secret(
        Name=f"{settings().provider_secrets_path}/pagerduty",
        SecretString=json.dumps({"signing_secret": "pd-webhook-secret", "routing_key": "R0UT1NGKEY"}),
    )
    ProviderStore(Table(settings().settings_table, client("dynamodb"))).put(
        ProviderConfig(
            name="pagerduty",
            outbound_profile="pagerduty_events_v2",
            outbound_url=f"{scenario.provider.url}/v2/enqueue",
            signing_scheme="pagerduty_v3",
        )
    )
    scenario.register_connector("orders-db")
    body = {
        "levels": [
            {"level": "L1", "targets": [{"channel": "oncall", "target": "pagerduty"}], "ack_timeout_seconds": 600},
            {"level": "L2", "targets": [{"channel": "email", "target": "l2@example.com"}], "ack_timeout_seconds": 600},
            {
                "level": "L3",
                "targets": [{"channel": "email", "target": "l3@example.com"}],
                "ack_timeout_seconds": 600,
                "eta_required_within_seconds": 600,
            },
        ]
    }
    status, _ = call_api(
        scenario.aws,
        scenario.escalation_api,
        "EscalationApiFunction",
        "PUT",
        "/alerts/chains/connector/orders-db",
        body=body,
    )
    assert status == 200

    # When an incident opens and later recovers
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    scenario.commit("orders-db", "recovered", level="none", severity="ok", status="closed")
    scenario.deliver_stream()

    # Then PagerDuty got a trigger whose dedup_key is the notification id, then a resolve for the same key
    alert = only_alert(scenario, incident_id)
    trigger, resolve = [item["payload"] for item in scenario.provider.received("pagerduty")]
    assert trigger["routing_key"] == "R0UT1NGKEY" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == alert["notification_id"]
    assert trigger["payload"]["source"] == "orders-db" and trigger["payload"]["severity"] == "warning"
    assert trigger["payload"]["summary"].startswith("[L1]")
    details = trigger["payload"]["custom_details"]
    assert details["notification_id"] == alert["notification_id"]
    assert details["delivery_id"] == alert["last_delivery_id"] and details["incident_id"] == incident_id
    assert resolve == {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": alert["notification_id"]}
    assert scenario.provider.provider.incidents[alert["notification_id"]].status == "resolved"


def test_ses_throttling_is_retried_and_a_rejected_address_fails_at_once(scenario):
    # Given SES that throttles the first email and rejects another address outright
    calls = []

    def refuse(params, **_):
        address = params["Destination"]["ToAddresses"][0]
        calls.append(address)
        if address == "risk-owner@example.com" and calls.count(address) == 1:
            raise ClientError(
                {"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."}}, "SendEmail"
            )
        if address == "data-platform-owner@example.com":
            raise ClientError({"Error": {"Code": "MessageRejected", "Message": "Address blacklisted."}}, "SendEmail")

    client("ses").meta.events.register("provide-client-params.ses.SendEmail", refuse)
    incident_id = scenario.open_incident("orders-db")
    scenario.deliver_stream()
    scenario.commit("orders-db", "escalated", level="L2", severity="critical")

    # When L2 is notified, and the timer retries the throttled one
    scenario.deliver_stream()
    l2 = {item["target"]: item for item in scenario.notifications(incident_id) if item["level"] == "L2"}
    throttled = l2["risk-owner@example.com"]
    scenario.tick(just_after(throttled["next_attempt_at"]))

    # Then the throttled email went out on its second attempt and the rejected one failed for good
    throttled_rows = scenario.deliveries(throttled["notification_id"])
    assert [row["status"] for row in throttled_rows] == ["failed", "sent"]
    assert "Throttling" in throttled_rows[0]["error"]
    rejected_rows = scenario.deliveries(l2["data-platform-owner@example.com"]["notification_id"])
    assert [row["status"] for row in rejected_rows] == ["failed_final"]
    assert "MessageRejected" in rejected_rows[0]["error"]


def test_a_target_the_outbound_guard_refuses_fails_without_any_request(scenario):
    # Given the default provider pointed at a loopback port the local stack did not allow
    ProviderStore(Table(settings().settings_table, client("dynamodb"))).put(
        ProviderConfig(name="generic", outbound_url="http://127.0.0.1:9/webhook")
    )
    incident_id = scenario.open_incident("orders-db")

    # When the incident opens
    scenario.deliver_stream()

    # Then the attempt is final at once, says why, and nothing reached any server
    notification = only_alert(scenario, incident_id)
    [row] = scenario.deliveries(notification["notification_id"])
    assert row["status"] == "failed_final" and "target refused" in row["error"]
    assert "response_code" not in row
    assert scenario.provider.received() == []
