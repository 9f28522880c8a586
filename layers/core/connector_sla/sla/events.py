"""SLA events on the EventBridge bus, published from the transition outbox.

A transition is committed with ``event_pending`` set (the outbox); it is published after the commit and then
taken out of the outbox. A transition whose publication failed is published by the next evaluation pass, so an
event is never lost; a consumer may see it twice after such a failure and drops the duplicate by ``transition_id``
(also the event's ``id`` in ``detail``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger

EVENT_SOURCE = "connector-sla"
DETAIL_TYPES = {
    "opened": "event_connector_sla",
    "severity_changed": "event_connector_sla",
    "escalated": "event_connector_sla_escalation",
    "ack_timeout": "event_connector_sla_escalation",
    "reescalated": "event_connector_sla_escalation",
    "recovered": "event_connector_sla_recovery",
    "failover": "event_connector_source_failover",
    "failback": "event_connector_source_failover",
}
_BATCH = 10  # PutEvents entries per call

logger = Logger(child=True)


def detail_type(transition: Mapping[str, Any]) -> str | None:
    """The detail-type a transition is announced with, or ``None`` when it is not announced."""
    return DETAIL_TYPES.get(str(transition.get("kind")))


def event_detail(transition: Mapping[str, Any], runbook_url: str) -> dict[str, Any]:
    """The event body: connector, incident, level, severity, signals with thresholds, timestamps, runbook link."""
    signals = {
        name: {key: reading.get(key) for key in ("value", "warning", "critical", "status")}
        for name, reading in (transition.get("signals") or {}).items()
    }
    detail: dict[str, Any] = {
        "transition_id": transition["transition_id"],
        "kind": transition["kind"],
        "connector_id": transition["connector_id"],
        "connector_name": transition.get("connector_name"),
        "owner_team": transition.get("owner_team"),
        "incident_id": transition.get("incident_id"),
        "level": transition.get("to_level") or transition.get("level"),
        "from_level": transition.get("from_level"),
        "to_level": transition.get("to_level"),
        "severity": transition.get("to_severity") or _worst(signals),
        "signals": signals,
        "reason": transition.get("reason"),
        "occurred_at": transition["at"],
        "runbook_url": runbook_url,
    }
    for key in ("duration_seconds", "from_source", "to_source"):
        if key in transition:
            detail[key] = transition[key]
    return detail


def _worst(signals: Mapping[str, Mapping[str, Any]]) -> str:
    order = {"ok": 0, "warning": 1, "critical": 2}
    return max(
        (str(reading.get("status") or "ok") for reading in signals.values()), key=order.__getitem__, default="ok"
    )


class SlaEventPublisher:
    """PutEvents adapter for the SLA event bus."""

    def __init__(self, events_client: Any, bus_name: str, runbook_url: str) -> None:
        self.events = events_client
        self.bus_name = bus_name
        self.runbook_url = runbook_url

    def publish(self, transitions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Publish the announced transitions; returns those that were accepted by EventBridge."""
        announced = [transition for transition in transitions if detail_type(transition)]
        accepted: list[Mapping[str, Any]] = []
        for start in range(0, len(announced), _BATCH):
            batch = announced[start : start + _BATCH]
            entries: list[dict[str, Any]] = [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type(transition),
                    "Detail": json.dumps(event_detail(transition, self.runbook_url)),
                    "EventBusName": self.bus_name,
                    "Resources": [],
                }
                for transition in batch
            ]
            response = self.events.put_events(Entries=entries)
            for transition, result in zip(batch, response.get("Entries", []), strict=False):
                if result.get("EventId"):
                    accepted.append(transition)
                else:
                    logger.warning(
                        "sla event not accepted",
                        transition_id=transition["transition_id"],
                        error_code=result.get("ErrorCode"),
                    )
        return accepted
