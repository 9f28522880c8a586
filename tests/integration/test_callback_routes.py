"""The alerts API's callback routes through the real handler: the callback history (filters, pages, refusals),
the provider settings (checked before saving), and the runbook's validation steps after a real callback."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector_sla.callbacks.intake import CallbackIntake
from connector_sla.callbacks.recorder import CallbackRecorder
from connector_sla.callbacks.signatures import sign_hmac_sha256
from connector_sla.config import settings as service_settings
from connector_sla.ids import stable_id
from connector_sla.storage.dynamo import Table
from tests.support import Aws, call_api, load_event, unacked_page

ALERTS = "AlertsApiFunction"
ESCALATION = "EscalationApiFunction"
EVENTS = "/alerts/oncall/events"
INCIDENT = "inc_01JCALLBACKROUTES00000000"
OTHER_INCIDENT = "inc_01JCALLBACKROUTES11111111"


@pytest.fixture
def alerts(aws: Aws) -> Any:
    return aws.load_handler(ALERTS)


@pytest.fixture
def escalation(aws: Aws) -> Any:
    return aws.load_handler(ESCALATION)


def get(aws: Aws, handler: Any, path: str, *, logical_id: str = ALERTS, **query: Any) -> tuple[int, Any]:
    return call_api(aws, handler, logical_id, "GET", path, query={key: str(value) for key, value in query.items()})


def put_notification(aws: Aws, name: str, incident_id: str = INCIDENT) -> dict[str, Any]:
    notification_id = stable_id("ntf", incident_id, "trn_1", "oncall", name)
    row = unacked_page(notification_id, incident_id=incident_id, connector_id="orders-sync")
    Table(aws.name("NotificationsTable"), aws.client("dynamodb")).put(row)
    return row


@pytest.fixture
def history(aws: Aws) -> dict[str, Any]:
    """Six callbacks over the last hour: four on INCIDENT (two notifications), one on another, one unmatched."""
    first, second = put_notification(aws, "first"), put_notification(aws, "second")
    other = put_notification(aws, "other", OTHER_INCIDENT)
    recorder = CallbackRecorder.from_settings()
    now = datetime.now(UTC)
    sent = [
        ("generic", first, "triggered"),
        ("generic", first, "acknowledged"),
        ("pagerduty", second, "acknowledged"),
        ("generic", other, "acknowledged"),
        ("generic", None, "resolved"),
        ("generic", second, "resolved"),
    ]
    ids = []
    for minutes, (provider, notification, status) in enumerate(sent):
        outcome = recorder.record(
            CallbackIntake(
                provider=provider,
                status=status,
                notification_id=notification["notification_id"] if notification else "ntf_NOBODY",
                incident_id=None if notification else INCIDENT,
                provider_event_id=f"evt-{minutes}",
                received_at=now - timedelta(minutes=60 - minutes),
            )
        )
        ids.append(outcome.callback_id)
    return {"ids": ids, "first": first, "second": second}


def ids_of(body: dict[str, Any]) -> list[str]:
    return [item["callback_id"] for item in body["items"]]


# ---------------------------------------------------------------------------------------------- history


def test_the_history_of_an_incident_lists_its_callbacks_newest_first_unmatched_included(aws, alerts, history):
    status, body = get(aws, alerts, EVENTS, incident_id=INCIDENT)
    assert status == 200, body
    assert ids_of(body) == [history["ids"][index] for index in (5, 4, 2, 1, 0)]
    assert body["next_cursor"] is None
    unmatched = body["items"][1]
    assert unmatched["matched"] is False and unmatched["unmatched_reason"] == "notification_not_found"
    assert {"chain_id", "chain_seq", "record_hash", "prev_hash", "duplicate_count"} <= set(unmatched)


def test_the_sample_history_event_is_answered(aws, alerts, history):
    # Given the sample event of events/ (sam local invoke), pointed at the incident of the fixture
    event = load_event("alerts_api_callback_history.json")
    event["queryStringParameters"] = {"incident_id": INCIDENT}
    event["multiValueQueryStringParameters"] = {"incident_id": [INCIDENT]}

    # When the alerts function gets it
    response = alerts.lambda_handler(event, aws.context(ALERTS))

    # Then it lists that incident's callbacks
    assert response["statusCode"] == 200
    assert len(json.loads(response["body"])["items"]) == 5


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"provider": "pagerduty"}, [2]),
        ({"status": "acknowledged"}, [3, 2, 1]),
        ({"unmatched": "true"}, [4]),
        ({"unmatched": "false", "provider": "generic"}, [5, 3, 1, 0]),
        ({"incident_id": INCIDENT, "status": "resolved"}, [5, 4]),
    ],
)
def test_the_history_filters_by_provider_status_and_unmatched(aws, alerts, history, query, expected):
    status, body = get(aws, alerts, EVENTS, **query)
    assert status == 200, body
    assert ids_of(body) == [history["ids"][index] for index in expected]


def test_the_history_of_a_notification(aws, alerts, history):
    status, body = get(aws, alerts, EVENTS, notification_id=history["first"]["notification_id"])
    assert status == 200 and ids_of(body) == [history["ids"][1], history["ids"][0]]


def test_the_history_pages_with_cursors_without_gaps_or_repeats(aws, alerts, history):
    # Given six callbacks, read two at a time without any filter
    seen: list[str] = []
    cursor = None
    for _ in range(6):
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        status, body = get(aws, alerts, EVENTS, **query)
        assert status == 200, body
        seen.extend(ids_of(body))
        cursor = body["next_cursor"]
        if cursor is None:
            break

    # Then every callback came exactly once, newest first
    assert seen == list(reversed(history["ids"]))


def test_a_time_range_narrows_the_history(aws, alerts, history):
    now = datetime.now(UTC)
    status, body = get(aws, alerts, EVENTS, since=(now - timedelta(minutes=57, seconds=30)).isoformat())
    assert status == 200 and ids_of(body) == [history["ids"][5], history["ids"][4], history["ids"][3]]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"incident": INCIDENT}, "incident"),
        ({"status": "acked"}, "status"),
        ({"limit": 0}, "limit"),
        ({"unmatched": "maybe"}, "unmatched"),
        ({"since": "2026-12-03T10:00:00"}, "since"),
        ({"since": "2026-12-03T10:00:00Z", "until": "2026-12-02T10:00:00Z"}, "since must not be after until"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_invalid_filters_are_a_400_that_names_them(aws, alerts, query, words):
    status, body = get(aws, alerts, EVENTS, **query)
    assert status == 400, body
    assert words in body["message"]


def test_a_cursor_of_another_query_is_refused(aws, alerts, history):
    _, first_page = get(aws, alerts, EVENTS, incident_id=INCIDENT, limit=1)
    status, body = get(aws, alerts, EVENTS, provider="generic", cursor=first_page["next_cursor"])
    assert status == 400 and "cursor" in body["message"]


# ---------------------------------------------------------------------------------------------- providers


def test_the_default_provider_is_listed_before_it_is_ever_saved(aws, escalation):
    status, body = get(aws, escalation, "/alerts/oncall/providers", logical_id=ESCALATION)
    assert status == 200, body
    (default,) = body["items"]
    assert default["name"] == "generic" and default["saved"] is False and default["signing_scheme"] == "hmac_sha256"
    assert default["callback_path"] == "/alerts/oncall/callback?provider=generic"
    assert default["secret_name"] == f"{service_settings().provider_secrets_path}/generic"


def test_a_pagerduty_provider_gets_the_native_v3_mapping_by_default(aws, escalation):
    # When a PagerDuty provider is saved without a mapping
    body = {"outbound_profile": "pagerduty_events_v2", "signing_scheme": "pagerduty_v3"}
    status, saved = call_api(aws, escalation, ESCALATION, "PUT", "/alerts/oncall/providers/pagerduty", body=body)

    # Then it reads PagerDuty's own payload, and is listed next to the default
    assert status == 200, saved
    assert saved["mapping"]["notification_id"] == "event.data.incident_key"
    assert saved["status_map"]["incident.acknowledged"] == "acknowledged"
    assert saved["outbound_url"] == "https://events.pagerduty.com/v2/enqueue"
    assert saved["saved"] is True and saved["updated_by"]
    assert get(aws, escalation, "/alerts/oncall/providers/pagerduty", logical_id=ESCALATION) == (200, saved)
    names = [
        item["name"] for item in get(aws, escalation, "/alerts/oncall/providers", logical_id=ESCALATION)[1]["items"]
    ]
    assert names == ["generic", "pagerduty"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"outbound_url": "https://hooks.example.com/a", "mapping": {"status": "a[", "notification_id": "n"}},
            "mapping.status",
        ),
        (
            {"outbound_url": "https://hooks.example.com/a", "mapping": {"status": "s", "notification_id": "eval(n)"}},
            "mapping.notification_id",
        ),
        ({"outbound_url": "https://hooks.example.com/a", "mapping": {"status": "s"}}, "mapping"),
        ({"outbound_url": "https://hooks.example.com/a", "status_map": {"ack": "acked"}}, "body.status_map.ack"),
        ({"outbound_url": "http://hooks.example.com/a"}, "body.outbound_url"),
        ({}, "body"),
        ({"outbound_url": "https://hooks.example.com/a", "tolerance_seconds": 3600}, "body.tolerance_seconds"),
        ({"outbound_url": "https://hooks.example.com/a", "secret": "x"}, "body.secret"),
    ],
)
def test_a_provider_that_does_not_check_out_is_refused_and_not_saved(aws, escalation, body, field):
    status, answer = call_api(aws, escalation, ESCALATION, "PUT", "/alerts/oncall/providers/acme", body=body)
    assert status == 400, answer
    assert field in [detail["field"] for detail in answer.get("details", [])] or field in answer["message"]
    assert get(aws, escalation, "/alerts/oncall/providers/acme", logical_id=ESCALATION)[0] == 404


def test_a_provider_name_that_is_not_a_name_is_refused(aws, escalation):
    status, body = get(aws, escalation, "/alerts/oncall/providers/Acme%20Corp", logical_id=ESCALATION)
    assert status == 400 and "provider name" in body["message"]


def test_a_saved_mapping_is_what_reads_the_next_callback(aws, escalation):
    # Given a provider whose payload nests our id under alert.ref and says "ACK"
    body = {
        "outbound_url": "https://hooks.example.com/acme",
        "mapping": {"notification_id": "alert.ref", "status": "alert.state", "event_id": "id"},
        "status_map": {"ACK": "acknowledged"},
    }
    assert call_api(aws, escalation, ESCALATION, "PUT", "/alerts/oncall/providers/acme", body=body)[0] == 200
    secret = "acme-secret"
    name = f"{service_settings().provider_secrets_path}/acme"
    aws.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps({"signing_secret": secret}))
    alert = put_notification(aws, "acme")

    # When acme calls back in its own shape
    status, answer = post_callback(
        aws, {"id": 7, "alert": {"ref": alert["notification_id"], "state": "ACK"}}, provider="acme", secret=secret
    )

    # Then the notification is acknowledged
    assert status == 200, answer
    assert answer["ack_state"] == "acknowledged" and answer["notification_id"] == alert["notification_id"]


# ---------------------------------------------------------------------------------------------- the runbook


def post_callback(aws: Aws, payload: Any, *, provider: str = "generic", secret: str) -> tuple[int, Any]:
    handler = aws.load_handler("OncallCallbackFunction")
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {"X-Callback-Timestamp": stamp, "X-Callback-Signature": sign_hmac_sha256(secret, stamp, body)}
    query = {"provider": provider}
    return call_api(
        aws,
        handler,
        "OncallCallbackFunction",
        "POST",
        "/alerts/oncall/callback",
        raw_body=body,
        headers=headers,
        query=query,
    )


def test_runbook_steps_5_and_6_hold_after_an_ack_callback(aws, alerts):
    # Given two unacked alerts of the incident, listed as unacked
    secret = "runbook-secret"
    name = f"{service_settings().provider_secrets_path}/generic"
    aws.client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps({"signing_secret": secret}))
    acked, waiting = put_notification(aws, "acked"), put_notification(aws, "waiting")
    _, before = get(aws, alerts, "/alerts/notifications", only_unacked="true")
    listed_before = {item["notification_id"] for item in before["items"]}
    assert {acked["notification_id"], waiting["notification_id"]} <= listed_before

    # When the provider acknowledges one of them
    status, _ = post_callback(
        aws, {"status": "acknowledged", "notification_id": acked["notification_id"]}, secret=secret
    )
    assert status == 200

    # Then step 5: the acknowledged row is no longer listed as unacked, the other still is
    status, after = get(aws, alerts, "/alerts/notifications", only_unacked="true")
    assert status == 200, after
    listed_after = {item["notification_id"] for item in after["items"]}
    assert acked["notification_id"] not in listed_after and waiting["notification_id"] in listed_after
    # And step 6: the incident's callback history shows the callback
    status, events = get(aws, alerts, EVENTS, incident_id=INCIDENT)
    assert status == 200
    (event,) = events["items"]
    assert (event["notification_id"], event["status"], event["signature"]) == (
        acked["notification_id"],
        "acknowledged",
        "verified",
    )


def test_a_redelivered_and_an_unmatched_webhook_callback_are_visible_in_the_history(aws, alerts):
    # Given the generic provider's secret and an unacked alert
    secret = "history-secret"
    name = f"{service_settings().provider_secrets_path}/generic"
    aws.client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps({"signing_secret": secret}))
    alert = put_notification(aws, "redelivered")
    payload = {"event_id": "evt-redelivered", "status": "acknowledged", "notification_id": alert["notification_id"]}

    # When the provider delivers the same acknowledgement twice, and a callback for a notification we never sent
    first, again = post_callback(aws, payload, secret=secret), post_callback(aws, payload, secret=secret)
    stray = post_callback(
        aws, {"status": "resolved", "notification_id": "ntf_NEVERSENT", "incident_id": INCIDENT}, secret=secret
    )
    assert (first[0], again[0], stray[0]) == (200, 200, 200) and again[1]["duplicate"] is True

    # Then the notification's history holds one record that counts the repeated delivery
    status, body = get(aws, alerts, EVENTS, notification_id=alert["notification_id"])
    assert status == 200, body
    (event,) = body["items"]
    assert event["duplicate_count"] == 1 and event["ack_applied"] is True and event["signature"] == "verified"
    assert event["received_at"] and event["provider"] == "generic" and event["incident_id"] == INCIDENT
    # And the unmatched one is listed by the unmatched filter, with the keys the provider sent
    status, body = get(aws, alerts, EVENTS, unmatched="true", incident_id=INCIDENT)
    assert status == 200, body
    assert [(item["notification_id"], item["matched"], item["unmatched_reason"]) for item in body["items"]] == [
        ("ntf_NEVERSENT", False, "notification_not_found")
    ]
