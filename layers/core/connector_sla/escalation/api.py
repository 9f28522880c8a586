"""The services behind the alerts API routes of escalation (reads, chains, maintenance windows, ETAs)."""

from __future__ import annotations

from dataclasses import dataclass

from connector_sla.alerts.providers import ProviderStore
from connector_sla.alerts.reads import AlertReads
from connector_sla.alerts.store import NotificationStore
from connector_sla.config import settings
from connector_sla.escalation.admin import ChainAdmin, ConnectorDirectory, EtaRecorder, MaintenanceAdmin
from connector_sla.escalation.settings_store import ChainStore, MaintenanceStore
from connector_sla.sla.ledger import StateLedger
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table


@dataclass(frozen=True)
class AlertsServices:
    reads: AlertReads
    chains: ChainAdmin
    maintenance: MaintenanceAdmin
    eta: EtaRecorder


def alerts_services() -> AlertsServices:
    """The alerts API's services over this process's tables and shared DynamoDB client."""
    config = settings()
    dynamodb = client("dynamodb")
    notifications = Table(config.notifications_table, dynamodb)
    deliveries = Table(config.deliveries_table, dynamodb)
    settings_table = Table(config.settings_table, dynamodb)
    connectors = Table(config.connectors_table, dynamodb)
    directory = ConnectorDirectory(connectors)
    return AlertsServices(
        reads=AlertReads(notifications, deliveries),
        chains=ChainAdmin(ChainStore(settings_table), ProviderStore(settings_table), directory),
        maintenance=MaintenanceAdmin(MaintenanceStore(settings_table), directory),
        eta=EtaRecorder(
            NotificationStore(notifications, deliveries),
            StateLedger(connectors, Table(config.transitions_table, dynamodb)),
        ),
    )
