"""The rules of escalation as plain functions: which transition notifies whom, what a delivery attempt leads to,
and what each timer does when it comes due. No AWS, no clock: ``now`` is always a parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from connector_sla.alerts.records import (
    DUE_FIELDS,
    LEVELS,
    ack_changes,
    delivery_id_for,
    is_open,
    new_notification,
    timer_fields,
)
from connector_sla.escalation.chains import ChainLevel
from connector_sla.escalation.maintenance import MaintenanceWindow, hold_until
from connector_sla.escalation.messages import alert_summary
from connector_sla.timeutil import day_of, parse_iso, to_iso

# Transition kinds that put an incident at a level whose chain must be notified.
NOTIFYING_KINDS = frozenset({"opened", "escalated", "ack_timeout", "reescalated"})
MAX_ATTEMPTS = 5
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(minutes=15)
# How long a claimed attempt may take before the timer treats its outcome as unknown.
ATTEMPT_LEASE = timedelta(minutes=2)
# HTTP answers worth retrying; any other 4xx means the request itself is wrong and is final at once.
RETRYABLE_HTTP = frozenset({408, 409, 425, 429})


def next_level(level: str) -> str | None:
    """The level above ``level``; ``None`` at L3."""
    if level not in LEVELS:
        return LEVELS[0] if level == "none" else None
    index = LEVELS.index(level)
    return LEVELS[index + 1] if index + 1 < len(LEVELS) else None


def new_transition(new_image: Mapping[str, Any] | None, old_image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The transition a state-row change carries, or ``None`` when the row changed without a new transition."""
    latest = (new_image or {}).get("last_transition") or {}
    previous = (old_image or {}).get("last_transition") or {}
    if not latest.get("transition_id") or latest.get("transition_id") == previous.get("transition_id"):
        return None
    return dict(latest)


# ---------------------------------------------------------------------------------------------- notifying


def alert_context(state: Mapping[str, Any], *, level: str, transition_kind: str) -> dict[str, Any]:
    """The part of a notification that describes the incident, copied from the state row."""
    connector_id = str(state.get("connector_id") or state.get("pk"))
    severity = str(state.get("severity") or "warning")
    return {
        "connector_id": connector_id,
        "connector_name": state.get("connector_name") or connector_id,
        "owner_team": state.get("owner_team"),
        "severity": severity,
        "signals": state.get("signals") or {},
        "transition_kind": transition_kind,
        "summary": alert_summary(
            level=level,
            severity=severity,
            connector_id=connector_id,
            connector_name=str(state.get("connector_name") or ""),
            signals=state.get("signals"),
        ),
    }


def alert_drafts(
    state: Mapping[str, Any],
    transition: Mapping[str, Any],
    chain_level: ChainLevel,
    window: MaintenanceWindow | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """One alert per target of the level the transition reached; held when a maintenance window covers it."""
    level = chain_level.level
    context = alert_context(state, level=level, transition_kind=str(transition["kind"]))
    context["ack_timeout_seconds"] = chain_level.ack_timeout_seconds
    if level == "L3":
        context["eta_required_within_seconds"] = chain_level.eta_required_within_seconds
    drafts = []
    for target in chain_level.targets:
        draft = new_notification(
            incident_id=str(state["incident_id"]),
            transition_id=str(transition["transition_id"]),
            channel=target.channel,
            target=target.target,
            kind="alert",
            level=level,
            now=now,
            context={**context, "recipients": [target.label()]},
        )
        drafts.append(hold(draft, window, now) if window else {**draft, "dispatched_at": to_iso(now)})
    return drafts


def hold(draft: Mapping[str, Any], window: MaintenanceWindow, now: datetime) -> dict[str, Any]:
    """A new notification held back by a maintenance window, with its release timer."""
    return {
        **draft,
        "delivery_status": "held",
        "suppressed_reason": f"held by {window.describe()}",
        "maintenance_window_id": window.window_id,
        **timer_fields(str(draft["notification_id"]), "release", hold_until(window, now)),
    }


def reminder_drafts(
    round_alerts: Sequence[Mapping[str, Any]],
    state: Mapping[str, Any],
    *,
    index: int,
    trigger: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The ``index``-th ETA reminder to every target of an L3 round, one per (channel, target)."""
    drafts: dict[tuple[str, str], dict[str, Any]] = {}
    for alert in round_alerts:
        key = (str(alert["channel"]), str(alert["target"]))
        if key in drafts:
            continue
        context = alert_context(state, level="L3", transition_kind="eta_reminder")
        context["summary"] = f"Recovery ETA required (reminder {index}): {context['summary']}"
        context["recipients"] = alert.get("recipients")
        context["eta_required_within_seconds"] = alert.get("eta_required_within_seconds")
        draft = new_notification(
            incident_id=str(alert["incident_id"]),
            transition_id=str(alert["transition_id"]),
            channel=key[0],
            target=key[1],
            kind="reminder",
            level="L3",
            now=now,
            context=context,
            trigger=trigger,
        )
        drafts[key] = {**draft, "dispatched_at": to_iso(now)}
    return list(drafts.values())


class Closure(NamedTuple):
    """How recovery closes one notification: the changes, and a suppressed delivery row when it never went out."""

    notification: Mapping[str, Any]
    set_: dict[str, Any]
    remove: list[str]
    suppressed_reason: str | None = None


def recovery_plan(
    notifications: Sequence[Mapping[str, Any]],
    state: Mapping[str, Any],
    transition: Mapping[str, Any],
    now: datetime,
) -> tuple[list[Closure], list[dict[str, Any]]]:
    """What a recovery does: close every open notification of the incident (held and pending ones are
    suppressed) and send one resolved notice to every target that received an alert or reminder."""
    closures = []
    for notification in notifications:
        if not is_open(notification) or notification.get("kind") == "resolved":
            continue
        changes = ack_changes(notification, "closed", at=now, source="recovery")
        if changes is None:
            continue
        set_, remove = changes
        remove = sorted(set(remove) | {field for field in DUE_FIELDS if field in notification})
        reason = None
        status = notification.get("delivery_status")
        if status == "held":
            reason = f"incident recovered while the notification was held ({notification.get('suppressed_reason')})"
        elif status == "pending":
            reason = "incident recovered before a delivery attempt succeeded"
        if reason:
            set_ = {**set_, "delivery_status": "suppressed", "suppressed_reason": reason}
            remove = sorted(set(remove) | {"next_attempt_at"})
        closures.append(Closure(notification, set_, remove, reason))
    return closures, resolved_drafts(notifications, state, transition, now)


def resolved_drafts(
    notifications: Sequence[Mapping[str, Any]],
    state: Mapping[str, Any],
    transition: Mapping[str, Any],
    now: datetime,
) -> list[dict[str, Any]]:
    """One resolved notice per (channel, target) that was sent an alert or a reminder of the incident."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for notification in notifications:
        if notification.get("kind") in ("alert", "reminder") and notification.get("delivery_status") == "sent":
            groups.setdefault((str(notification["channel"]), str(notification["target"])), []).append(notification)
    drafts = []
    for (channel, target), sent in sorted(groups.items()):
        level = max(str(item.get("level")) for item in sent)
        context = alert_context(state, level=level, transition_kind=str(transition["kind"]))
        name = context["connector_name"]
        context["summary"] = f"[RESOLVED] {name} ({context['connector_id']}) recovered; incident closed"
        context["severity"] = str(state.get("severity") or "ok")
        context["recipients"] = sent[0].get("recipients")
        context["resolves"] = [str(item["notification_id"]) for item in sent]
        draft = new_notification(
            incident_id=str(sent[0]["incident_id"]),
            transition_id=str(transition["transition_id"]),
            channel=channel,
            target=target,
            kind="resolved",
            level=level,
            now=now,
            context=context,
        )
        drafts.append({**draft, "dispatched_at": to_iso(now)})
    return drafts


# ---------------------------------------------------------------------------------------------- delivery attempts


def deliverable(notification: Mapping[str, Any]) -> bool:
    """Whether a notification still wants delivery attempts: open ones, and resolved notices (created closed)."""
    if notification.get("delivery_status") in ("sent", "failed", "suppressed"):
        return False
    return is_open(notification) or notification.get("kind") == "resolved"


class AttemptResult(NamedTuple):
    """What one send achieved: ``sent``, ``retry`` (worth trying again) or ``final`` (it never will work)."""

    outcome: str
    response_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None


def classify_http(status: int) -> str:
    """``sent`` for 2xx, ``retry`` for 5xx and throttling, ``final`` for a request the target refuses."""
    if 200 <= status < 300:
        return "sent"
    if status >= 500 or status in RETRYABLE_HTTP:
        return "retry"
    return "final"


def retry_delay(attempt: int, notification_id: str) -> timedelta:
    """Exponential backoff after failed attempt ``attempt`` (30 s, 1 min, 2 min... at most 15 min), plus up to 20 %
    jitter fixed by the notification id so retries of many notifications spread out."""
    base = min(FIRST_RETRY * (2 ** min(max(attempt - 1, 0), 16)), LONGEST_RETRY)
    jitter = (sum(notification_id.encode()) % 21) / 100
    return base + base * jitter


def claim_fields(notification: Mapping[str, Any], attempt: int, now: datetime) -> dict[str, Any]:
    """The attributes that claim attempt ``attempt`` before it is sent (a lease the timer honours)."""
    return {
        "attempt_count": attempt,
        "last_delivery_id": delivery_id_for(str(notification["notification_id"]), attempt),
        "next_attempt_at": to_iso(now),
        **timer_fields(str(notification["notification_id"]), "retry", now + ATTEMPT_LEASE),
    }


class AttemptPlan(NamedTuple):
    """The delivery row status of an attempt and the changes it makes to its notification."""

    row_status: str
    set_: dict[str, Any]
    remove: tuple[str, ...] = ()


def after_attempt(
    notification: Mapping[str, Any],
    result: AttemptResult,
    now: datetime,
    *,
    attempt: int,
    max_attempts: int = MAX_ATTEMPTS,
) -> AttemptPlan:
    """What an attempt's result does to its notification: sent, retried later, or failed for good.

    A sent alert (or one that failed for good: the chain keeps pushing) starts its ack timer; a notification that
    was closed meanwhile starts nothing.
    """
    notification_id = str(notification["notification_id"])
    if result.outcome == "retry" and attempt < max_attempts and deliverable(notification):
        due = now + retry_delay(attempt, notification_id)
        return AttemptPlan(
            "failed",
            {
                "delivery_status": "pending",
                "next_attempt_at": to_iso(due),
                **timer_fields(notification_id, "retry", due),
            },
        )
    if result.outcome == "sent":
        status, row_status = "sent", "sent"
    elif not deliverable(notification):
        status, row_status = "suppressed", "failed"
    else:
        status, row_status = "failed", "failed_final"
    set_: dict[str, Any] = {"delivery_status": status}
    if status == "suppressed":
        set_["suppressed_reason"] = "incident closed before a delivery attempt succeeded"
    timer = watch_timer(notification, now)
    if timer:
        set_.update(timer_fields(notification_id, timer[0], timer[1]))
        return AttemptPlan(row_status, set_, ("next_attempt_at",))
    return AttemptPlan(row_status, set_, ("next_attempt_at", *DUE_FIELDS))


def watch_timer(notification: Mapping[str, Any], now: datetime) -> tuple[str, datetime] | None:
    """The timer an alert runs once delivered: its ack timeout, or at L3 the watch over ack and recovery ETA."""
    if notification.get("kind") != "alert" or not is_open(notification) or not notification.get("dispatched_at"):
        return None
    dispatched = parse_iso(str(notification["dispatched_at"]))
    timeout = timedelta(seconds=int(notification.get("ack_timeout_seconds") or 0))
    if notification.get("level") == "L3":
        if notification.get("ack_state") not in ("unacked", "acknowledged"):
            return None
        eta_window = timedelta(seconds=int(notification.get("eta_required_within_seconds") or 0)) or timeout
        return "eta_reminder", max(now, dispatched + min(timeout, eta_window))
    if notification.get("ack_state") != "unacked" or not timeout:
        return None
    return "ack_timeout", max(now, dispatched + timeout)


# ---------------------------------------------------------------------------------------------- timers


class TimerDecision(NamedTuple):
    """What a due timer does: ``escalate``, ``reescalate``, ``remind``, ``wait`` (until ``next_due``) or ``stop``."""

    action: str
    reason: str
    next_due: datetime | None = None
    reminder_index: int = 0


def moved_on(notification: Mapping[str, Any], state: Mapping[str, Any] | None) -> str | None:
    """Why the incident no longer needs this notification's timer, or ``None`` while it does."""
    if state is None:
        return "the connector has no SLA state"
    if state.get("incident_id") != notification.get("incident_id") or state.get("incident_status") != "open":
        return f"incident {notification.get('incident_id')} is closed"
    if state.get("level") != notification.get("level"):
        return f"the incident is at {state.get('level')} now"
    latest = state.get("last_transition") or {}
    if (
        latest.get("kind") in NOTIFYING_KINDS
        and latest.get("to_level") == notification.get("level")
        and latest.get("transition_id") != notification.get("transition_id")
    ):
        return f"a newer {notification.get('level')} round started ({latest.get('transition_id')})"
    return None


def _round_acked(notification: Mapping[str, Any], peers: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The alert of the same round that somebody acknowledged, if any."""
    for peer in [notification, *peers]:
        same_round = peer.get("kind") == "alert" and peer.get("transition_id") == notification.get("transition_id")
        if same_round and peer.get("ack_state") in ("acknowledged", "resolved"):
            return peer
    return None


def decide_ack_timeout(
    notification: Mapping[str, Any], state: Mapping[str, Any] | None, peers: Iterable[Mapping[str, Any]], now: datetime
) -> TimerDecision:
    """An L1 or L2 alert's ack timeout: escalate to the next level unless someone of its round acknowledged or the
    incident moved on."""
    if notification.get("ack_state") != "unacked" or not is_open(notification):
        return TimerDecision("stop", f"the notification is {notification.get('ack_state')}")
    reason = moved_on(notification, state)
    if reason:
        return TimerDecision("stop", reason)
    acked = _round_acked(notification, peers)
    if acked is not None:
        return TimerDecision("stop", f"acknowledged through {acked.get('channel')} {acked.get('target')}")
    timeout = int(notification.get("ack_timeout_seconds") or 0)
    deadline = parse_iso(str(notification.get("dispatched_at") or notification["created_at"])) + timedelta(
        seconds=timeout
    )
    if now < deadline:
        return TimerDecision("wait", "the ack timeout has not passed", deadline)
    if next_level(str(notification.get("level"))) is None:
        return TimerDecision("stop", "no level above")
    return TimerDecision("escalate", f"{notification.get('level')} unacknowledged for {timeout} s")


def decide_l3(
    notification: Mapping[str, Any], state: Mapping[str, Any] | None, peers: Sequence[Mapping[str, Any]], now: datetime
) -> TimerDecision:
    """The L3 watch: an ETA that passed, or an unacknowledged round without ETA past its ack timeout, re-escalates;
    without an ETA a reminder goes out every ``eta_required_within_seconds``."""
    if notification.get("ack_state") not in ("unacked", "acknowledged"):
        return TimerDecision("stop", f"the notification is {notification.get('ack_state')}")
    reason = moved_on(notification, state)
    if reason:
        return TimerDecision("stop", reason)
    assert state is not None
    created = str(notification["created_at"])
    newer = [
        peer
        for peer in peers
        if peer.get("kind") == "alert"
        and peer.get("level") == "L3"
        and str(peer.get("created_at")) > created
        and peer.get("transition_id") != notification.get("transition_id")
    ]
    if newer:
        return TimerDecision("stop", f"a newer L3 round started ({newer[0].get('transition_id')})")
    dispatched = parse_iso(str(notification.get("dispatched_at") or created))
    timeout = timedelta(seconds=int(notification.get("ack_timeout_seconds") or 0))
    window = timedelta(seconds=int(notification.get("eta_required_within_seconds") or 0)) or timeout
    if state.get("recovery_eta"):
        eta = parse_iso(str(state["recovery_eta"]))
        if now >= eta:
            return TimerDecision("reescalate", f"recovery ETA {state['recovery_eta']} passed without recovery")
        return TimerDecision("wait", "waiting for the recovery ETA", eta)
    acked = _round_acked(notification, peers) is not None
    if not acked and now >= dispatched + timeout:
        return TimerDecision(
            "reescalate", f"L3 unacknowledged for {int(timeout.total_seconds())} s and no recovery ETA recorded"
        )
    index = math.floor((now - dispatched) / window)
    next_due = dispatched + window * (index + 1)
    if not acked:
        next_due = min(next_due, dispatched + timeout)
    if index >= 1:
        return TimerDecision("remind", "no recovery ETA recorded", next_due, index)
    return TimerDecision("wait", "the ETA is not due yet", next_due)


def decide_release(
    notification: Mapping[str, Any],
    state: Mapping[str, Any] | None,
    window: MaintenanceWindow | None,
    now: datetime,
) -> TimerDecision:
    """A held notification: ``hold`` while a window covers it, then ``release`` it if its incident is still at its
    level, else ``suppress`` it with the reason."""
    if not is_open(notification) or notification.get("delivery_status") != "held":
        return TimerDecision("stop", "the notification is no longer held")
    if state is None or state.get("incident_id") != notification.get("incident_id"):
        return TimerDecision("suppress", "incident recovered during the maintenance window")
    if state.get("incident_status") != "open":
        return TimerDecision("suppress", "incident recovered during the maintenance window")
    if notification.get("kind") == "alert" and state.get("level") != notification.get("level"):
        return TimerDecision("suppress", f"superseded: the incident reached {state.get('level')} while held")
    if window is not None:
        return TimerDecision("hold", f"held by {window.describe()}", hold_until(window, now))
    return TimerDecision("release", "the maintenance window ended")


def level_change(
    state: Mapping[str, Any],
    *,
    kind: str,
    to_level: str,
    reason: str,
    now: datetime,
    transition_id: str,
    tick: str | None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state row and transition of a timer's level change (``ack_timeout`` or ``reescalated``).

    A re-escalation forgets the recovery ETA that passed: the next round needs a new one.
    """
    new_state = {key: value for key, value in state.items() if key not in ("pk", "sk", "version")}
    new_state["level"] = to_level
    new_state["polls_at_level"] = 0
    if kind == "reescalated":
        for key in ("recovery_eta", "eta_recorded_at", "eta_recorded_by"):
            new_state.pop(key, None)
    return new_state, _transition(state, kind, to_level, reason, now, transition_id, tick, extra)


def eta_change(
    state: Mapping[str, Any],
    *,
    eta: datetime,
    actor: str,
    now: datetime,
    transition_id: str,
    note: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state row and ``eta_recorded`` transition that record a recovery ETA on an open incident."""
    new_state = {key: value for key, value in state.items() if key not in ("pk", "sk", "version")}
    new_state.update(recovery_eta=to_iso(eta), eta_recorded_at=to_iso(now), eta_recorded_by=actor)
    reason = f"recovery ETA {to_iso(eta)} recorded by {actor}" + (f": {note}" if note else "")
    extra = {"eta": to_iso(eta), "actor": actor}
    return new_state, _transition(
        state, "eta_recorded", str(state.get("level")), reason, now, transition_id, None, extra
    )


def _transition(
    state: Mapping[str, Any],
    kind: str,
    to_level: str,
    reason: str,
    now: datetime,
    transition_id: str,
    tick: str | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    severity = state.get("severity")
    record = {
        "transition_id": transition_id,
        "kind": kind,
        "at": to_iso(now),
        "day": day_of(now),
        "incident_id": state.get("incident_id"),
        "from_level": state.get("level"),
        "to_level": to_level,
        "from_severity": severity,
        "to_severity": severity,
        "signals": state.get("signals") or {},
        "reason": reason,
        "tick": tick,
        **(extra or {}),
    }
    return {key: value for key, value in record.items() if value is not None}
