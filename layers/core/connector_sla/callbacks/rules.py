"""Pure rules of recording a callback: what it changes on the notification, and the history record it leaves.

No AWS and no clock here: the recorder reads the rows, asks these functions what to write, and writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector_sla.alerts.records import DUE_FIELDS, ack_changes
from connector_sla.callbacks.intake import CallbackIntake
from connector_sla.timeutil import day_of, to_iso

UNMATCHED_NOT_FOUND = "notification_not_found"
UNMATCHED_BAD_DELIVERY_ID = "delivery_id_not_recognized"


@dataclass(frozen=True)
class AckChange:
    """The ACK effect of one callback on one notification; ``applied`` is false when nothing moves."""

    before: str
    after: str
    applied: bool
    set_fields: dict[str, Any] = field(default_factory=dict)
    remove_fields: tuple[str, ...] = ()
    clears_ack_timer: bool = False


def plan_ack(notification: Mapping[str, Any], intake: CallbackIntake) -> AckChange:
    """How ``intake`` changes the notification's ACK state, by the notification rules of ``alerts.records``.

    The state only moves forward. An applied change sets the new state and its ``<state>_at`` time, who and what
    caused it (``ack_by`` is the responder, else the provider), takes the notification out of the Unacked index
    (``unacked_shard``) and cancels a pending ack-timeout timer, so the escalation timer never escalates a
    notification that was acknowledged.
    """
    before = str(notification.get("ack_state") or "unacked")
    changes = ack_changes(
        notification, intake.status, at=intake.received_at, source=intake.source, actor=intake.actor or intake.provider
    )
    if changes is None:
        return AckChange(before=before, after=before, applied=False)
    set_fields, remove = changes
    return AckChange(
        before=before,
        after=intake.status,
        applied=True,
        set_fields=set_fields,
        remove_fields=tuple(name for name in dict.fromkeys(remove) if name in notification),
        clears_ack_timer=any(name in DUE_FIELDS for name in remove),
    )


def callback_record(
    intake: CallbackIntake,
    *,
    callback_id: str,
    notification: Mapping[str, Any] | None,
    change: AckChange | None,
    unmatched_reason: str | None = None,
) -> dict[str, Any]:
    """The history record of a callback, before sealing; attributes without a value are left out.

    For a matched callback the incident and connector come from the notification (the provider's claim is not
    trusted over our own record); an unmatched one keeps the keys and incident the provider sent.
    """
    matched = notification is not None
    owner: Mapping[str, Any] = notification or {}
    record: dict[str, Any] = {
        "callback_id": callback_id,
        "provider": intake.provider,
        "source": intake.source,
        "job_id": intake.job_id,
        "run_id": intake.run_id,
        "received_at": to_iso(intake.received_at),
        "day": day_of(intake.received_at),
        "status": intake.status,
        "raw_status": intake.raw_status,
        "provider_event_id": intake.provider_event_id,
        "notification_id": owner["notification_id"] if matched else intake.notification_id,
        "delivery_id": intake.delivery_id,
        "incident_id": owner.get("incident_id") if matched else intake.incident_id,
        "connector_id": owner.get("connector_id"),
        "matched": matched,
        "unmatched_reason": None if matched else unmatched_reason or UNMATCHED_NOT_FOUND,
        "signature": intake.signature,
        "ack_applied": bool(change and change.applied),
        "ack_state_before": change.before if change else None,
        "ack_state_after": change.after if change else None,
        "eta": intake.eta,
        "actor": intake.actor,
    }
    return {key: value for key, value in record.items() if value is not None}


def callback_chain_id(notification_id: str) -> str:
    return f"callbacks:{notification_id}"


def unmatched_chain_id(provider: str) -> str:
    return f"callbacks:unmatched:{provider}"
