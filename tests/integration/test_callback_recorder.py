"""The recorder on moto: the entry point the reconcile job shares with the webhook (record, preview, races)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector_sla.callbacks.intake import CallbackIntake
from connector_sla.callbacks.recorder import CallbackRecorder
from connector_sla.evidence.chain import ChainVerifier
from connector_sla.ids import stable_id
from connector_sla.storage.dynamo import Expression, Table, TransactionCanceled
from tests.support import Aws, unacked_page

NOW = datetime(2026, 12, 3, 19, 30, tzinfo=UTC)


@pytest.fixture
def recorder(aws: Aws) -> CallbackRecorder:
    return CallbackRecorder.from_settings()


def table(aws: Aws, logical_id: str) -> Table:
    return Table(aws.name(logical_id), aws.client("dynamodb"))


def put_notification(aws: Aws, name: str = "a", **overrides: Any) -> dict[str, Any]:
    notification_id = stable_id("ntf", "inc_01REC", "trn_1", "oncall", name)
    row = unacked_page(notification_id, incident_id="inc_01REC", connector_id="billing", **overrides)
    table(aws, "NotificationsTable").put(row)
    return row


def reconcile_intake(notification_id: str, status: str = "resolved", **overrides: Any) -> CallbackIntake:
    values: dict[str, Any] = {
        "provider": "generic",
        "status": status,
        "raw_status": status.upper(),
        "notification_id": notification_id,
        "received_at": NOW,
        "source": "reconcile",
        "job_id": "job_1",
        "run_id": "run_1",
        "signature": "not_required",
        "dedup_basis": f"run_1|{notification_id}|{status}".encode(),
    }
    return CallbackIntake(**{**values, **overrides})


def records(aws: Aws) -> list[dict[str, Any]]:
    return [item for page in table(aws, "CallbacksTable").scan_pages() for item in page]


def test_a_reconcile_change_is_applied_with_the_callback_rules_and_recorded_with_its_run(aws, recorder):
    # Given an unacked alert
    alert = put_notification(aws)

    # When the reconcile job records the provider's resolved state
    outcome = recorder.record(reconcile_intake(alert["notification_id"]))

    # Then the ACK state moved, the notification left the Unacked index, and the history names the run
    assert outcome.ack_applied and (outcome.ack_state_before, outcome.ack_state_after) == ("unacked", "resolved")
    assert outcome.incident_id == "inc_01REC" and outcome.connector_id == "billing" and not outcome.duplicate
    row = table(aws, "NotificationsTable").get({"notification_id": alert["notification_id"]})
    assert row["ack_state"] == "resolved" and row["ack_source"] == "reconcile" and "unacked_shard" not in row
    (record,) = records(aws)
    assert (record["source"], record["job_id"], record["run_id"]) == ("reconcile", "job_1", "run_1")
    assert record["signature"] == "not_required" and record["callback_id"] == outcome.callback_id


def test_recording_the_same_change_again_is_a_duplicate(aws, recorder):
    alert = put_notification(aws)
    first = recorder.record(reconcile_intake(alert["notification_id"]))
    again = recorder.record(reconcile_intake(alert["notification_id"]))
    assert again.duplicate and not again.ack_applied and again.callback_id == first.callback_id
    assert again.ack_state_after == "resolved"
    assert len(records(aws)) == 1


def test_a_preview_says_what_would_change_and_writes_nothing(aws, recorder):
    # Given an unacked alert and one already resolved
    open_alert = put_notification(aws, "open")
    done = put_notification(aws, "done", ack_state="resolved")
    del done["unacked_shard"]
    table(aws, "NotificationsTable").put(done)

    # When a dry run previews both and an unknown one
    would_ack = recorder.preview(reconcile_intake(open_alert["notification_id"], "acknowledged"))
    would_skip = recorder.preview(reconcile_intake(done["notification_id"], "acknowledged"))
    unknown = recorder.preview(reconcile_intake("ntf_GONE"))

    # Then it reports the differences, and nothing was written
    assert (would_ack.ack_applied, would_ack.ack_state_after) == (True, "acknowledged")
    assert (would_skip.ack_applied, would_skip.ack_state_after) == (False, "resolved")
    assert not unknown.matched and unknown.unmatched_reason == "notification_not_found"
    assert records(aws) == []
    assert table(aws, "NotificationsTable").get({"notification_id": open_alert["notification_id"]}) == open_alert


def test_a_write_that_loses_a_race_reads_again_and_keeps_the_chain_whole(aws, recorder, monkeypatch):
    # Given a notification that another writer changes between the recorder's read and its write
    alert = put_notification(aws)
    read = recorder._read
    reads = []

    def read_then_race(*args: Any, **kwargs: Any) -> Any:
        snapshot = read(*args, **kwargs)
        reads.append(snapshot.notification["version"])
        if len(reads) == 1:
            expr = Expression()
            table(aws, "NotificationsTable").update(
                {"notification_id": alert["notification_id"]},
                expr,
                expr.update(set_={"delivery_status": "sent", "attempt_count": 2}, add={"version": 1}),
            )
        return snapshot

    monkeypatch.setattr(recorder, "_read", read_then_race)

    # When a callback is recorded
    outcome = recorder.record(reconcile_intake(alert["notification_id"], "acknowledged"))

    # Then the first write was refused, the second applied on the fresh row, and both changes survive
    assert reads == [1, 2]
    assert outcome.ack_applied
    row = table(aws, "NotificationsTable").get({"notification_id": alert["notification_id"]})
    assert row["ack_state"] == "acknowledged" and row["attempt_count"] == 2 and row["version"] == 3
    (record,) = records(aws)
    assert record["chain_seq"] == 1 and ChainVerifier().check(record, "callbacks") is None


def test_many_callbacks_on_one_notification_form_one_verifiable_chain(aws, recorder):
    alert = put_notification(aws)
    statuses = ["triggered", "annotated", "acknowledged", "reassigned", "acknowledged", "resolved", "closed"]
    for index, status in enumerate(statuses):
        at = NOW + timedelta(seconds=index)
        intake = reconcile_intake(alert["notification_id"], status, received_at=at, provider_event_id=f"e{index}")
        recorder.record(intake)
    chain = sorted(records(aws), key=lambda record: record["chain_seq"])
    verifier = ChainVerifier()
    assert [verifier.check(record, "callbacks") for record in chain] == [None] * len(statuses)
    assert [record["ack_applied"] for record in chain] == [False, False, True, False, False, True, True]
    row = table(aws, "NotificationsTable").get({"notification_id": alert["notification_id"]})
    assert (row["callback_chain_seq"], row["callback_chain_hash"]) == (len(statuses), chain[-1]["record_hash"])
    assert row["ack_state"] == "closed"


def test_an_intake_that_breaks_the_contract_is_refused_before_anything_is_read(aws, recorder):
    with pytest.raises(ValueError, match="status"):
        recorder.record(reconcile_intake("ntf_A", "snoozed"))
    assert records(aws) == []


def test_the_same_callback_delivered_twice_at_once_changes_state_once_and_is_recorded_once(aws, recorder, monkeypatch):
    # Given two deliveries of one callback that both read the rows before either writes
    alert = put_notification(aws)
    intake = reconcile_intake(alert["notification_id"], "acknowledged", provider_event_id="evt-twice")
    read = recorder._read
    reads = []

    def read_while_the_other_delivery_writes(*args: Any, **kwargs: Any) -> Any:
        snapshot = read(*args, **kwargs)
        reads.append(snapshot.earlier is not None)
        if len(reads) == 1:
            monkeypatch.setattr(recorder, "_read", read)
            first_outcomes.append(recorder.record(intake))
            monkeypatch.setattr(recorder, "_read", read_while_the_other_delivery_writes)
        return snapshot

    first_outcomes: list[Any] = []
    monkeypatch.setattr(recorder, "_read", read_while_the_other_delivery_writes)

    # When the slower delivery writes on its stale read
    second = recorder.record(intake)

    # Then its write was refused, it read again, and it answers as the duplicate of the faster one
    (first,) = first_outcomes
    assert reads == [False, True]
    assert first.ack_applied and not first.duplicate
    assert second.duplicate and not second.ack_applied and second.callback_id == first.callback_id
    row = table(aws, "NotificationsTable").get({"notification_id": alert["notification_id"]})
    assert row["ack_state"] == "acknowledged" and row["version"] == alert["version"] + 1
    (record,) = records(aws)
    assert record["duplicate_count"] == 1 and record["chain_seq"] == 1


def test_a_transaction_conflict_with_another_writer_is_retried_not_raised(aws, recorder, monkeypatch):
    # Given DynamoDB cancelling the first transaction because another one held the notification
    import connector_sla.callbacks.recorder as recorder_module

    alert = put_notification(aws)
    real_transact = recorder_module.transact
    attempts = []

    def conflict_once(dynamodb: Any, actions: list[dict[str, Any]], **kwargs: Any) -> None:
        attempts.append(len(actions))
        if len(attempts) == 1:
            raise TransactionCanceled([None, "TransactionConflict"])
        real_transact(dynamodb, actions, **kwargs)

    monkeypatch.setattr(recorder_module, "transact", conflict_once)

    # When a callback is recorded
    outcome = recorder.record(reconcile_intake(alert["notification_id"], "acknowledged"))

    # Then it was written on the second attempt
    assert attempts == [2, 2] and outcome.ack_applied
    assert len(records(aws)) == 1


def test_a_transaction_refused_for_another_reason_is_not_retried(aws, recorder, monkeypatch):
    import connector_sla.callbacks.recorder as recorder_module

    alert = put_notification(aws)
    attempts = []

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        attempts.append(1)
        raise TransactionCanceled([None, "ValidationError"])

    monkeypatch.setattr(recorder_module, "transact", refuse)
    with pytest.raises(TransactionCanceled):
        recorder.record(reconcile_intake(alert["notification_id"], "acknowledged"))
    assert attempts == [1]
