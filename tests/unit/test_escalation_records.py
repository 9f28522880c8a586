"""Notification and delivery records: stable ids, delivery ids, sealed rows and the forward-only ACK changes."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from connector_sla.alerts.ack import ACK_STATES, ack_rank
from connector_sla.alerts.records import (
    ack_changes,
    delivery_id_for,
    delivery_row,
    new_notification,
    notification_id_for,
    parse_delivery_id,
    shard_of,
)
from connector_sla.evidence.chain import ChainVerifier

NOW = datetime(2026, 12, 3, 19, 22, tzinfo=UTC)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=30)


def notification(**changes):
    record = new_notification(
        incident_id="inc_1",
        transition_id="trn_1",
        channel="oncall",
        target="generic",
        kind="alert",
        level="L1",
        now=NOW,
        context={"connector_id": "orders-db", "signals": {}, "summary": "s"},
    )
    return {**record, **changes}


@given(incident=ids, transition=ids, target=ids)
def test_notification_ids_are_stable_and_differ_per_channel(incident, transition, target):
    first = notification_id_for(incident, transition, "email", target)
    assert first == notification_id_for(incident, transition, "email", target)
    assert first != notification_id_for(incident, transition, "bridge", target)
    assert first.startswith("ntf_") and len(first) == 30


@given(incident=ids, attempt=st.integers(min_value=1, max_value=10_000))
def test_a_delivery_id_names_its_notification_and_attempt(incident, attempt):
    notification_id = notification_id_for(incident, "trn", "email", "a@example.com")
    delivery_id = delivery_id_for(notification_id, attempt)
    assert delivery_id == f"dlv_{notification_id[4:]}_{attempt}"
    assert parse_delivery_id(delivery_id) == (notification_id, attempt)


def test_foreign_delivery_ids_are_not_parsed():
    assert parse_delivery_id("abc") is None
    assert parse_delivery_id("dlv_X_0") is None
    assert parse_delivery_id("dlv__3") is None


@given(identifier=st.text(min_size=1, max_size=40))
def test_shards_are_0_to_7(identifier):
    assert shard_of(identifier) in {str(n) for n in range(8)}


def test_a_new_alert_is_unacked_in_the_unacked_index_and_a_resolved_notice_is_closed():
    alert = notification()
    resolved = new_notification(
        incident_id="inc_1",
        transition_id="trn_9",
        channel="email",
        target="a@example.com",
        kind="resolved",
        level="L2",
        now=NOW,
        context={},
    )
    assert alert["ack_state"] == "unacked" and alert["unacked_shard"] == shard_of(alert["notification_id"])
    assert alert["provider"] == "generic" and alert["delivery_status"] == "pending"
    assert resolved["ack_state"] == "closed" and "unacked_shard" not in resolved and "provider" not in resolved


def test_delivery_rows_form_a_verifiable_chain_headed_on_the_notification():
    verifier = ChainVerifier()
    current = notification()
    for attempt, status in enumerate(["failed", "failed", "sent"], start=1):
        row = delivery_row(current, attempt=attempt, status=status, at=NOW, response_code=503 if attempt < 3 else 202)
        assert verifier.check(row, f"attempt {attempt}") is None
        assert None not in row.values()
        current = {**current, "delivery_chain_seq": row["chain_seq"], "delivery_chain_hash": row["record_hash"]}
    assert current["delivery_chain_seq"] == 3


@given(current=st.sampled_from(ACK_STATES), proposed=st.sampled_from(ACK_STATES))
def test_ack_state_only_moves_forward(current, proposed):
    changes = ack_changes(notification(ack_state=current), proposed, at=NOW, source="callback", actor="sre")
    if ack_rank(proposed) <= ack_rank(current) or proposed == "unacked":
        assert changes is None
    else:
        set_, remove = changes
        assert set_["ack_state"] == proposed and set_[f"{proposed}_at"] == "2026-12-03T19:22:00.000Z"
        assert "unacked_shard" in remove


def test_an_ack_ends_the_ack_timer_but_not_a_retry_and_closing_ends_every_timer():
    timed = notification(due_kind="ack_timeout", due_at="x", due_shard="1")
    retrying = notification(due_kind="retry", due_at="x", due_shard="1")
    assert "due_at" in ack_changes(timed, "acknowledged", at=NOW, source="callback")[1]
    assert "due_at" not in ack_changes(retrying, "acknowledged", at=NOW, source="callback")[1]
    assert "due_at" in ack_changes(retrying, "closed", at=NOW, source="recovery")[1]
