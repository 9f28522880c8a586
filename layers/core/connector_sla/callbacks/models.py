"""API models of the callback routes: the provider settings and the callback's documented
shape. pydantic lives here only: the callback function itself never imports this module (the OpenAPI generator
reads its models by name).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector_sla.alerts.providers import DEFAULT_MAPPING, ProviderConfig
from connector_sla.callbacks.mapping import PAGERDUTY_V3_MAPPING, PAGERDUTY_V3_STATUS_MAP, check_mapping
from connector_sla.callbacks.names import PROVIDER_PATTERN, CallbackStatus
from connector_sla.config import settings
from connector_sla.errors import ValidationFailed
from connector_sla.timeutil import to_iso

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

SigningScheme = Literal["hmac_sha256", "standard_webhooks", "pagerduty_v3", "none"]
OutboundProfile = Literal["generic_webhook", "pagerduty_events_v2"]


# ---------------------------------------------------------------------------------------------- providers


class ProviderBody(BaseModel):
    """A provider's settings as saved with PUT; the whole provider is replaced."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    outbound_profile: OutboundProfile = Field("generic_webhook", description="How escalation calls the provider.")
    outbound_url: str = Field(
        "",
        max_length=2048,
        description="HTTPS endpoint of outbound calls; required for generic_webhook, PagerDuty's Events API v2 "
        "endpoint by default for pagerduty_events_v2.",
    )
    signing_scheme: SigningScheme = Field("hmac_sha256", description="How the provider signs its callbacks.")
    tolerance_seconds: int = Field(300, ge=1, le=300, description="Accepted clock difference of signed timestamps.")
    mapping: dict[str, str] | None = Field(
        None,
        description="JMESPath expression per field (notification_id, delivery_id, status, event_id, incident_id, "
        "connector_id, eta, actor). Default: the PagerDuty v3 mapping for signing_scheme pagerduty_v3, else the "
        "generic one.",
    )
    status_map: dict[str, CallbackStatus] | None = Field(
        None, description="Provider status value -> our status. Default: PagerDuty's event types for pagerduty_v3."
    )
    enabled: bool = Field(True, description="A disabled provider's callbacks are refused with 403.")

    @field_validator("outbound_url")
    @classmethod
    def _outbound_url(cls, url: str) -> str:
        if not url:
            return url
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as error:
            raise ValueError("outbound_url has an invalid port") from error
        if not parts.hostname or parts.username or parts.password:
            raise ValueError("outbound_url must be https://host/path without credentials")
        local = f"{parts.hostname}:{port}" in settings().outbound_allowed_local
        if parts.scheme != "https" and not local:
            raise ValueError("outbound_url must use https://")
        return url

    @model_validator(mode="after")
    def _generic_webhook_needs_url(self) -> ProviderBody:
        if self.outbound_profile == "generic_webhook" and not self.outbound_url:
            raise ValueError("outbound_url is required for the generic_webhook profile")
        return self

    def to_config(self, name: str, *, actor: str, now: datetime) -> ProviderConfig:
        """The provider to save, with defaults filled in; a mapping that does not check out is refused (400)."""
        pagerduty = self.signing_scheme == "pagerduty_v3"
        mapping = self.mapping if self.mapping is not None else (PAGERDUTY_V3_MAPPING if pagerduty else DEFAULT_MAPPING)
        status_map: dict[str, str] = dict(
            self.status_map if self.status_map is not None else (PAGERDUTY_V3_STATUS_MAP if pagerduty else {})
        )
        problems = check_mapping(mapping, status_map)
        if problems:
            shown = "; ".join(f"{item['field']}: {item['problem']}" for item in problems[:3])
            raise ValidationFailed(f"provider mapping is invalid: {shown}", details=problems)
        url = self.outbound_url
        if not url and self.outbound_profile == "pagerduty_events_v2":
            url = PAGERDUTY_EVENTS_URL
        return ProviderConfig(
            name=name,
            outbound_profile=self.outbound_profile,
            outbound_url=url,
            signing_scheme=self.signing_scheme,
            tolerance_seconds=self.tolerance_seconds,
            mapping=dict(mapping),
            status_map=status_map,
            enabled=self.enabled,
            updated_at=to_iso(now),
            updated_by=actor,
        )


class ProviderView(BaseModel):
    """A provider as the API shows it; ``saved`` is false for the deployment's default that was never saved."""

    model_config = ConfigDict(defer_build=True)

    name: str
    outbound_profile: str
    outbound_url: str
    signing_scheme: str
    tolerance_seconds: int
    mapping: dict[str, str]
    status_map: dict[str, str]
    enabled: bool
    saved: bool
    updated_at: str | None = None
    updated_by: str | None = None
    callback_path: str = Field(description="Where this provider sends callbacks.")
    secret_name: str = Field(description="Secrets Manager secret (or SSM parameter) holding its signing secrets.")

    @classmethod
    def of(cls, provider: ProviderConfig) -> ProviderView:
        config = settings()
        path = config.provider_secrets_path.strip("/")
        secret = f"/{path}/{provider.name}" if config.secrets_store == "ssm" else f"{path}/{provider.name}"
        return cls(
            name=provider.name,
            outbound_profile=provider.outbound_profile,
            outbound_url=provider.outbound_url,
            signing_scheme=provider.signing_scheme,
            tolerance_seconds=int(provider.tolerance_seconds),
            mapping=dict(provider.mapping),
            status_map=dict(provider.status_map),
            enabled=bool(provider.enabled),
            saved=provider.stored,
            updated_at=provider.updated_at,
            updated_by=provider.updated_by,
            callback_path=f"/alerts/oncall/callback?provider={provider.name}",
            secret_name=secret,
        )


class ProviderList(BaseModel):
    model_config = ConfigDict(defer_build=True)

    items: list[ProviderView]


# ---------------------------------------------------------------------------------------------- the callback


class CallbackQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    provider: str | None = Field(
        None, pattern=PROVIDER_PATTERN, description="The provider's name; the deployment's default when absent."
    )


class CallbackPayload(BaseModel):
    """The callback as the default mapping reads it (top-level fields first, then custom_details)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    notification_id: str | None = None
    delivery_id: str | None = None
    status: CallbackStatus
    event_id: str | None = Field(None, description="The provider's event id; repeats are duplicates.")
    incident_id: str | None = None
    eta: str | None = Field(None, description="Recovery ETA, ISO 8601 with offset.")
    acknowledged_by: str | None = None
    custom_details: dict[str, Any] | None = None


class CallbackAnswer(BaseModel):
    model_config = ConfigDict(defer_build=True)

    result: Literal["recorded", "duplicate"]
    callback_id: str
    duplicate: bool
    matched: bool
    ack_applied: bool
    ack_state: str | None = None
    notification_id: str | None = None
    incident_id: str | None = None
    eta_recorded: bool
    unmatched_reason: str | None = None
