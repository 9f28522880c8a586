"""Notification and delivery records: their ids, their shapes and the rules every writer of them follows.

Plain values only (no AWS, no clock): the escalation function, the timer, the callback function and the
reconcile job all build and change these records through the functions here, so the shapes of
``docs/design.md`` are written in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connector_sla.alerts.ack import ack_rank, ack_timestamp_field, advances
from connector_sla.evidence.chain import GENESIS_HASH, ChainHead
from connector_sla.ids import stable_id
from connector_sla.timeutil import day_of, to_iso

KINDS = ("alert", "reminder", "resolved")
CHANNELS = ("oncall", "email", "bridge")
DELIVERY_STATUSES = ("pending", "sent", "failed", "held", "suppressed")
ATTEMPT_STATUSES = ("sent", "failed", "failed_final", "suppressed")
DUE_KINDS = ("ack_timeout", "retry", "release", "eta_reminder")
LEVELS = ("L1", "L2", "L3")
SHARDS = 8
DUE_FIELDS = ("due_shard", "due_at", "due_kind")


def notification_id_for(incident_id: str, transition_id: str, channel: str, target: str) -> str:
    """The stable id of the notification a transition sends to one target: a redelivered record finds it again."""
    return stable_id("ntf", incident_id, transition_id, channel, target)


def reminder_trigger(round_transition_id: str, index: int) -> str:
    """What stands in for the transition id in the id of the ``index``-th ETA reminder of an L3 round."""
    return f"{round_transition_id}#eta-reminder-{index}"


def delivery_id_for(notification_id: str, attempt: int) -> str:
    """``dlv_<notification id without ntf_>_<attempt>``: a callback that carries only this still names its
    notification."""
    if not notification_id.startswith("ntf_"):
        raise ValueError(f"{notification_id!r} is not a notification id")
    if attempt < 1:
        raise ValueError("attempts are numbered from 1")
    return f"dlv_{notification_id[4:]}_{attempt}"


def parse_delivery_id(delivery_id: str) -> tuple[str, int] | None:
    """The notification id and attempt a delivery id names, or ``None`` when it is not one of ours."""
    if not delivery_id.startswith("dlv_"):
        return None
    body, _, attempt = delivery_id[4:].rpartition("_")
    if not body or not attempt.isdigit() or int(attempt) < 1:
        return None
    return f"ntf_{body}", int(attempt)


def shard_of(identifier: str) -> str:
    """The shard (``"0"``..``"7"``) of the sparse Unacked and Due indexes, fixed by the id."""
    return str(sum(identifier.encode()) % SHARDS)


def deliveries_chain_id(notification_id: str) -> str:
    return f"deliveries:{notification_id}"


def timer_fields(notification_id: str, kind: str, due_at: datetime) -> dict[str, str]:
    """The sparse Due index attributes of a pending timer."""
    if kind not in DUE_KINDS:
        raise ValueError(f"unknown timer kind {kind!r}")
    return {"due_shard": shard_of(notification_id), "due_at": to_iso(due_at), "due_kind": kind}


def without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """The record without absent values: what is stored is exactly what is hashed."""
    return {key: value for key, value in values.items() if value is not None}


def new_notification(
    *,
    incident_id: str,
    transition_id: str,
    channel: str,
    target: str,
    kind: str,
    level: str,
    now: datetime,
    context: Mapping[str, Any],
    trigger: str | None = None,
) -> dict[str, Any]:
    """A notification as it is first written, before any delivery attempt.

    ``context`` carries what the message needs and what readers filter on: ``connector_id``, ``connector_name``,
    ``owner_team``, ``severity``, ``signals``, ``summary``, ``recipients``, ``transition_kind`` and, per kind,
    ``ack_timeout_seconds``, ``eta_required_within_seconds``, ``resolves``. ``trigger`` replaces the transition
    id in the stable id (reminders). Resolved notices are created ``closed``: there is nothing to acknowledge.
    """
    if kind not in KINDS or channel not in CHANNELS:
        raise ValueError(f"unknown notification kind {kind!r} or channel {channel!r}")
    notification_id = notification_id_for(incident_id, trigger or transition_id, channel, target)
    created_at = to_iso(now)
    record: dict[str, Any] = {
        "notification_id": notification_id,
        "incident_id": incident_id,
        "transition_id": transition_id,
        "kind": kind,
        "level": level,
        "channel": channel,
        "target": target,
        "provider": target if channel == "oncall" else None,
        "ack_state": "unacked",
        "delivery_status": "pending",
        "attempt_count": 0,
        "created_at": created_at,
        "updated_at": created_at,
        "day": day_of(now),
        "version": 1,
        **{key: value for key, value in context.items() if value is not None},
    }
    if kind == "alert":
        record["unacked_shard"] = shard_of(notification_id)
    if kind == "resolved":
        record.update(ack_state="closed", closed_at=created_at, ack_source="recovery")
    return without_none(record)


def delivery_row(
    notification: Mapping[str, Any],
    *,
    attempt: int,
    status: str,
    at: datetime,
    response_code: int | None = None,
    latency_ms: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One attempt of a notification, sealed into the notification's delivery chain (head on the notification)."""
    if status not in ATTEMPT_STATUSES:
        raise ValueError(f"unknown delivery status {status!r}")
    notification_id = str(notification["notification_id"])
    record = without_none(
        {
            "notification_id": notification_id,
            "attempt": attempt,
            "delivery_id": delivery_id_for(notification_id, attempt),
            "incident_id": notification["incident_id"],
            "connector_id": notification.get("connector_id"),
            "level": notification.get("level"),
            "kind": notification.get("kind"),
            "channel": notification["channel"],
            "target": notification["target"],
            "status": status,
            "response_code": response_code,
            "latency_ms": latency_ms,
            "error": error[:1000] if error else None,
            "at": to_iso(at),
            "day": day_of(at),
        }
    )
    head = ChainHead(
        int(notification.get("delivery_chain_seq") or 0), str(notification.get("delivery_chain_hash") or GENESIS_HASH)
    )
    return head.next(record, deliveries_chain_id(notification_id))


def ack_changes(
    notification: Mapping[str, Any],
    proposed: str,
    *,
    at: datetime,
    source: str,
    actor: str | None = None,
) -> tuple[dict[str, Any], list[str]] | None:
    """The attributes to set and remove when ``proposed`` moves the ACK state forward; ``None`` when it does not.

    Leaving ``unacked`` takes the notification out of the Unacked index, and out of the Due index when its timer
    was the ack timeout (a retry or an L3 watch still runs). ``closed`` also ends every timer.
    """
    current = str(notification.get("ack_state") or "unacked")
    if not advances(current, proposed):
        return None
    changes: dict[str, Any] = {
        "ack_state": proposed,
        ack_timestamp_field(proposed): to_iso(at),
        "ack_source": source,
        "updated_at": to_iso(at),
    }
    if actor:
        changes["ack_by"] = actor
    remove = ["unacked_shard"] if "unacked_shard" in notification else []
    if notification.get("due_kind") == "ack_timeout" or (proposed == "closed" and "due_at" in notification):
        remove.extend(DUE_FIELDS)
    return changes, remove


def is_open(notification: Mapping[str, Any]) -> bool:
    """Whether the notification can still change delivery or ACK state (it is not ``closed``)."""
    return ack_rank(str(notification.get("ack_state") or "unacked")) < ack_rank("closed")
