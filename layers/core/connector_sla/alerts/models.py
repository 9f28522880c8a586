"""API models of the notification and delivery read endpoints.

Schemas are built on first use (``defer_build``): an invocation pays only for the models of its own route.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

_CONNECTOR = r"^[a-z0-9][a-z0-9._-]{1,62}$"
_INCIDENT = r"^inc_[0-9A-Za-z]{10,40}$"
_NOTIFICATION = r"^ntf_[0-9A-Z]{26}$"

Level = Literal["L1", "L2", "L3"]
Channel = Literal["oncall", "email", "bridge"]


class NotificationQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    only_unacked: bool = Field(False, description="Only alerts nobody has acknowledged yet.")
    incident_id: str | None = Field(None, pattern=_INCIDENT)
    connector_id: str | None = Field(None, pattern=_CONNECTOR)
    level: Level | None = None
    kind: Literal["alert", "reminder", "resolved"] | None = None
    channel: Channel | None = None
    delivery_status: Literal["pending", "sent", "failed", "held", "suppressed"] | None = None
    since: AwareDatetime | None = Field(None, description="Created at or after (default: 7 days ago).")
    until: AwareDatetime | None = Field(None, description="Created at or before (default: now).")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=4000, description="next_cursor of the previous page.")


class NotificationView(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    notification_id: str
    incident_id: str
    connector_id: str | None = None
    connector_name: str | None = None
    owner_team: str | None = None
    level: str | None = None
    kind: str
    transition_id: str | None = None
    transition_kind: str | None = None
    channel: str
    target: str
    provider: str | None = None
    recipients: list[str] | None = None
    summary: str | None = None
    severity: str | None = None
    signals: dict[str, Any] | None = None
    ack_state: str
    acknowledged_at: str | None = None
    resolved_at: str | None = None
    closed_at: str | None = None
    ack_source: str | None = None
    ack_by: str | None = None
    delivery_status: str
    attempt_count: int = 0
    last_delivery_id: str | None = None
    next_attempt_at: str | None = None
    suppressed_reason: str | None = None
    maintenance_window_id: str | None = None
    released_at: str | None = None
    dispatched_at: str | None = None
    ack_timeout_seconds: int | None = None
    eta_required_within_seconds: int | None = None
    resolves: list[str] | None = None
    due_kind: str | None = Field(None, description="The pending timer, if any.")
    due_at: str | None = None
    created_at: str
    updated_at: str | None = None


class NotificationPage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    items: list[NotificationView]
    next_cursor: str | None = None


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    notification_id: str | None = Field(None, pattern=_NOTIFICATION)
    incident_id: str | None = Field(None, pattern=_INCIDENT)
    connector_id: str | None = Field(None, pattern=_CONNECTOR)
    status: Literal["sent", "failed", "failed_final", "suppressed"] | None = None
    channel: Channel | None = None
    level: Level | None = None
    since: AwareDatetime | None = Field(None, description="Attempted at or after (default: 7 days ago).")
    until: AwareDatetime | None = Field(None, description="Attempted at or before (default: now).")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=4000, description="next_cursor of the previous page.")


class DeliveryView(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    delivery_id: str
    notification_id: str
    attempt: int
    incident_id: str
    connector_id: str | None = None
    level: str | None = None
    kind: str | None = None
    channel: str
    target: str
    status: str
    response_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    at: str
    chain_id: str
    chain_seq: int
    prev_hash: str
    record_hash: str


class DeliveryPage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    items: list[DeliveryView]
    next_cursor: str | None = None
