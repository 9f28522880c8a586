"""What the connector registry and the SLA read endpoints accept and return."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONNECTOR_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
# Path segments of sibling routes under /events/connectors; a connector with one of these ids could not be read.
RESERVED_IDS = frozenset({"overview", "source-health", "sla", "failures", "replays", "checkpoints"})
MAX_CLOCK_SKEW_SECONDS = 120

Severity = Literal["ok", "warning", "critical"]
Level = Literal["none", "L1", "L2", "L3"]
SourceStatus = Literal["up", "down"]


def check_connector_id(value: str) -> str:
    """A connector id as the registry accepts it; raises ``ValueError`` saying what is expected."""
    if not CONNECTOR_ID.fullmatch(value):
        raise ValueError(
            f"connector_id {value!r} must be 2-63 characters of lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if value in RESERVED_IDS:
        raise ValueError(f"connector_id {value!r} is reserved (it names a route under /events/connectors)")
    return value


class _Strict(BaseModel):
    # Schemas are built on first use: a cold start builds only the models its first request needs.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


class _View(BaseModel):
    model_config = ConfigDict(defer_build=True)


class SlaPolicy(_Strict):
    """Thresholds and counts of one connector's SLA; every field has a default."""

    freshness_warning_seconds: int = Field(300, ge=1, description="Lag of the active source that is at risk.")
    freshness_critical_seconds: int = Field(900, ge=1, description="Lag of the active source that breaches the SLA.")
    pending_replay_warning: int = Field(1000, ge=0, description="Pending replay rows that are at risk.")
    pending_replay_critical: int = Field(5000, ge=0, description="Pending replay rows that breach the SLA.")
    pending_replay_recovery_max: int = Field(
        100, ge=0, description="Policy range: the backlog must drain to at most this for recovery."
    )
    dead_letter_growth_warning: int = Field(10, ge=1, description="New dead-letter rows per poll window, at risk.")
    dead_letter_growth_critical: int = Field(100, ge=1, description="New dead-letter rows per poll window, breach.")
    poll_window_seconds: int = Field(60, ge=1, le=86_400, description="Length of one poll window.")
    recovery_clean_windows: int = Field(2, ge=1, le=100, description="Consecutive clean windows needed to recover.")
    critical_repeat_polls: int = Field(2, ge=1, le=100, description="Consecutive critical polls that escalate to L2.")
    escalate_after_l2_polls: int = Field(5, ge=1, le=1000, description="Polls at L2 before the L3 escalated stage.")
    failback_healthy_windows: int = Field(2, ge=1, le=100, description="Healthy windows before failing back.")

    @model_validator(mode="after")
    def _thresholds_are_ordered(self) -> SlaPolicy:
        pairs = (
            ("freshness_warning_seconds", "freshness_critical_seconds"),
            ("pending_replay_warning", "pending_replay_critical"),
            ("dead_letter_growth_warning", "dead_letter_growth_critical"),
        )
        for warning, critical in pairs:
            if getattr(self, warning) > getattr(self, critical):
                raise ValueError(
                    f"{warning} ({getattr(self, warning)}) is above {critical} ({getattr(self, critical)}): "
                    "the warning threshold must not exceed the critical one"
                )
        if self.pending_replay_recovery_max > self.pending_replay_warning:
            raise ValueError(
                f"pending_replay_recovery_max ({self.pending_replay_recovery_max}) is above pending_replay_warning "
                f"({self.pending_replay_warning}): the recovery range must lie below the warning threshold"
            )
        return self


class SourceSpec(_Strict):
    source_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    name: str = Field("", max_length=200)


class ReplayTarget(_Strict):
    kind: Literal["eventbridge", "sqs"]
    arn: str = Field(min_length=20, max_length=512)


class ConnectorSpec(_Strict):
    """Body of ``PUT /events/connectors/{connector_id}``: the connector and its SLA policy."""

    name: str = Field(min_length=1, max_length=200)
    owner_team: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sources: list[SourceSpec] = Field(
        min_length=1, max_length=20, description="In priority order: the primary first, then its backups."
    )
    policy: SlaPolicy = Field(default_factory=SlaPolicy)
    replay_target: ReplayTarget | None = None
    payload_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema a patched dead-letter payload must satisfy before it can be replayed."
    )

    @model_validator(mode="after")
    def _sources_are_unique(self) -> ConnectorSpec:
        ids = [source.source_id for source in self.sources]
        duplicates = sorted({source for source in ids if ids.count(source) > 1})
        if duplicates:
            raise ValueError(f"source_id must be unique within a connector; repeated: {', '.join(duplicates)}")
        return self


class Connector(ConnectorSpec):
    connector_id: str
    created_at: str
    updated_at: str
    config_version: int


class SourceCheckpoint(_Strict):
    source_id: str = Field(min_length=1, max_length=64)
    last_event_at: datetime = Field(description="Time of the last event received from this source (ISO 8601, UTC).")
    checkpoint: str | None = Field(None, max_length=1024, description="Checkpoint position (offset, LSN, cursor).")
    status: SourceStatus = Field("up", description="Report `down` when the source is in outage.")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps need a UTC offset, e.g. 2026-12-03T19:22:00Z")
    return value


class CheckpointReport(_Strict):
    """Body of ``POST /events/connectors/{connector_id}/checkpoints``."""

    sources: list[SourceCheckpoint] = Field(default_factory=list, max_length=20)
    pending_replay: int | None = Field(None, ge=0, description="Rows the connector itself holds for replay.")
    dead_letter_total: int | None = Field(None, ge=0, description="Rows the connector itself dead-lettered so far.")

    @model_validator(mode="after")
    def _not_empty(self) -> CheckpointReport:
        if not self.sources and self.pending_replay is None and self.dead_letter_total is None:
            raise ValueError("report at least one of sources, pending_replay or dead_letter_total")
        for source in self.sources:
            _aware(source.last_event_at)
        ids = [source.source_id for source in self.sources]
        if len(ids) != len(set(ids)):
            raise ValueError("each source_id may appear once per report")
        return self


class CheckpointAccepted(_View):
    connector_id: str
    received_at: str
    sources: list[str]


# ------------------------------------------------------------------------------------------------ read models


class SignalView(_View):
    status: Severity
    value: int
    warning: int
    critical: int


class PredictedBreach(_View):
    signal: str
    at: str
    seconds: int


class ConnectorOverview(_View):
    connector_id: str
    name: str
    owner_team: str
    active_source: str
    checkpoint: str | None
    last_event_at: str | None
    freshness_lag_seconds: int
    pending_replay: int
    pending_replay_growth: int
    dead_letter_total: int
    dead_letter_growth: int
    severity: Severity
    level: Level
    incident_id: str | None
    incident_opened_at: str | None
    unmet_recovery: list[str]
    recovery_eta: str | None
    signals: dict[str, SignalView]
    predicted_breach: PredictedBreach | None
    evaluated_at: str | None


class OverviewPage(_View):
    items: list[ConnectorOverview]
    next_cursor: str | None
    generated_at: str


class ListQuery(_Strict):
    owner_team: str | None = None
    severity: Severity | None = None
    level: Level | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = None


class SourceHealth(_View):
    source_id: str
    name: str
    priority: int
    health: Literal["healthy", "lagging", "stale", "down", "unknown"]
    reported_status: SourceStatus | None
    last_event_at: str | None
    lag_seconds: int | None
    checkpoint: str | None
    active: bool


class ConnectorSourceHealth(_View):
    connector_id: str
    name: str
    active_source: str
    primary_source: str
    sources: list[SourceHealth]
    last_failover: dict[str, Any] | None
    primary_healthy_windows: int


class SourceHealthPage(_View):
    items: list[ConnectorSourceHealth]
    next_cursor: str | None


class SlaStateView(_View):
    connector_id: str
    connector_name: str | None
    owner_team: str | None
    severity: Severity
    level: Level
    incident_id: str | None
    incident_status: str | None
    incident_opened_at: str | None
    unmet_recovery: list[str]
    active_source: str | None
    recovery_eta: str | None
    signals: dict[str, SignalView]
    last_transition: dict[str, Any] | None
    version: int


class TransitionView(_View):
    transition_id: str
    connector_id: str
    seq: int
    kind: str
    at: str
    incident_id: str | None = None
    from_level: str | None = None
    to_level: str | None = None
    from_severity: str | None = None
    to_severity: str | None = None
    reason: str | None = None
    signals: dict[str, Any] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    record_hash: str
    prev_hash: str


class StatesQuery(_Strict):
    view: Literal["current", "transitions"] = Field(
        "current", description="`current` lists states; `transitions` lists the transition history."
    )
    connector_id: str | None = None
    incident_id: str | None = None
    owner_team: str | None = None
    severity: Severity | None = None
    level: Level | None = None
    kind: str | None = Field(None, description="Transition kind filter (view=transitions).")
    since: datetime | None = Field(None, description="Transitions at or after this time (view=transitions).")
    until: datetime | None = Field(None, description="Transitions before this time (view=transitions).")
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> StatesQuery:
        for moment in (self.since, self.until):
            if moment is not None:
                _aware(moment)
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        if self.view == "current" and (self.kind or self.since or self.until or self.incident_id):
            raise ValueError("kind, since, until and incident_id filter the transition history: add view=transitions")
        if self.view == "transitions" and (self.owner_team or self.severity or self.level):
            raise ValueError("owner_team, severity and level filter current states: use view=current")
        return self


class SlaStatesPage(_View):
    view: str
    states: list[SlaStateView] = Field(default_factory=list)
    transitions: list[TransitionView] = Field(default_factory=list)
    next_cursor: str | None = None


class ConnectorDetail(_View):
    connector: Connector
    state: SlaStateView | None
