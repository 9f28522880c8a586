"""The on-call provider routes of the operator API: list, read and save a provider's settings.

The escalation function calls :func:`register_providers` once with its :class:`ApiRoutes`; the operations run
there. The callback history is in :mod:`connector_sla.callbacks.history_routes`.
"""

from __future__ import annotations

import re

from aws_lambda_powertools import Logger

from connector_sla.alerts.providers import ProviderStore
from connector_sla.callbacks.models import ProviderBody, ProviderList, ProviderView
from connector_sla.callbacks.names import PROVIDER_PATTERN
from connector_sla.config import settings
from connector_sla.errors import NotFound, ValidationFailed
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes

logger = Logger(child=True)

_PROVIDER_NAME = re.compile(PROVIDER_PATTERN)


def register_providers(routes: ApiRoutes) -> None:
    """Declare the on-call provider routes on ``routes``."""
    providers = ProviderStore(Table(settings().settings_table, client("dynamodb")))

    @routes.get("/alerts/oncall/providers", response=ProviderList, summary="On-call providers and their settings")
    def list_oncall_providers() -> ProviderList:
        """Saved providers, and the deployment's default provider even when it was never saved."""
        return ProviderList(items=[ProviderView.of(provider) for provider in providers.list()])

    @routes.get(
        "/alerts/oncall/providers/{provider}",
        response=ProviderView,
        errors=(400, 404),
        summary="One on-call provider's settings",
    )
    def get_oncall_provider(provider: str) -> ProviderView:
        found = providers.get(_provider_name(provider))
        if found is None:
            raise NotFound(
                f"no on-call provider named {provider}; create it with PUT /alerts/oncall/providers/{provider}"
            )
        return ProviderView.of(found)

    @routes.put(
        "/alerts/oncall/providers/{provider}",
        body=ProviderBody,
        response=ProviderView,
        summary="Create or replace an on-call provider (signing scheme, mapping, status map)",
    )
    def put_oncall_provider(provider: str, body: ProviderBody) -> ProviderView:
        """Every mapping expression is compiled and checked before anything is saved."""
        config = body.to_config(_provider_name(provider), actor=routes.actor(), now=utcnow())
        providers.put(config)
        log = logger.warning if config.signing_scheme == "none" else logger.info
        log("oncall provider saved", provider=config.name, signing_scheme=config.signing_scheme, enabled=config.enabled)
        return ProviderView.of(config._replace(stored=True))


def _provider_name(name: str) -> str:
    if not _PROVIDER_NAME.match(name):
        raise ValidationFailed(
            f"provider name {name[:60]!r} is invalid: use 1 to 40 lower-case letters, digits, - or _"
        )
    return name
