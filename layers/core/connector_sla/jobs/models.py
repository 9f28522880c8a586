"""Request and response models of the jobs API (pydantic; the job runner does not import this module)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector_sla.jobs.mapping import DEFAULT_TEMPLATE, MappingError, compile_mapping

RECONCILE_JOB = "alert_oncall_reconcile"
JOB_ID_PATTERN = r"^job_[0-9A-Z]{26}$"
PROVIDER_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
RemoteStatus = Literal["triggered", "acknowledged", "resolved", "closed"]
RunStatus = Literal["queued", "running", "succeeded", "partial", "failed", "skipped"]

_PAGE = DEFAULT_TEMPLATE["next_page"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NextPage(_Strict):
    """How to reach the next page of the incident list."""

    style: Literal["offset", "cursor", "link", "none"] = Field(
        _PAGE["style"],
        description="offset: offset/limit query parameters while has_more is true; cursor: a cursor read from the "
        "page; link: a next-page URL read from the page (same origin only); none: one page",
    )
    has_more: str = Field(_PAGE["has_more"], description="JMESPath over the page: true while more pages follow")
    offset_param: str = Field(_PAGE["offset_param"], max_length=64)
    limit_param: str = Field(_PAGE["limit_param"], max_length=64)
    cursor: str = Field(_PAGE["cursor"], description="JMESPath over the page: the next cursor (empty when done)")
    cursor_param: str = Field(_PAGE["cursor_param"], max_length=64)
    link: str = Field(_PAGE["link"], description="JMESPath over the page: the next page's URL (empty when done)")
    page_size: int = Field(_PAGE["page_size"], ge=1, le=500)


class MappingTemplate(_Strict):
    """JMESPath expressions that read one remote incident, and where the incidents are in a page."""

    incidents: str = Field(DEFAULT_TEMPLATE["incidents"], description="JMESPath over a page: the incident list")
    notification_id: str | None = Field(DEFAULT_TEMPLATE["notification_id"], description="JMESPath over an incident")
    delivery_id: str | None = Field(DEFAULT_TEMPLATE["delivery_id"], description="JMESPath over an incident")
    incident_id: str | None = Field(DEFAULT_TEMPLATE["incident_id"], description="JMESPath over an incident")
    status: str = Field(DEFAULT_TEMPLATE["status"], description="JMESPath over an incident: the provider's status")
    remote_id: str = Field(DEFAULT_TEMPLATE["remote_id"], description="JMESPath: the provider's incident id")
    status_map: dict[str, RemoteStatus] = Field(
        default_factory=dict,
        description="provider status value -> triggered|acknowledged|resolved|closed (added to the built-in map)",
    )
    next_page: NextPage = Field(default_factory=NextPage)

    @model_validator(mode="after")
    def _compiles(self) -> MappingTemplate:
        try:
            compile_mapping(self.model_dump())
        except MappingError as error:
            raise ValueError(str(error)) from error
        return self


class ReconcilePayload(_Strict):
    """The payload of an ``alert_oncall_reconcile`` job."""

    provider: str = Field(pattern=PROVIDER_PATTERN, description="on-call provider name (its secret and history)")
    endpoint: str = Field(
        max_length=2048, description="https:// incident list API, or file:<name>.json in the allowed directory"
    )
    mapping_template: MappingTemplate = Field(default_factory=MappingTemplate)
    limit: int = Field(500, ge=1, le=5000, description="at most this many remote incidents per run")
    dry_run: bool = Field(True, description="report the differences only; switch to false to apply them")
    timeout_seconds: int = Field(10, ge=1, le=30, description="read timeout of each page request")


JOB_TYPES: dict[str, type[BaseModel]] = {RECONCILE_JOB: ReconcilePayload}


class JobCreate(_Strict):
    job_type: str = Field(description="one of: " + ", ".join(JOB_TYPES))
    schedule: str | None = Field(None, description="rate(15 minutes), cron(0/15 * * * ? *) or at(2026-12-31T23:00:00)")
    payload: dict[str, Any]
    description: str = Field("", max_length=500)
    paused: bool = Field(False, description="create the job with its schedule disabled")


class JobUpdate(_Strict):
    schedule: str | None = None
    payload: dict[str, Any] | None = Field(None, description="payload fields to change; the others are kept")
    description: str | None = Field(None, max_length=500)


class JobsQuery(_Strict):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    job_type: str | None = None
    state: Literal["active", "paused"] | None = None


class RunsQuery(_Strict):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None
    status: RunStatus | None = None


class StartRunQuery(_Strict):
    dry_run: bool | None = Field(None, description="override the job's dry_run for this run only")


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LastRun(_View):
    run_id: str
    status: str
    trigger: str | None = None
    dry_run: bool
    started_at: str
    ended_at: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)


class JobView(_View):
    job_id: str
    job_type: str
    description: str = ""
    schedule: str
    state: Literal["active", "paused"]
    payload: dict[str, Any]
    created_at: str
    created_by: str | None = None
    updated_at: str
    updated_by: str | None = None
    version: int
    running_run_id: str | None = None
    last_run: LastRun | None = None


class JobPage(BaseModel):
    items: list[JobView]
    next_cursor: str | None = None


class RunChange(_View):
    notification_id: str
    incident_id: str | None = None
    delivery_id: str | None = None
    remote_id: str | None = None
    raw_status: str
    ack_state_before: str
    ack_state_after: str
    outcome: Literal["would_update", "updated", "already_applied", "failed"]
    callback_id: str | None = None
    error: str | None = None


class RunView(_View):
    run_id: str
    job_id: str
    job_type: str
    trigger: Literal["schedule", "manual"]
    status: RunStatus
    dry_run: bool
    provider: str | None = None
    endpoint: str | None = None
    started_at: str
    ended_at: str | None = None
    duration_ms: int | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    pages: int = 0
    changes: list[RunChange] = Field(default_factory=list)
    changes_total: int = 0
    unmatched_sample: list[dict[str, Any]] = Field(default_factory=list)
    error_details: list[dict[str, Any]] = Field(default_factory=list)
    stopped_early: str | None = None
    message: str | None = None


class RunPage(BaseModel):
    items: list[RunView]
    next_cursor: str | None = None


class RunStarted(BaseModel):
    job_id: str
    run_id: str
    status: Literal["queued"]
    dry_run: bool
    runs_url: str


class JobDeleted(BaseModel):
    job_id: str
    deleted: bool
