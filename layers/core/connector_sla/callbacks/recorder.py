"""Recording a callback: the history record, the notification's ACK state and the chain head, in one transaction.

Both the webhook and the reconcile job go through :meth:`CallbackRecorder.record`, so the ACK rules are applied in
one place. A callback costs two DynamoDB requests here: one BatchGetItem (the notification, an earlier record of
the same callback, the head of the provider's unmatched chain) and one TransactWriteItems (the sealed record and
the new chain head, plus the ACK change on the notification). A duplicate costs the read and one UpdateItem that
counts it. Only a lost race re-reads.

A callback with an ETA whose provider names the connector (the ``connector_id`` hint: the generic mapping reads it
from ``custom_details``) reads the connector's state row in the same BatchGetItem and records the ETA in the same
transaction, so it costs no more. Without the hint, or when the notification belongs to another connector, the
ETA is committed after the callback's transaction, through the state ledger (a read and a commit more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from connector_sla.callbacks.eta import EtaRecorder
from connector_sla.callbacks.intake import (
    CallbackIntake,
    CallbackOutcome,
    callback_id_for,
    check_intake,
    target_notification_id,
)
from connector_sla.callbacks.rules import (
    UNMATCHED_BAD_DELIVERY_ID,
    UNMATCHED_NOT_FOUND,
    AckChange,
    callback_chain_id,
    callback_record,
    plan_ack,
    unmatched_chain_id,
)
from connector_sla.config import settings
from connector_sla.evidence.chain import GENESIS_HASH, ChainHead
from connector_sla.sla.ledger import StateLedger
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Expression, Item, Table, TransactionCanceled, from_item, to_item, transact
from connector_sla.timeutil import to_iso

logger = Logger(child=True)

CHAIN_PK = "CHAIN"


class CallbackContention(Exception):
    """Other writers kept changing the notification or chain head; the caller may retry the whole callback."""


@dataclass(frozen=True)
class _Snapshot:
    notification: Item | None
    earlier: Item | None
    unmatched_head: Item | None
    # The state row of the connector the intake names, when it was read with the notification (else not read).
    state: Item | None = None
    state_read: bool = False

    def eta_in_transaction(self, intake: CallbackIntake) -> bool:
        """Whether the ETA goes into the callback's transaction: the state read is the notification's connector's."""
        return (
            self.state_read
            and self.notification is not None
            and self.notification.get("connector_id") == intake.connector_id
        )


class CallbackRecorder:
    """Storage adapter for callback records (CallbacksTable), their chain heads and the ACK state they change."""

    def __init__(
        self,
        *,
        notifications: Table,
        callbacks: Table,
        settings_table: Table,
        eta: EtaRecorder | None = None,
        attempts: int = 4,
    ) -> None:
        self.notifications = notifications
        self.callbacks = callbacks
        self.settings_table = settings_table
        self.eta = eta
        self.attempts = attempts
        self.dynamodb = callbacks.dynamodb

    @classmethod
    def from_settings(cls) -> CallbackRecorder:
        """A recorder on the deployment's tables, with ETA recording through the SLA state ledger."""
        config = settings()
        dynamodb = client("dynamodb")
        ledger = StateLedger(Table(config.connectors_table, dynamodb), Table(config.transitions_table, dynamodb))
        return cls(
            notifications=Table(config.notifications_table, dynamodb),
            callbacks=Table(config.callbacks_table, dynamodb),
            settings_table=Table(config.settings_table, dynamodb),
            eta=EtaRecorder(ledger),
        )

    def record(self, intake: CallbackIntake) -> CallbackOutcome:
        """Record ``intake`` once and apply its ACK effect (forward only) and its ETA to the linked notification.

        The same callback recorded again (same ``callback_id``) changes nothing and returns ``duplicate=True``.
        A callback whose notification does not exist is kept as unmatched in its provider's chain. Raises
        ``ValueError`` for an intake that breaks its contract, :class:`CallbackContention` when the rows kept
        changing under it.
        """
        check_intake(intake)
        callback_id = callback_id_for(intake)
        for _ in range(self.attempts):
            snapshot = self._read(intake, callback_id)
            if snapshot.earlier is not None:
                return self._count_duplicate(snapshot, callback_id)
            try:
                outcome = self._write(intake, callback_id, snapshot)
            except TransactionCanceled as error:
                if not _lost_race(error):
                    raise
                logger.info("callback write raced, reading again", callback_id=callback_id, reasons=error.reasons)
                continue
            # Limitation: without the connector hint the ETA is committed after the callback's transaction (the
            # state row is only known once the notification is read): it costs the ledger's read and commit on top
            # of the three requests of any accepted callback, and if that commit keeps losing races, a redelivery
            # is a duplicate and does not retry it.
            late_eta = not snapshot.eta_in_transaction(intake)
            if late_eta and outcome.matched and intake.eta and self.eta is not None and outcome.connector_id:
                eta_recorded = self.eta.record(
                    outcome.connector_id,
                    incident_id=outcome.incident_id,
                    eta=intake.eta,
                    provider=intake.provider,
                    responder=intake.actor,
                    at=intake.received_at,
                )
                outcome = _with_eta(outcome, eta_recorded)
            return outcome
        raise CallbackContention(callback_id)

    def preview(self, intake: CallbackIntake) -> CallbackOutcome:
        """What :meth:`record` would do for ``intake`` now, without writing anything (reconcile dry runs)."""
        check_intake(intake)
        callback_id = callback_id_for(intake)
        snapshot = self._read(intake, callback_id)
        if snapshot.earlier is not None:
            return _duplicate_outcome(snapshot, callback_id)
        if snapshot.notification is None:
            return _unmatched_outcome(intake, callback_id, _unmatched_reason(intake))
        change = plan_ack(snapshot.notification, intake)
        return _matched_outcome(snapshot.notification, callback_id, change)

    # ------------------------------------------------------------------------------------------------ reading

    def _read(self, intake: CallbackIntake, callback_id: str) -> _Snapshot:
        notification_id = target_notification_id(intake.notification_id, intake.delivery_id)
        keys: dict[str, dict[str, Any]] = {
            self.callbacks.name: {"callback_id": callback_id},
            self.settings_table.name: {"pk": CHAIN_PK, "sk": unmatched_chain_id(intake.provider)},
        }
        if notification_id:
            keys[self.notifications.name] = {"notification_id": notification_id}
        state_table: str | None = None
        if self.eta is not None and notification_id and intake.eta and intake.connector_id:
            state_table = self.eta.ledger.connectors.name
            keys[state_table] = self.eta.ledger.state_key(intake.connector_id)
        found = self._batch_get(keys)
        return _Snapshot(
            notification=found.get(self.notifications.name),
            earlier=found.get(self.callbacks.name),
            unmatched_head=found.get(self.settings_table.name),
            state=found.get(state_table) if state_table else None,
            state_read=state_table is not None,
        )

    def _batch_get(self, keys: Mapping[str, Mapping[str, Any]]) -> dict[str, Item]:
        request: dict[str, Any] = {
            table: {"Keys": [to_item(key)], "ConsistentRead": True} for table, key in keys.items()
        }
        found: dict[str, Item] = {}
        while request:
            response = self.dynamodb.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                for item in items:
                    found[table] = from_item(item)
            request = response.get("UnprocessedKeys") or {}
        return found

    # ------------------------------------------------------------------------------------------------ writing

    def _count_duplicate(self, snapshot: _Snapshot, callback_id: str) -> CallbackOutcome:
        expr = Expression()
        self.callbacks.update(
            {"callback_id": callback_id},
            expr,
            expr.update(add={"duplicate_count": 1}),
            condition=f"attribute_exists({expr.name('callback_id')})",
        )
        logger.info("callback duplicate", callback_id=callback_id)
        return _duplicate_outcome(snapshot, callback_id)

    def _write(self, intake: CallbackIntake, callback_id: str, snapshot: _Snapshot) -> CallbackOutcome:
        notification = snapshot.notification
        if notification is None:
            reason = _unmatched_reason(intake)
            record = callback_record(
                intake, callback_id=callback_id, notification=None, change=None, unmatched_reason=reason
            )
            chain_id = unmatched_chain_id(intake.provider)
            head_update = self._unmatched_head_update(snapshot.unmatched_head, chain_id, record, intake)
            transact(self.dynamodb, [self._put_record(head_update.sealed), head_update.action])
            logger.info("callback unmatched", callback_id=callback_id, reason=reason)
            return _unmatched_outcome(intake, callback_id, reason)
        change = plan_ack(notification, intake)
        record = callback_record(intake, callback_id=callback_id, notification=notification, change=change)
        head = ChainHead(
            int(notification.get("callback_chain_seq") or 0),
            str(notification.get("callback_chain_hash") or GENESIS_HASH),
        )
        sealed = head.next(record, callback_chain_id(notification["notification_id"]))
        action = self._notification_update(notification, change, head, sealed)
        if not (snapshot.eta_in_transaction(intake) and self.eta is not None and intake.eta and intake.connector_id):
            transact(self.dynamodb, [self._put_record(sealed), action])
            return _matched_outcome(notification, callback_id, change)
        eta_actions = self.eta.actions(
            intake.connector_id,
            snapshot.state,
            incident_id=notification.get("incident_id"),
            eta=intake.eta,
            provider=intake.provider,
            responder=intake.actor,
            at=intake.received_at,
        )
        transact(self.dynamodb, [self._put_record(sealed), action, *eta_actions])
        if eta_actions:
            logger.info("callback eta recorded", eta=intake.eta)
        return _matched_outcome(notification, callback_id, change)._replace(eta_recorded=bool(eta_actions))

    def _put_record(self, sealed: Mapping[str, Any]) -> dict[str, Any]:
        expr = Expression()
        return {
            "Put": {
                "TableName": self.callbacks.name,
                "Item": to_item(sealed),
                "ConditionExpression": f"attribute_not_exists({expr.name('callback_id')})",
                **expr.params(),
            }
        }

    def _notification_update(
        self, notification: Item, change: AckChange, head: ChainHead, sealed: Mapping[str, Any]
    ) -> dict[str, Any]:
        expr = Expression()
        assignments = {
            **change.set_fields,
            "callback_chain_seq": sealed["chain_seq"],
            "callback_chain_hash": sealed["record_hash"],
        }
        update = expr.update(set_=assignments, remove=change.remove_fields, add={"version": 1})
        # Like every writer of a notification: conditional on the version read (alerts.store), plus the chain head.
        conditions = [f"attribute_exists({expr.name('notification_id')})", _head_condition(expr, head)]
        if "version" in notification:
            conditions.append(f"{expr.name('version')} = {expr.value(notification['version'])}")
        else:
            conditions.append(f"attribute_not_exists({expr.name('version')})")
        return {
            "Update": {
                "TableName": self.notifications.name,
                "Key": to_item({"notification_id": notification["notification_id"]}),
                "UpdateExpression": update,
                "ConditionExpression": " AND ".join(conditions),
                **expr.params(),
            }
        }

    def _unmatched_head_update(
        self, row: Item | None, chain_id: str, record: Mapping[str, Any], intake: CallbackIntake
    ) -> _HeadUpdate:
        current = row or {}
        head = ChainHead(int(current.get("chain_seq") or 0), str(current.get("chain_hash") or GENESIS_HASH))
        sealed = head.next(record, chain_id)
        expr = Expression()
        update = expr.update(
            set_={
                "chain_seq": sealed["chain_seq"],
                "chain_hash": sealed["record_hash"],
                "updated_at": to_iso(intake.received_at),
            }
        )
        action = {
            "Update": {
                "TableName": self.settings_table.name,
                "Key": to_item({"pk": CHAIN_PK, "sk": chain_id}),
                "UpdateExpression": update,
                "ConditionExpression": _head_condition(expr, head, seq_attribute="chain_seq"),
                **expr.params(),
            }
        }
        return _HeadUpdate(sealed=sealed, action=action)


@dataclass(frozen=True)
class _HeadUpdate:
    sealed: dict[str, Any]
    action: dict[str, Any]


def _lost_race(error: TransactionCanceled) -> bool:
    """A row changed after it was read (a condition failed), or another transaction held one of its items."""
    return error.condition_failed or "TransactionConflict" in error.reasons


def _head_condition(expr: Expression, head: ChainHead, *, seq_attribute: str = "callback_chain_seq") -> str:
    if head.seq == 0:
        return f"attribute_not_exists({expr.name(seq_attribute)})"
    return f"{expr.name(seq_attribute)} = {expr.value(head.seq)}"


def _unmatched_reason(intake: CallbackIntake) -> str:
    if target_notification_id(intake.notification_id, intake.delivery_id) is None:
        return UNMATCHED_BAD_DELIVERY_ID
    return UNMATCHED_NOT_FOUND


def _matched_outcome(notification: Item, callback_id: str, change: AckChange) -> CallbackOutcome:
    return CallbackOutcome(
        callback_id=callback_id,
        duplicate=False,
        matched=True,
        ack_applied=change.applied,
        ack_state_before=change.before,
        ack_state_after=change.after,
        notification_id=notification["notification_id"],
        incident_id=notification.get("incident_id"),
        connector_id=notification.get("connector_id"),
    )


def _unmatched_outcome(intake: CallbackIntake, callback_id: str, reason: str) -> CallbackOutcome:
    return CallbackOutcome(
        callback_id=callback_id,
        duplicate=False,
        matched=False,
        ack_applied=False,
        ack_state_before=None,
        ack_state_after=None,
        notification_id=intake.notification_id,
        incident_id=intake.incident_id,
        unmatched_reason=reason,
    )


def _duplicate_outcome(snapshot: _Snapshot, callback_id: str) -> CallbackOutcome:
    earlier = snapshot.earlier or {}
    current = (snapshot.notification or {}).get("ack_state") if earlier.get("matched") else None
    return CallbackOutcome(
        callback_id=callback_id,
        duplicate=True,
        matched=bool(earlier.get("matched")),
        ack_applied=False,
        ack_state_before=current,
        ack_state_after=current,
        notification_id=earlier.get("notification_id"),
        incident_id=earlier.get("incident_id"),
        connector_id=earlier.get("connector_id"),
        unmatched_reason=earlier.get("unmatched_reason"),
    )


def _with_eta(outcome: CallbackOutcome, eta_recorded: bool) -> CallbackOutcome:
    return outcome._replace(eta_recorded=eta_recorded)
