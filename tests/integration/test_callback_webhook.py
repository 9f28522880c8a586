"""POST /alerts/oncall/callback through the real handler on moto: signatures, ACK state, history, duplicates,
unmatched callbacks, refusals, the request budget, and garbage that must never produce a 500."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st

from connector_sla.alerts.providers import ProviderConfig, ProviderStore
from connector_sla.alerts.records import shard_of
from connector_sla.callbacks.mapping import PAGERDUTY_V3_MAPPING, PAGERDUTY_V3_STATUS_MAP
from connector_sla.callbacks.signatures import sign_hmac_sha256, sign_pagerduty_v3, sign_standard_webhooks
from connector_sla.config import settings as service_settings
from connector_sla.evidence.chain import ChainVerifier
from connector_sla.ids import stable_id
from connector_sla.sla.ledger import StateLedger
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Expression, Table, TransactionCanceled
from connector_sla.timeutil import to_iso
from tests.support import Aws, api_event, call_api, load_event, moto_stack

FUNCTION = "OncallCallbackFunction"
PATH = "/alerts/oncall/callback"
SECRET = "callback-secret-current"
OLD_SECRET = "callback-secret-previous"


@dataclass
class Callbacks:
    """The callback function on moto, with helpers to sign and send."""

    aws: Aws
    handler: Any

    def table(self, logical_id: str) -> Table:
        return Table(self.aws.name(logical_id), self.aws.client("dynamodb"))

    def post(
        self,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        secret: str | None = SECRET,
        timestamp: int | None = None,
        provider: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        body = raw if raw is not None else json.dumps(payload).encode()
        signed: dict[str, str] = {}
        if secret is not None:
            stamp = str(timestamp if timestamp is not None else int(time.time()))
            signed = {"X-Callback-Timestamp": stamp, "X-Callback-Signature": sign_hmac_sha256(secret, stamp, body)}
        query = {"provider": provider} if provider else None
        return call_api(
            self.aws,
            self.handler,
            FUNCTION,
            "POST",
            PATH,
            raw_body=body,
            query=query,
            headers={**signed, **(headers or {})},
        )

    def records(self) -> list[dict[str, Any]]:
        return [item for page in self.table("CallbacksTable").scan_pages() for item in page]

    def notification(self, notification_id: str) -> dict[str, Any]:
        found = self.table("NotificationsTable").get({"notification_id": notification_id}, consistent=True)
        assert found is not None
        return found


def set_secret(aws: Aws, provider: str, document: dict[str, Any]) -> None:
    name = f"{service_settings().provider_secrets_path}/{provider}"
    secrets = aws.client("secretsmanager")
    try:
        secrets.put_secret_value(SecretId=name, SecretString=json.dumps(document))
    except secrets.exceptions.ResourceNotFoundException:
        secrets.create_secret(Name=name, SecretString=json.dumps(document))


@pytest.fixture
def callbacks(aws: Aws) -> Callbacks:
    set_secret(aws, "generic", {"signing_secrets": [SECRET, OLD_SECRET]})
    return Callbacks(aws, aws.load_handler(FUNCTION))


def put_notification(aws: Aws, name: str = "a", **overrides: Any) -> dict[str, Any]:
    """An L1 on-call alert as escalation writes it (docs/design.md, Notifications), waiting on its ack timeout."""
    notification_id = stable_id("ntf", "inc_01TEST", "trn_1", "oncall", name)
    row = {
        "notification_id": notification_id,
        "incident_id": "inc_01TEST",
        "connector_id": "orders-sync",
        "connector_name": "Orders sync",
        "owner_team": "data-platform",
        "level": "L1",
        "kind": "alert",
        "transition_id": "trn_1",
        "channel": "oncall",
        "target": "generic",
        "provider": "generic",
        "recipients": ["oncall-im"],
        "summary": "orders-sync freshness lag critical",
        "ack_state": "unacked",
        "delivery_status": "sent",
        "attempt_count": 1,
        "last_delivery_id": f"dlv_{notification_id[4:]}_1",
        "created_at": "2026-12-03T19:20:00.000Z",
        "updated_at": "2026-12-03T19:20:01.000Z",
        "day": "2026-12-03",
        "version": 2,
        "unacked_shard": shard_of(notification_id),
        "due_shard": shard_of(notification_id),
        "due_at": "2026-12-03T19:35:00.000Z",
        "due_kind": "ack_timeout",
        **overrides,
    }
    Table(aws.name("NotificationsTable"), aws.client("dynamodb")).put(row)
    return row


def unacked_ids(aws: Aws) -> set[str]:
    """What GET /alerts/notifications?only_unacked=true reads: the sparse Unacked index, every shard."""
    table = Table(aws.name("NotificationsTable"), aws.client("dynamodb"))
    found = set()
    for shard in range(8):
        expr = Expression()
        condition = f"{expr.name('unacked_shard')} = {expr.value(str(shard))}"
        found |= {item["notification_id"] for item in table.query_all(expr, condition, index="Unacked")}
    return found


def ack(notification_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"evt-{time.time_ns()}", "status": "acknowledged", "notification_id": notification_id, **fields}


# ---------------------------------------------------------------------------------------------- the happy path


def test_an_acknowledged_callback_acks_the_notification_and_is_recorded(callbacks):
    # Given an unacked alert waiting on its ack timeout
    alert = put_notification(callbacks.aws)

    # When the provider sends a signed acknowledged callback
    status, body = callbacks.post(ack(alert["notification_id"], acknowledged_by="dana@example.com"))

    # Then it is accepted and the ACK state moved
    assert status == 200, body
    assert body["result"] == "recorded" and body["ack_applied"] is True and body["ack_state"] == "acknowledged"
    assert body["incident_id"] == "inc_01TEST"
    row = callbacks.notification(alert["notification_id"])
    assert row["ack_state"] == "acknowledged" and row["ack_source"] == "callback"
    assert row["ack_by"] == "dana@example.com" and "acknowledged_at" in row
    # And the notification left the Unacked index (runbook step 5) and its ack-timeout timer is gone
    assert alert["notification_id"] not in unacked_ids(callbacks.aws)
    assert not {"unacked_shard", "due_shard", "due_at", "due_kind"} & set(row)
    assert row["version"] == alert["version"] + 1
    # And the history holds one sealed record whose chain head is on the notification
    (record,) = callbacks.records()
    assert record["signature"] == "verified" and record["matched"] is True and record["provider"] == "generic"
    assert record["status"] == "acknowledged" and record["ack_state_before"] == "unacked"
    assert record["chain_id"] == f"callbacks:{alert['notification_id']}" and record["chain_seq"] == 1
    assert row["callback_chain_seq"] == 1 and row["callback_chain_hash"] == record["record_hash"]
    assert ChainVerifier().check(record, "callbacks") is None


def test_the_sample_event_is_accepted_once_signed_now(callbacks):
    # Given the sample event of events/, re-signed with the test secret and the current time
    event = load_event("oncall_callback_ack.json")
    alert = put_notification(callbacks.aws)
    payload = {**json.loads(event["body"]), "notification_id": alert["notification_id"]}

    # When it is posted
    status, body = callbacks.post(payload, provider=event["queryStringParameters"]["provider"])

    # Then the notification is acknowledged
    assert status == 200, body
    assert callbacks.notification(alert["notification_id"])["ack_state"] == "acknowledged"


def test_a_callback_that_names_only_a_delivery_id_finds_its_notification(callbacks):
    alert = put_notification(callbacks.aws)
    payload = {"status": "resolved", "custom_details": {"delivery_id": alert["last_delivery_id"]}}
    status, body = callbacks.post(payload)
    assert status == 200, body
    assert body["notification_id"] == alert["notification_id"] and body["ack_state"] == "resolved"


def test_the_ack_state_never_moves_back_but_every_callback_is_in_the_chain(callbacks):
    # Given a notification resolved by a callback
    alert = put_notification(callbacks.aws)
    assert (
        callbacks.post({"event_id": "e1", "status": "resolved", "notification_id": alert["notification_id"]})[0] == 200
    )

    # When a late acknowledged and a note arrive
    late = callbacks.post({"event_id": "e2", "status": "acknowledged", "notification_id": alert["notification_id"]})
    note = callbacks.post({"event_id": "e3", "status": "annotated", "notification_id": alert["notification_id"]})

    # Then both are recorded but change nothing
    assert late[1]["ack_applied"] is False and late[1]["ack_state"] == "resolved"
    assert note[1]["ack_applied"] is False
    assert callbacks.notification(alert["notification_id"])["ack_state"] == "resolved"
    records = sorted(callbacks.records(), key=lambda record: record["chain_seq"])
    assert [record["status"] for record in records] == ["resolved", "acknowledged", "annotated"]
    verifier = ChainVerifier()
    assert [verifier.check(record, "callbacks") for record in records] == [None, None, None]
    assert callbacks.notification(alert["notification_id"])["callback_chain_hash"] == records[-1]["record_hash"]


def test_a_secret_being_rotated_verifies_with_either_value(callbacks):
    alert = put_notification(callbacks.aws)
    status, _ = callbacks.post(ack(alert["notification_id"]), secret=OLD_SECRET)
    assert status == 200


def test_a_secret_rotated_while_warm_is_read_again_on_mismatch(callbacks):
    # Given a warm function that has cached the provider's secrets
    first, second = put_notification(callbacks.aws, "a"), put_notification(callbacks.aws, "b")
    assert callbacks.post(ack(first["notification_id"]))[0] == 200

    # When the secret is replaced and the provider signs with the new one right away
    set_secret(callbacks.aws, "generic", {"signing_secret": "brand-new"})
    status, body = callbacks.post(ack(second["notification_id"]), secret="brand-new")

    # Then the mismatch triggers one fresh read and the callback passes
    assert status == 200, body


def test_secrets_are_read_once_and_then_served_from_the_cache(callbacks):
    # Given a warm function and every Secrets Manager request counted from now on
    reads: Counter = Counter()

    def count(model: Any, **_kwargs: Any) -> None:
        reads[model.name] += 1

    client("secretsmanager").meta.events.register("before-call.secretsmanager", count)
    alerts = [put_notification(callbacks.aws, name) for name in ("a", "b", "c")]

    # When three signed callbacks arrive
    statuses = [callbacks.post(ack(alert["notification_id"]))[0] for alert in alerts]

    # Then the secret was fetched once, through the cache
    assert statuses == [200, 200, 200]
    assert reads == Counter({"GetSecretValue": 1})


def test_signing_secrets_can_live_in_ssm_parameter_store():
    # Given a deployment that keeps provider secrets in SSM as a SecureString
    with moto_stack(SecretsStore="ssm") as aws:
        name = f"/{service_settings().provider_secrets_path.strip('/')}/generic"
        document = json.dumps({"signing_secrets": ["ssm-secret-new", "ssm-secret-old"]})
        aws.client("ssm").put_parameter(Name=name, Value=document, Type="SecureString")
        target = Callbacks(aws, aws.load_handler(FUNCTION))
        reads: Counter = Counter()
        client("ssm").meta.events.register("before-call.ssm", lambda model, **_: reads.update([model.name]))
        first, second = put_notification(aws, "a"), put_notification(aws, "b")

        # When callbacks signed with either secret arrive, and one signed with a secret SSM does not hold
        accepted = [
            target.post(ack(first["notification_id"]), secret="ssm-secret-new")[0],
            target.post(ack(second["notification_id"]), secret="ssm-secret-old")[0],
        ]
        refused, body = target.post(ack("ntf_A"), secret="callback-secret-current")

        # Then SSM's secrets verify them (read once, decrypted, then cached) and the stranger is refused
        assert accepted == [200, 200]
        assert (refused, body["error"]) == (401, "signature_mismatch")
        assert reads["GetParameter"] == 2  # the first read, and one fresh read after the mismatch
        assert target.notification(first["notification_id"])["ack_state"] == "acknowledged"


def test_a_saved_tolerance_is_never_wider_than_300_seconds(callbacks):
    # Given a provider row whose tolerance was written wider than the API allows
    save_provider(callbacks.aws, ProviderConfig(name="lenient", tolerance_seconds=3600), {"signing_secret": SECRET})

    # When it signs with a timestamp 400 seconds old, then 290 seconds old
    old = callbacks.post(ack("ntf_A"), provider="lenient", timestamp=int(time.time()) - 400)
    recent = callbacks.post(ack("ntf_A"), provider="lenient", timestamp=int(time.time()) - 290)

    # Then the old one is stale anyway
    assert old[0] == 401 and old[1]["error"] == "signature_stale"
    assert recent[0] == 200


# ---------------------------------------------------------------------------------------------- duplicates


def test_the_same_event_twice_changes_state_once_and_is_recorded_once(callbacks):
    # Given a callback already accepted
    alert = put_notification(callbacks.aws)
    payload = ack(alert["notification_id"])
    first = callbacks.post(payload)
    version_after_first = callbacks.notification(alert["notification_id"])["version"]

    # When the provider delivers the same event again (another timestamp, same event id)
    second = callbacks.post(payload, timestamp=int(time.time()) - 5)

    # Then both succeed, the second is marked duplicate, and nothing else changed
    assert first[0] == second[0] == 200
    assert first[1]["duplicate"] is False and second[1]["duplicate"] is True and second[1]["result"] == "duplicate"
    assert second[1]["callback_id"] == first[1]["callback_id"] and second[1]["ack_applied"] is False
    assert callbacks.notification(alert["notification_id"])["version"] == version_after_first
    (record,) = callbacks.records()
    assert record["duplicate_count"] == 1
    assert ChainVerifier().check(record, "callbacks") is None


def test_the_same_signed_body_and_timestamp_without_an_event_id_is_a_duplicate(callbacks):
    alert = put_notification(callbacks.aws)
    payload = {"status": "acknowledged", "notification_id": alert["notification_id"]}
    stamp = int(time.time())
    first = callbacks.post(payload, timestamp=stamp)
    second = callbacks.post(payload, timestamp=stamp)
    third = callbacks.post(payload, timestamp=stamp + 1)
    assert (first[1]["duplicate"], second[1]["duplicate"], third[1]["duplicate"]) == (False, True, False)
    assert len(callbacks.records()) == 2


# ---------------------------------------------------------------------------------------------- unmatched


def test_a_callback_for_an_unknown_notification_is_kept_as_unmatched(callbacks):
    # When two callbacks name notifications that do not exist
    first = callbacks.post(ack("ntf_DOESNOTEXIST", incident_id="inc_theirs"))
    second = callbacks.post({"event_id": "x2", "status": "resolved", "delivery_id": "not-one-of-ours"})

    # Then both are accepted and kept, chained per provider, with the reason
    assert first[0] == second[0] == 200
    assert first[1]["matched"] is False and first[1]["unmatched_reason"] == "notification_not_found"
    assert second[1]["unmatched_reason"] == "delivery_id_not_recognized"
    records = sorted(callbacks.records(), key=lambda record: record["chain_seq"])
    assert [record["chain_id"] for record in records] == ["callbacks:unmatched:generic"] * 2
    assert records[0]["incident_id"] == "inc_theirs"
    verifier = ChainVerifier()
    assert [verifier.check(record, "callbacks") for record in records] == [None, None]
    head = callbacks.table("SettingsTable").get({"pk": "CHAIN", "sk": "callbacks:unmatched:generic"})
    assert head is not None and head["chain_seq"] == 2 and head["chain_hash"] == records[-1]["record_hash"]


# ---------------------------------------------------------------------------------------------- ETA


def open_l3_incident(aws: Aws, connector_id: str = "orders-sync") -> StateLedger:
    """The connector's state with an open L3 incident, as the evaluator leaves it; the ledger to read it with."""
    dynamodb = aws.client("dynamodb")
    ledger = StateLedger(Table(aws.name("ConnectorsTable"), dynamodb), Table(aws.name("TransitionsTable"), dynamodb))
    state = {"incident_id": "inc_01TEST", "incident_status": "open", "level": "L3", "severity": "critical"}
    ledger.commit(connector_id, state, expected_version=None)
    return ledger


def transitions_of(aws: Aws, connector_id: str) -> list[dict[str, Any]]:
    table = Table(aws.name("TransitionsTable"), aws.client("dynamodb"))
    return [item for page in table.scan_pages() for item in page if item["connector_id"] == connector_id]


def test_an_eta_in_a_callback_is_recorded_on_the_connectors_open_incident(callbacks, dynamodb_requests):
    # Given an open L3 incident on the connector of the notification
    ledger = open_l3_incident(callbacks.aws)
    alert = put_notification(callbacks.aws, level="L3")

    # When the duty manager acknowledges with a recovery ETA two hours ahead, the body naming no connector
    eta_moment = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    dynamodb_requests.clear()
    status, body = callbacks.post(ack(alert["notification_id"], eta=eta_moment.isoformat(), acknowledged_by="dm"))

    # Then the ETA is on the state and an eta_recorded transition is in the connector's chain
    assert status == 200 and body["eta_recorded"] is True
    row = ledger.read("orders-sync")
    assert row["recovery_eta"] == to_iso(eta_moment) and row["eta_recorded_by"] == "generic"
    assert row["last_transition"]["kind"] == "eta_recorded"
    assert [(item["kind"], item["actor"]) for item in transitions_of(callbacks.aws, "orders-sync")] == [
        ("eta_recorded", "generic")
    ]
    (record,) = callbacks.records()
    assert record["eta"] == to_iso(eta_moment)
    # And, the connector being known only from the notification, the ETA took the ledger's read and commit more
    assert dict(dynamodb_requests) == {"GetItem": 2, "BatchGetItem": 1, "TransactWriteItems": 2}


def test_an_eta_callback_that_names_its_connector_costs_three_requests_and_commits_with_the_ack(
    callbacks, dynamodb_requests
):
    # Given an open L3 incident and its unacked L3 page
    ledger = open_l3_incident(callbacks.aws)
    version = ledger.read("orders-sync")["version"]
    alert = put_notification(callbacks.aws, level="L3")

    # When the duty manager's ACK carries an ETA and, as the page's custom_details do, the connector
    eta_moment = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    payload = ack(alert["notification_id"], eta=to_iso(eta_moment), custom_details={"connector_id": "orders-sync"})
    dynamodb_requests.clear()
    status, body = callbacks.post(payload)

    # Then the ACK and the ETA were written in one transaction, after one batch read
    assert status == 200 and body["ack_applied"] is True and body["eta_recorded"] is True
    assert dict(dynamodb_requests) == {"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}
    row = ledger.read("orders-sync")
    assert row["version"] == version + 1 and row["recovery_eta"] == to_iso(eta_moment)
    (transition,) = transitions_of(callbacks.aws, "orders-sync")
    assert transition["kind"] == "eta_recorded" and ChainVerifier().check(transition, "transitions") is None
    assert alert["notification_id"] not in unacked_ids(callbacks.aws)
    (record,) = callbacks.records()
    assert record["ack_applied"] is True and record["eta"] == to_iso(eta_moment)


def test_an_eta_callback_naming_another_connector_records_the_eta_on_the_notifications_connector(callbacks):
    # Given open incidents on two connectors and a page of the first
    ledger = open_l3_incident(callbacks.aws)
    open_l3_incident(callbacks.aws, "billing-db")
    before = ledger.read("billing-db")
    alert = put_notification(callbacks.aws, level="L3")

    # When the callback's custom_details name the other connector
    eta = to_iso(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))
    status, body = callbacks.post(ack(alert["notification_id"], eta=eta, custom_details={"connector_id": "billing-db"}))

    # Then the notification decides: the ETA is on its connector, and the named one is untouched
    assert status == 200 and body["eta_recorded"] is True
    assert ledger.read("orders-sync")["recovery_eta"] == eta
    assert ledger.read("billing-db") == before
    assert transitions_of(callbacks.aws, "billing-db") == []


def test_a_state_changed_between_the_read_and_the_write_is_read_again_and_the_eta_recorded_once(callbacks, monkeypatch):
    # Given an open incident, and another writer that changes the state row just before the callback's transaction
    import connector_sla.callbacks.recorder as recorder_module

    ledger = open_l3_incident(callbacks.aws)
    alert = put_notification(callbacks.aws, level="L3")
    real_transact = recorder_module.transact
    calls = []

    def state_changes_first(dynamodb: Any, actions: list[dict[str, Any]]) -> None:
        calls.append(len(actions))
        if len(calls) == 1:
            row = ledger.read("orders-sync")
            ledger.commit("orders-sync", {**row, "consecutive_critical": 7}, expected_version=row["version"])
        real_transact(dynamodb, actions)

    monkeypatch.setattr(recorder_module, "transact", state_changes_first)

    # When an ETA callback naming its connector arrives
    eta = to_iso(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))
    payload = ack(alert["notification_id"], eta=eta, custom_details={"connector_id": "orders-sync"})
    status, body = callbacks.post(payload)

    # Then the first transaction (record, ACK, state, transition) failed whole, the second committed over the
    # other writer's change, and there is one record and one ETA transition
    assert status == 200 and body["eta_recorded"] is True
    assert calls == [4, 4]
    row = ledger.read("orders-sync")
    assert row["recovery_eta"] == eta and row["consecutive_critical"] == 7
    assert [item["kind"] for item in transitions_of(callbacks.aws, "orders-sync")] == ["eta_recorded"]
    assert len(callbacks.records()) == 1


# ---------------------------------------------------------------------------------------------- other schemes


def save_provider(aws: Aws, provider: ProviderConfig, secret: dict[str, Any]) -> None:
    ProviderStore(Table(aws.name("SettingsTable"), aws.client("dynamodb"))).put(provider)
    set_secret(aws, provider.name, secret)


def test_a_pagerduty_v3_webhook_acknowledges_the_notification_it_names(callbacks):
    # Given a PagerDuty provider and the escalation's notification whose dedup_key PagerDuty echoes
    aws = callbacks.aws
    pagerduty = ProviderConfig(
        name="pagerduty",
        outbound_profile="pagerduty_events_v2",
        signing_scheme="pagerduty_v3",
        mapping=dict(PAGERDUTY_V3_MAPPING),
        status_map=dict(PAGERDUTY_V3_STATUS_MAP),
    )
    save_provider(aws, pagerduty, {"signing_secrets": ["pd-webhook-secret"], "routing_key": "R0UT1NG"})
    alert = put_notification(aws, target="pagerduty", provider="pagerduty")
    payload = json.loads(load_event("oncall_callback_pagerduty_v3.json")["body"])
    payload["event"]["data"]["incident_key"] = alert["notification_id"]
    body = json.dumps(payload).encode()

    # When PagerDuty posts its own signed v3 payload
    headers = {"X-PagerDuty-Signature": f"v1=deadbeef,{sign_pagerduty_v3('pd-webhook-secret', body)}"}
    status, answer = callbacks.post(raw=body, secret=None, provider="pagerduty", headers=headers)

    # Then the notification is acknowledged by the responder PagerDuty names, recorded under PagerDuty's event id
    assert status == 200, answer
    row = callbacks.notification(alert["notification_id"])
    assert row["ack_state"] == "acknowledged" and row["ack_by"] == "Dana Okafor"
    (record,) = callbacks.records()
    assert record["raw_status"] == "incident.acknowledged" and record["provider_event_id"] == payload["event"]["id"]


def test_a_standard_webhooks_callback_uses_the_message_id_for_duplicates(callbacks):
    aws = callbacks.aws
    secret = "whsec_" + base64.b64encode(b"standard-webhooks-key-0123").decode()
    save_provider(aws, ProviderConfig(name="stdhooks", signing_scheme="standard_webhooks"), {"signing_secret": secret})
    alert = put_notification(aws)
    body = json.dumps({"status": "acknowledged", "notification_id": alert["notification_id"]}).encode()

    def send(message_id: str) -> tuple[int, Any]:
        stamp = str(int(time.time()))
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": stamp,
            "webhook-signature": sign_standard_webhooks(secret, message_id, stamp, body),
        }
        return callbacks.post(raw=body, secret=None, provider="stdhooks", headers=headers)

    first, again, other = send("msg_1"), send("msg_1"), send("msg_2")
    assert (first[0], again[0], other[0]) == (200, 200, 200)
    assert (first[1]["duplicate"], again[1]["duplicate"], other[1]["duplicate"]) == (False, True, False)


# ---------------------------------------------------------------------------------------------- refusals


def assert_nothing_stored(callbacks: Callbacks, alert: dict[str, Any] | None = None) -> None:
    assert callbacks.records() == []
    if alert is not None:
        assert callbacks.notification(alert["notification_id"]) == alert


@pytest.mark.parametrize(
    ("how", "code", "words"),
    [
        ("unsigned", "signature_missing", "X-Callback-Timestamp"),
        ("stale", "signature_stale", "300 seconds"),
        ("future", "signature_stale", "300 seconds"),
        ("wrong_secret", "signature_mismatch", "no X-Callback-Signature entry matches"),
    ],
)
def test_a_failed_signature_check_is_a_401_that_stores_nothing(callbacks, capsys, caplog, how, code, words):
    # Given an unacked alert
    alert = put_notification(callbacks.aws)
    payload = ack(alert["notification_id"])
    kwargs: dict[str, Any] = {
        "unsigned": {"secret": None},
        "stale": {"timestamp": int(time.time()) - 301},
        "future": {"timestamp": int(time.time()) + 400},
        "wrong_secret": {"secret": "guessed"},
    }[how]

    # When the callback fails its signature check
    status, body = callbacks.post(payload, **kwargs)

    # Then it is a 401 saying what failed, nothing is stored, and a security log line and a metric are emitted
    assert status == 401
    assert body["error"] == code and words in body["message"]
    assert_nothing_stored(callbacks, alert)
    assert "CallbackSignatureRefused" in capsys.readouterr().out
    warnings = [record for record in caplog.records if record.getMessage() == "callback signature refused"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_a_mismatch_message_does_not_reveal_the_expected_digest(callbacks):
    body = json.dumps(ack("ntf_A")).encode()
    stamp = str(int(time.time()))
    expected = sign_hmac_sha256(SECRET, stamp, body)[7:]
    headers = {"X-Callback-Timestamp": stamp, "X-Callback-Signature": "sha256=" + "0" * 64}
    status, answer = callbacks.post(raw=body, secret=None, headers=headers)
    assert status == 401 and expected not in json.dumps(answer)


def test_a_body_over_256_kb_is_a_413_before_any_hmac(callbacks, monkeypatch):
    # Given HMAC made to fail loudly if anything computed one
    import connector_sla.callbacks.signatures as signatures

    def no_hmac(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("an HMAC was computed for an oversized body")

    monkeypatch.setattr(signatures, "hmac", SimpleNamespace(new=no_hmac, compare_digest=no_hmac))
    oversized = b'{"status": "acknowledged", "pad": "' + b"x" * (256 * 1024) + b'"}'

    # When a body over 256 KB arrives, signed or not
    status, body = callbacks.post(raw=oversized, secret=None, headers={"X-Callback-Timestamp": "1"})

    # Then it is refused with 413 and nothing is stored
    assert status == 413 and body["error"] == "payload_too_large"
    assert_nothing_stored(callbacks)


def test_a_body_of_exactly_256_kb_is_read(callbacks):
    filler = 256 * 1024 - len(b'{"status":"acknowledged","notification_id":"ntf_Q","pad":""}')
    raw = b'{"status":"acknowledged","notification_id":"ntf_Q","pad":"' + b"x" * filler + b'"}'
    assert len(raw) == 256 * 1024
    status, body = callbacks.post(raw=raw)
    assert status == 200 and body["matched"] is False


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json at all", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b"[" * 100_000, "not valid JSON"),
        (b'{"status": "acknowledged", "incident_id": "inc_1"}', "notification_id or delivery_id"),
        (b'{"status": "snoozed", "notification_id": "ntf_A"}', "not known"),
        (b'{"status": "acknowledged", "notification_id": 42}', "notification_id must be a string"),
        (b'{"status": "acknowledged", "notification_id": "ntf_A", "eta": "soon"}', "eta must be an ISO 8601"),
    ],
)
def test_bad_bodies_are_a_400_that_says_what_is_wrong_and_store_nothing(callbacks, raw, words):
    status, body = callbacks.post(raw=raw)
    assert status == 400, body
    assert body["error"] == "validation_error" and words in body["message"]
    assert_nothing_stored(callbacks)


def test_unknown_disabled_and_misnamed_providers_are_refused(callbacks):
    save_provider(callbacks.aws, ProviderConfig(name="paused", enabled=False), {"signing_secret": SECRET})
    assert callbacks.post(ack("ntf_A"), provider="nobody")[0] == 404
    assert callbacks.post(ack("ntf_A"), provider="paused")[0] == 403
    assert callbacks.post(ack("ntf_A"), provider="Not A Name")[0] == 400
    status, body = call_api(callbacks.aws, callbacks.handler, FUNCTION, "POST", PATH, body={}, query={"debug": "1"})
    assert status == 400 and "debug" in body["message"]
    assert_nothing_stored(callbacks)


def test_an_unreadable_secret_is_a_503_to_retry_not_a_500(callbacks):
    name = f"{service_settings().provider_secrets_path}/generic"
    callbacks.aws.client("secretsmanager").delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    handler = callbacks.aws.load_handler(FUNCTION)
    status, body = call_api(callbacks.aws, handler, FUNCTION, "POST", PATH, body=ack("ntf_A"))
    assert status == 503 and body["error"] == "unavailable"
    assert_nothing_stored(callbacks)


def test_rows_that_keep_changing_are_a_503_to_retry_and_nothing_is_stored(callbacks, monkeypatch):
    # Given every transaction cancelled because other writers hold the notification
    import connector_sla.callbacks.recorder as recorder_module

    def always_conflict(*_args: Any, **_kwargs: Any) -> None:
        raise TransactionCanceled([None, "TransactionConflict"])

    monkeypatch.setattr(recorder_module, "transact", always_conflict)
    alert = put_notification(callbacks.aws)

    # When a signed callback arrives
    body = json.dumps(ack(alert["notification_id"])).encode()
    stamp = str(int(time.time()))
    headers = {"X-Callback-Timestamp": stamp, "X-Callback-Signature": sign_hmac_sha256(SECRET, stamp, body)}
    event = api_event("POST", PATH, raw_body=body, headers=headers, functions=callbacks.aws.functions)
    response = callbacks.handler.lambda_handler(event, callbacks.aws.context(FUNCTION))

    # Then the provider is told to retry later, not given a 500, and nothing changed
    assert response["statusCode"] == 503 and response["headers"]["Retry-After"] == "5"
    assert json.loads(response["body"])["error"] == "unavailable"
    assert_nothing_stored(callbacks, alert)


# ---------------------------------------------------------------------------------------------- budget


@pytest.fixture
def dynamodb_requests() -> Counter:
    """Every DynamoDB request the handlers make from now on, by operation."""
    counts: Counter = Counter()

    def count(model: Any, **_kwargs: Any) -> None:
        counts[model.name] += 1

    client("dynamodb").meta.events.register("before-call.dynamodb", count)
    return counts


def test_an_accepted_callback_costs_at_most_three_dynamodb_requests(callbacks, dynamodb_requests):
    # Given an unacked alert
    alert = put_notification(callbacks.aws)
    payload = ack(alert["notification_id"])

    # When it is acknowledged, the callback is delivered again, and an unmatched callback arrives
    budgets = []
    for sent in (payload, payload, ack("ntf_NOBODY")):
        dynamodb_requests.clear()
        status, _ = callbacks.post(sent)
        assert status == 200
        budgets.append(dict(dynamodb_requests))

    # Then each one cost at most 3 requests: the provider, one batch read, one write
    assert [sum(budget.values()) for budget in budgets] == [3, 3, 3], budgets
    assert budgets[0] == {"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}
    assert budgets[1] == {"GetItem": 1, "BatchGetItem": 1, "UpdateItem": 1}


# ---------------------------------------------------------------------------------------------- garbage


HEADER_NAMES = st.sampled_from(
    [
        "X-Callback-Timestamp",
        "X-Callback-Signature",
        "x-callback-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-PagerDuty-Signature",
        "Content-Type",
        "Content-Length",
    ]
)
HEADER_VALUES = st.one_of(
    st.text(max_size=80),
    st.builds(lambda: str(int(time.time()))),
    st.builds(lambda digits: "sha256=" + digits, st.text(alphabet="0123456789abcdef", max_size=64)),
    st.builds(",".join, st.lists(st.text(max_size=12).map("v1=".__add__), max_size=4)),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
CORRELATED = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["acknowledged", "resolved", "closed", "triggered", "ACK", "snoozed"]),
        "notification_id": st.sampled_from(["ntf_GARBAGE", "ntf_NOBODY"]) | JSON_VALUES,
    },
    optional={"event_id": JSON_VALUES, "eta": JSON_VALUES | st.just("2099-01-01T00:00:00Z")},
)
LOOSE = st.fixed_dictionaries(
    {},
    optional={
        "status": JSON_VALUES,
        "notification_id": JSON_VALUES,
        "delivery_id": JSON_VALUES | st.just("dlv_GARBAGE_1"),
        "custom_details": JSON_VALUES,
    },
)
JSON_BODIES = (CORRELATED | LOOSE).map(lambda payload: json.dumps(payload).encode())
BODIES = st.one_of(
    JSON_BODIES, st.binary(max_size=300), st.text(max_size=200).map(str.encode), st.just(b"{" * (256 * 1024 + 1))
)


# No deadline and no speed health check: on a shared, loaded machine an example may take seconds, which says
# nothing about the handler. The assertion is only about the answers.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=BODIES,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5),
    provider=st.sampled_from(["open", "open", None, "generic", "paused", "nobody", "", "UPPER", "x" * 41])
    | st.text(max_size=10),
    extra_query=st.dictionaries(st.sampled_from(["debug", "q"]), st.text(max_size=5), max_size=1),
    base64_flag=st.sampled_from([None, True, False]),
)
def test_no_input_produces_a_500(garbage_target, body, headers, provider, extra_query, base64_flag):
    # Given any body, headers and query, for a signed provider and one that signs nothing
    event = dict(garbage_target.base_event)
    query = {**({"provider": provider} if provider is not None else {}), **extra_query}
    event["queryStringParameters"] = query or None
    event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()} or None
    event["headers"] = headers
    event["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
    if base64_flag is None:
        try:
            event["body"], event["isBase64Encoded"] = body.decode(), False
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body.decode("latin-1"), base64_flag

    # When the handler gets it
    response = garbage_target.handler.lambda_handler(event, garbage_target.context)
    event_label(f"status {response['statusCode']}")

    # Then the answer is a success or a 4xx that explains itself, never a server error
    assert response["statusCode"] in {200, 400, 401, 403, 404, 413}, response
    answer = json.loads(response["body"])
    if response["statusCode"] != 200:
        assert answer["error"] and answer["message"]


@dataclass
class GarbageTarget:
    handler: Any
    context: Any
    base_event: dict[str, Any]


@pytest.fixture
def garbage_target(callbacks) -> GarbageTarget:
    """The callback function with the signed default provider, an ``open`` one that checks no signature and a
    disabled one."""
    save_provider(callbacks.aws, ProviderConfig(name="open", signing_scheme="none"), {})
    save_provider(callbacks.aws, ProviderConfig(name="paused", enabled=False), {"signing_secret": SECRET})
    put_notification(callbacks.aws, notification_id="ntf_GARBAGE")
    base = api_event("POST", PATH, raw_body=b"{}", functions=callbacks.aws.functions)
    return GarbageTarget(callbacks.handler, callbacks.aws.context(FUNCTION), base)
