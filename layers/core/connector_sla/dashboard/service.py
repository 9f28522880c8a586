"""The operations dashboard as the ops function serves it: the page, its data, and the published OpenAPI document."""

from __future__ import annotations

import secrets
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from connector_sla.config import settings
from connector_sla.dashboard.data import build_dashboard
from connector_sla.dashboard.page import page_headers, parse_sign_in, render_page
from connector_sla.dashboard.store import DashboardReader, SignInSettings
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table


class OperationsDashboard:
    """Serves the page (with the current sign-in settings) and the data of one refresh."""

    def __init__(self, reader: DashboardReader, sign_in: SignInSettings) -> None:
        self.reader = reader
        self.sign_in = sign_in

    @classmethod
    def from_settings(cls) -> OperationsDashboard:
        config = settings()
        dynamodb = client("dynamodb")
        reader = DashboardReader(
            connectors=Table(config.connectors_table, dynamodb),
            transitions=Table(config.transitions_table, dynamodb),
            notifications=Table(config.notifications_table, dynamodb),
            deliveries=Table(config.deliveries_table, dynamodb),
            callbacks=Table(config.callbacks_table, dynamodb),
            jobs=Table(config.jobs_table, dynamodb),
        )
        return cls(reader, SignInSettings(client("ssm"), config.dashboard_auth_parameter))

    def page(self) -> tuple[str, dict[str, str]]:
        """The page's HTML and headers, bound to a fresh nonce."""
        nonce = secrets.token_urlsafe(18)
        sign_in = parse_sign_in(self.sign_in.read())
        return render_page(sign_in, nonce=nonce), page_headers(sign_in, nonce=nonce)

    def data(self, *, window_hours: int, now: datetime) -> dict[str, Any]:
        """Every panel's data for the last ``window_hours``."""
        inputs = self.reader.inputs(now=now, window_hours=window_hours)
        return build_dashboard(inputs, now=now, window_hours=window_hours)


@cache
def published_openapi() -> str:
    """The committed OpenAPI document of the whole API (``connector_sla/openapi.json``), read once."""
    return resources.files("connector_sla").joinpath("openapi.json").read_text(encoding="utf-8")
