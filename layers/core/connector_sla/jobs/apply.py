"""Applying a reconcile change through the callback recorder, so the ACK rules and the history live in one place.

Each change becomes a :class:`~connector_sla.callbacks.CallbackIntake` with ``source = "reconcile"`` and the job
and run ids, so it lands in the callback history (and its hash chain) like a provider's webhook would. Its
``provider_event_id`` is stable for a remote incident, notification and status: applying the same change again
(a run repeated after a crash) is recognized by the recorder as a duplicate and changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from connector_sla.callbacks.intake import CallbackIntake
from connector_sla.callbacks.recorder import CallbackRecorder
from connector_sla.jobs.reconcile import Change
from connector_sla.jobs.runner import ApplyResult


def reconcile_event_id(change: Change) -> str:
    """The stable event id of a reconcile change (remote incident, notification, status)."""
    return f"reconcile:{change.remote_id or '-'}:{change.notification_id}:{change.ack_state_after}"


class RecorderApplier:
    """A :class:`~connector_sla.jobs.runner.ChangeApplier` backed by the callback recorder."""

    def __init__(self, recorder: CallbackRecorder) -> None:
        self.recorder = recorder

    def apply(self, change: Change, *, provider: str, job_id: str, run_id: str, received_at: datetime) -> ApplyResult:
        """Record the change as a reconcile callback; ``applied`` says whether the ACK state moved."""
        outcome = self.recorder.record(
            CallbackIntake(
                provider=provider,
                status=change.ack_state_after,
                raw_status=change.raw_status,
                received_at=received_at,
                notification_id=change.notification_id,
                delivery_id=change.delivery_id,
                incident_id=change.incident_id,
                provider_event_id=reconcile_event_id(change),
                source="reconcile",
                job_id=job_id,
                run_id=run_id,
                signature="not_required",
            )
        )
        return ApplyResult(
            applied=outcome.ack_applied,
            callback_id=outcome.callback_id,
            duplicate=outcome.duplicate,
            ack_state_after=outcome.ack_state_after,
        )
