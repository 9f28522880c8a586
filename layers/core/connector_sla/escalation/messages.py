"""What each channel says: summaries, emails, webhook bodies and PagerDuty events, from a notification record.

Pure functions over plain values; a retry renders the same message again from the stored notification.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SIGNAL_UNITS = {"freshness_lag": "s", "pending_replay": "rows", "dead_letter_growth": "rows/window"}
SIGNAL_NAMES = {
    "freshness_lag": "freshness lag",
    "pending_replay": "pending replay backlog",
    "dead_letter_growth": "dead-letter growth",
}
_STATUS_ORDER = {"critical": 0, "warning": 1, "ok": 2}
PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "ok": "info"}


def describe_signal(name: str, signal: Mapping[str, Any]) -> str:
    unit = SIGNAL_UNITS.get(name, "")
    value = signal.get("value")
    thresholds = f"warning {signal.get('warning')} {unit}, critical {signal.get('critical')} {unit}".strip()
    return f"{SIGNAL_NAMES.get(name, name)}: {signal.get('status', 'unknown')} at {value} {unit} ({thresholds})"


def signal_lines(signals: Mapping[str, Any] | None) -> list[str]:
    """One line per signal, the worst first."""
    ordered = sorted((signals or {}).items(), key=lambda pair: (_STATUS_ORDER.get(pair[1].get("status"), 3), pair[0]))
    return [describe_signal(name, signal) for name, signal in ordered]


def breaching(signals: Mapping[str, Any] | None) -> list[str]:
    """The names of the signals that are not ok, the worst first."""
    ordered = sorted((signals or {}).items(), key=lambda pair: (_STATUS_ORDER.get(pair[1].get("status"), 3), pair[0]))
    return [SIGNAL_NAMES.get(name, name) for name, signal in ordered if signal.get("status") in ("warning", "critical")]


def alert_summary(*, level: str, severity: str, connector_id: str, connector_name: str, signals: Any) -> str:
    """The one line that names the incident everywhere (email subject, page title, webhook summary)."""
    worst = ", ".join(breaching(signals)) or "SLA at risk"
    return f"[{level}] {connector_name or connector_id} ({connector_id}) SLA {severity}: {worst}"


def next_steps(notification: Mapping[str, Any]) -> str:
    """What the recipient should do now, by kind and level."""
    kind = notification.get("kind")
    incident_id = notification.get("incident_id")
    if kind == "resolved":
        return (
            "The connector recovered and the incident is closed; nothing more is needed. Review the timeline in "
            f"GET /events/connectors/sla/states and the deliveries in GET /alerts/deliveries?incident_id={incident_id}."
        )
    if kind == "reminder":
        return (
            f"No recovery ETA has been recorded for incident {incident_id}. Record one now with "
            f"POST /alerts/incidents/{incident_id}/eta (or through the on-call tool); an ETA that passes without "
            "recovery re-escalates."
        )
    timeout_minutes = int(notification.get("ack_timeout_seconds") or 0) // 60
    escalation = (
        f"If nobody acknowledges within {timeout_minutes} minutes, it escalates to the next level."
        if notification.get("level") != "L3"
        else ""
    )
    steps = {
        "L1": (
            "Confirm the connector's status and start diagnosis: check the active source in "
            "GET /events/connectors/source-health, checkpoint freshness in GET /events/connectors/overview and "
            "failed rows in GET /events/connectors/failures. Acknowledge in the on-call tool."
        ),
        "L2": (
            "The SLA breach is critical and repeating. Assess the impact on downstream consumers and the data "
            "platform, and make sure someone owns the recovery; patch and replay failed rows from the Replay "
            "Workbench if the cause is a parse or mapping failure."
        ),
        "L3": (
            "Escalated stage: join the duty manager's bridge and commit to a recovery ETA with "
            f"POST /alerts/incidents/{incident_id}/eta within "
            f"{int(notification.get('eta_required_within_seconds') or 0) // 60} minutes; without one a reminder "
            "follows, and an ETA that passes without recovery re-escalates."
        ),
    }
    return " ".join(part for part in (steps.get(str(notification.get("level")), ""), escalation) if part)


def email_message(notification: Mapping[str, Any], *, runbook_url: str) -> tuple[str, str]:
    """The subject and plain-text body of an email notification."""
    kind = notification.get("kind")
    # A resolved notice's summary already starts with [RESOLVED].
    prefix = {"reminder": "REMINDER "}.get(str(kind), "")
    subject = f"{prefix}{notification.get('summary', '')}"[:200]
    lines = [
        str(notification.get("summary", "")),
        "",
        f"Connector: {notification.get('connector_name', '')} ({notification.get('connector_id', '')})",
        f"Owner team: {notification.get('owner_team', '')}",
        f"Incident: {notification.get('incident_id', '')}",
        f"Level: {notification.get('level', '')}    Severity: {notification.get('severity', '')}",
        "",
        "Signals:",
        *[f"  - {line}" for line in signal_lines(notification.get("signals"))],
        "",
        "What to do next:",
        f"  {next_steps(notification)}",
        "",
        f"Runbook: {runbook_url}",
        f"Notification: {notification.get('notification_id', '')}",
    ]
    return subject, "\n".join(lines) + "\n"


def custom_details(notification: Mapping[str, Any], delivery_id: str) -> dict[str, Any]:
    """The correlation keys a provider sends back in its callback."""
    return {
        "notification_id": notification["notification_id"],
        "delivery_id": delivery_id,
        "incident_id": notification["incident_id"],
        "connector_id": notification.get("connector_id"),
        "level": notification.get("level"),
        "kind": notification.get("kind"),
    }


def webhook_payload(notification: Mapping[str, Any], delivery_id: str, *, runbook_url: str) -> dict[str, Any]:
    """The JSON body of a generic on-call webhook or a bridge webhook."""
    resolved = notification.get("kind") == "resolved"
    payload: dict[str, Any] = {
        "event": notification.get("kind"),
        "status": "resolved" if resolved else "triggered",
        "incident_id": notification["incident_id"],
        "level": notification.get("level"),
        "severity": notification.get("severity"),
        "summary": notification.get("summary"),
        "connector_id": notification.get("connector_id"),
        "connector_name": notification.get("connector_name"),
        "owner_team": notification.get("owner_team"),
        "signals": notification.get("signals") or {},
        "runbook_url": runbook_url,
        "next_steps": next_steps(notification),
        "occurred_at": notification.get("created_at"),
        "custom_details": custom_details(notification, delivery_id),
    }
    if resolved:
        payload["resolves"] = list(notification.get("resolves") or [])
    return payload


def pagerduty_events(
    notification: Mapping[str, Any], delivery_id: str, *, routing_key: str, runbook_url: str
) -> list[dict[str, Any]]:
    """PagerDuty Events API v2 bodies: one ``trigger`` per alert or reminder (``dedup_key`` = notification id),
    one ``resolve`` per alert a resolved notice closes."""
    if notification.get("kind") == "resolved":
        return [
            {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert_id}
            for alert_id in notification.get("resolves") or []
        ]
    details = {
        **custom_details(notification, delivery_id),
        "signals": signal_lines(notification.get("signals")),
        "next_steps": next_steps(notification),
        "owner_team": notification.get("owner_team"),
    }
    return [
        {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": notification["notification_id"],
            "payload": {
                "summary": str(notification.get("summary", ""))[:1024],
                "source": notification.get("connector_id"),
                "severity": PAGERDUTY_SEVERITY.get(str(notification.get("severity")), "warning"),
                "component": notification.get("connector_name"),
                "group": notification.get("owner_team"),
                "class": "connector_sla",
                "custom_details": details,
            },
            "links": [{"href": runbook_url, "text": "Runbook"}],
        }
    ]
