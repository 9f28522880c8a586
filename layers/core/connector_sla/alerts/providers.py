"""On-call provider settings: how the service calls a provider, and how a provider's callbacks are read.

Stored in SettingsTable (``pk = PROVIDER``, ``sk = <name>``). A NamedTuple, no pydantic: the callback function
reads them on its cold path. The API validates a provider (JMESPath compiled, URL checked) before saving it.

A provider that was never saved still exists when it is the deployment's default (``ONCALL_PROVIDER``): generic
signed webhooks to ``ONCALL_WEBHOOK_URL``, callbacks signed with ``X-Callback-Signature``, read with
:data:`DEFAULT_MAPPING`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from connector_sla.config import settings
from connector_sla.storage.dynamo import Expression, Item, Table

PROVIDER_PK = "PROVIDER"

OUTBOUND_PROFILES = ("generic_webhook", "pagerduty_events_v2")
SIGNING_SCHEMES = ("hmac_sha256", "standard_webhooks", "pagerduty_v3", "none")

# JMESPath expressions over the callback body: top-level fields first, then custom_details.
DEFAULT_MAPPING: dict[str, str] = {
    "notification_id": "notification_id || custom_details.notification_id",
    "delivery_id": "delivery_id || custom_details.delivery_id",
    "status": "status",
    "event_id": "event_id || id",
    "incident_id": "incident_id || custom_details.incident_id",
    "connector_id": "connector_id || custom_details.connector_id",
    "eta": "eta || recovery_eta",
    "actor": "acknowledged_by || actor",
}


class ProviderConfig(NamedTuple):
    name: str
    outbound_profile: str = "generic_webhook"
    outbound_url: str = ""
    signing_scheme: str = "hmac_sha256"
    tolerance_seconds: int = 300
    mapping: Mapping[str, str] = MappingProxyType(DEFAULT_MAPPING)
    status_map: Mapping[str, str] = MappingProxyType({})
    enabled: bool = True
    updated_at: str | None = None
    updated_by: str | None = None
    stored: bool = False

    def to_item(self) -> dict[str, Any]:
        item = self._asdict()
        item.pop("stored")
        item.update(mapping=dict(self.mapping), status_map=dict(self.status_map))
        return {"pk": PROVIDER_PK, "sk": self.name, **item}

    @classmethod
    def from_item(cls, item: Item) -> ProviderConfig:
        known = {key: item[key] for key in cls._fields if key in item and key != "stored"}
        return cls(**known, stored=True)


def default_provider(name: str) -> ProviderConfig | None:
    """The deployment's default provider, when ``name`` is it; ``None`` for any other unknown name."""
    config = settings()
    if name != config.oncall_provider:
        return None
    return ProviderConfig(name=name, outbound_profile="generic_webhook", outbound_url=config.oncall_webhook_url)


class ProviderStore:
    """Storage adapter for provider settings."""

    def __init__(self, settings_table: Table) -> None:
        self.table = settings_table

    def get(self, name: str) -> ProviderConfig | None:
        """The saved provider, else the deployment default for that name, else ``None``."""
        item = self.table.get({"pk": PROVIDER_PK, "sk": name})
        return ProviderConfig.from_item(item) if item else default_provider(name)

    def put(self, provider: ProviderConfig) -> None:
        self.table.put(provider.to_item())

    def list(self) -> list[ProviderConfig]:
        expr = Expression()
        condition = f"{expr.name('pk')} = {expr.value(PROVIDER_PK)}"
        saved = [ProviderConfig.from_item(item) for item in self.table.query_all(expr, condition)]
        names = {provider.name for provider in saved}
        default = default_provider(settings().oncall_provider)
        if default is not None and default.name not in names:
            saved.append(default)
        return sorted(saved, key=lambda provider: provider.name)
