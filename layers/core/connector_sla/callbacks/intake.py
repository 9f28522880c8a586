"""What a callback says once it is authenticated and normalized, and what recording it did.

:class:`CallbackIntake` is the one shape in which both the webhook and the reconcile job hand a provider's word
to :class:`~connector_sla.callbacks.recorder.CallbackRecorder`. NamedTuples: the callback function builds
them on its cold path, without pydantic.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import NamedTuple, get_args

from connector_sla.alerts.records import parse_delivery_id
from connector_sla.callbacks.names import CallbackStatus
from connector_sla.ids import stable_id

# Statuses a callback may carry once a provider's status_map has been applied. ACK-like ones move the ACK state
# (connector_sla.alerts.ack); the others are recorded in the history only.
NORMALIZED_STATUSES: tuple[str, ...] = get_args(CallbackStatus)
SOURCES = ("callback", "reconcile")
SIGNATURE_RESULTS = ("verified", "not_required")


class CallbackIntake(NamedTuple):
    """One authenticated provider statement about a notification, normalized.

    ``status`` is one of :data:`NORMALIZED_STATUSES` (``raw_status`` is what the provider sent). At least one of
    ``notification_id`` and ``delivery_id`` names the notification. ``dedup_basis`` is what makes two deliveries
    the same callback when the provider gives no ``provider_event_id`` (the webhook uses the signed timestamp and
    the raw body). ``eta`` is an ISO 8601 UTC time or ``None``; ``actor`` is who acted at the provider.
    ``connector_id`` is what the provider says the notification's connector is: a hint that lets a callback with
    an ETA read the connector's state with the notification, used only when the notification agrees.
    """

    provider: str
    status: str
    received_at: datetime
    raw_status: str | None = None
    notification_id: str | None = None
    delivery_id: str | None = None
    incident_id: str | None = None
    provider_event_id: str | None = None
    source: str = "callback"
    job_id: str | None = None
    run_id: str | None = None
    signature: str = "verified"
    dedup_basis: bytes = b""
    eta: str | None = None
    actor: str | None = None
    connector_id: str | None = None


class CallbackOutcome(NamedTuple):
    """What :meth:`CallbackRecorder.record` did (or, from ``preview``, would do).

    ``duplicate`` is true when the same callback was already recorded: nothing changed this time. ``ack_applied``
    is true when this callback moved the notification's ACK state from ``ack_state_before`` to
    ``ack_state_after``. ``eta_recorded`` is true when the callback's ETA was committed to the connector's state.
    """

    callback_id: str
    duplicate: bool
    matched: bool
    ack_applied: bool
    ack_state_before: str | None
    ack_state_after: str | None
    notification_id: str | None
    incident_id: str | None
    connector_id: str | None = None
    unmatched_reason: str | None = None
    eta_recorded: bool = False


def target_notification_id(notification_id: str | None, delivery_id: str | None) -> str | None:
    """The notification a callback is about: its ``notification_id``, else the one its ``delivery_id`` names."""
    if notification_id:
        return notification_id
    parsed = parse_delivery_id(delivery_id) if delivery_id else None
    return parsed[0] if parsed else None


def callback_id_for(intake: CallbackIntake) -> str:
    """The stable id of a callback: provider + provider event id, else provider + hash of the dedup basis.

    The same callback delivered twice gets the same id, which is how the second delivery is recognized.
    """
    if intake.provider_event_id:
        return stable_id("cbk", intake.provider, "event", intake.provider_event_id)
    basis = intake.dedup_basis or _fallback_basis(intake)
    return stable_id("cbk", intake.provider, "body", hashlib.sha256(basis).hexdigest())


def _fallback_basis(intake: CallbackIntake) -> bytes:
    parts = (intake.source, intake.run_id, intake.notification_id, intake.delivery_id, intake.status, intake.eta)
    return "\x1f".join(part or "" for part in parts).encode()


def check_intake(intake: CallbackIntake) -> None:
    """Raise ``ValueError`` naming the first field of ``intake`` that breaks the contract above."""
    if intake.status not in NORMALIZED_STATUSES:
        raise ValueError(f"status {intake.status!r} is not one of {', '.join(NORMALIZED_STATUSES)}")
    if intake.source not in SOURCES:
        raise ValueError(f"source {intake.source!r} is not one of {', '.join(SOURCES)}")
    if intake.signature not in SIGNATURE_RESULTS:
        raise ValueError(f"signature {intake.signature!r} is not one of {', '.join(SIGNATURE_RESULTS)}")
    if not (intake.notification_id or intake.delivery_id):
        raise ValueError("a callback needs notification_id or delivery_id")
    if intake.received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
