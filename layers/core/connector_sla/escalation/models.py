"""API models of the escalation settings and actions: chains, maintenance windows, recovery ETAs.

Schemas are built on first use (``defer_build``): an invocation pays only for the models of its own route.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from connector_sla.escalation.chains import Chain, ChainLevel, ChainTarget

_INCIDENT = r"^inc_[0-9A-Za-z]{10,40}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class _View(BaseModel):
    model_config = ConfigDict(defer_build=True)


class ChainTargetBody(_Strict):
    channel: Literal["oncall", "email", "bridge"] = Field(description="How the target is reached.")
    target: str = Field(min_length=1, max_length=500, description="Provider name, email address or bridge URL.")
    name: str = Field("", max_length=100, description="Who this is, e.g. 'risk owner' (shown to recipients).")


class ChainLevelBody(_Strict):
    level: Literal["L1", "L2", "L3"]
    targets: list[ChainTargetBody] = Field(description="Everyone notified when the incident reaches this level.")
    ack_timeout_seconds: int = Field(description="Unacknowledged this long, the incident escalates (L3: re-escalates).")
    eta_required_within_seconds: int | None = Field(
        None, description="L3 only: a recovery ETA is required this soon, else a reminder goes out."
    )
    duty: str = Field("", max_length=300, description="What this level is expected to do.")

    def to_level(self) -> ChainLevel:
        return ChainLevel(
            level=self.level,
            targets=tuple(ChainTarget(t.channel, t.target.strip(), t.name.strip()) for t in self.targets),
            ack_timeout_seconds=self.ack_timeout_seconds,
            eta_required_within_seconds=self.eta_required_within_seconds,
            duty=self.duty.strip(),
        )

    @classmethod
    def of(cls, level: ChainLevel) -> ChainLevelBody:
        return cls(
            level=level.level,
            targets=[ChainTargetBody(channel=t.channel, target=t.target, name=t.name) for t in level.targets],
            ack_timeout_seconds=level.ack_timeout_seconds,
            eta_required_within_seconds=level.eta_required_within_seconds,
            duty=level.duty,
        )


class ChainBody(_Strict):
    levels: list[ChainLevelBody] = Field(description="L1, L2 and L3, in this order.")


class ChainView(_View):
    scope: str
    scope_id: str
    configured: bool = Field(description="Whether a chain is saved at exactly this scope.")
    effective_scope: str = Field(description="Where the chain that applies comes from: connector, team or default.")
    source: Literal["stored", "environment"] = Field(description="A saved chain, or the deployment's default.")
    levels: list[ChainLevelBody]
    updated_at: str | None = None
    updated_by: str | None = None

    @classmethod
    def of(cls, scope: str, scope_id: str, *, configured: bool, chain: Chain) -> ChainView:
        return cls(
            scope=scope,
            scope_id=scope_id,
            configured=configured,
            effective_scope=chain.scope,
            source=chain.source,
            levels=[ChainLevelBody.of(level) for level in chain.levels],
            updated_at=chain.updated_at,
            updated_by=chain.updated_by,
        )


class MaintenanceWindowBody(_Strict):
    scope: Literal["connector", "team"]
    scope_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Connector id or owner team.")
    starts_at: AwareDatetime | None = Field(None, description="Default: now.")
    ends_at: AwareDatetime
    reason: str = Field(min_length=3, max_length=500, description="Why notifications are held (kept as evidence).")


class MaintenanceQuery(_Strict):
    include_ended: bool = Field(False, description="Also list windows that ended in the last 30 days.")
    connector_id: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$")
    team: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")


class MaintenanceWindowView(_View):
    window_id: str
    scope: str
    scope_id: str
    starts_at: str
    ends_at: str
    reason: str
    created_at: str
    created_by: str
    cancelled_at: str | None = None
    cancelled_by: str | None = None
    status: Literal["scheduled", "active", "ended", "cancelled"]


class MaintenancePage(_View):
    items: list[MaintenanceWindowView]
    next_cursor: str | None = None


class EtaBody(_Strict):
    eta: AwareDatetime = Field(description="When the connector is expected to have recovered (with a UTC offset).")
    note: str | None = Field(None, max_length=500, description="What the ETA rests on.")


class EtaRecorded(_View):
    incident_id: str = Field(pattern=_INCIDENT)
    connector_id: str
    level: str
    recovery_eta: str
    eta_recorded_at: str
    eta_recorded_by: str
    transition_id: str
