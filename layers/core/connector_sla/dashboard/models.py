"""Query and response models of the dashboard routes (pydantic; only the ops function imports them).

The response models document ``GET /ops/dashboard/data`` in the OpenAPI document; a test checks that what
:func:`connector_sla.dashboard.data.build_dashboard` returns validates against them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DashboardQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: int = Field(default=24, ge=1, le=168, description="How far back the timelines and deliveries reach (1-168).")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Summary(BaseModel):
    connectors: int
    critical: int
    warning: int
    ok: int
    not_evaluated: int
    open_incidents: int
    unacked_alerts: int
    failed_deliveries: int


class SignalView(BaseModel):
    name: str
    status: str
    value: int | None
    warning: int | None
    critical: int | None


class ConnectorView(BaseModel):
    connector_id: str
    name: str
    owner_team: str | None
    evaluated: bool
    severity: str = Field(description="ok, warning, critical, or not_evaluated before the first evaluation.")
    level: str
    incident_id: str | None = Field(description="The open incident, if any.")
    signals: list[SignalView]
    unmet_recovery: list[str]
    active_source: str | None
    last_tick: str | None


class IncidentView(BaseModel):
    incident_id: str
    connector_id: str | None
    connector_name: str | None
    level: str
    severity: str | None
    opened_at: str | None
    age_seconds: int | None
    recovery_eta: str | None
    eta_recorded_by: str | None
    eta_seconds_left: int | None = Field(description="Seconds until the recovery ETA; negative once it has passed.")
    eta_overdue: bool
    eta_missing: bool = Field(description="At L3 a recovery ETA is required and none is recorded.")
    unmet_recovery: list[str]
    unacked_alerts: int


class TimelineEvent(_Open):
    at: str | None
    type: Literal["transition", "notification"]
    incident_id: str | None
    connector_id: str | None
    kind: str | None
    detail: str | None


class CallbackEvent(_Open):
    at: str | None
    type: Literal["callback", "reconcile_run"]


class CallbackGroup(BaseModel):
    incident_id: str | None = Field(description="null groups the callbacks that matched no notification.")
    connector_id: str | None
    events: list[CallbackEvent]


class JobRunView(BaseModel):
    job_id: str | None
    run_id: str | None
    job_type: str | None
    status: str | None
    dry_run: bool
    started_at: str | None
    finished_at: str | None
    duration_seconds: int | None
    running_for_seconds: int | None
    counts: dict[str, int]
    changes: int = Field(description="How many changes a dry run would make.")


class DeliveryView(BaseModel):
    at: str | None
    delivery_id: str | None
    notification_id: str | None
    incident_id: str | None
    connector_id: str | None
    level: str | None
    channel: str | None
    target: str | None
    status: str | None
    attempt: int | None
    response_code: int | None
    latency_ms: int | None
    error: str | None


class ExportSummary(BaseModel):
    export_id: str | None
    status: str | None
    created_at: str | None
    requested_by: str | None
    query: dict[str, str]
    record_count: int | None
    verified: bool | None
    first_problem: str | None
    error: str | None


class DashboardData(BaseModel):
    generated_at: str
    window_hours: int
    summary: Summary
    connectors: list[ConnectorView]
    open_incidents: list[IncidentView]
    escalation_timeline: list[TimelineEvent]
    callback_timeline: list[CallbackGroup]
    job_runs: list[JobRunView]
    deliveries: list[DeliveryView]
    exports: list[ExportSummary]
    notes: list[str]
