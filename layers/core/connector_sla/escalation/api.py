"""The services behind the escalation API: chains, maintenance windows and recovery ETAs.

The read side (notifications, deliveries) is ``alerts.reads``, served by the alerts API, which never imports
this module.
"""

from __future__ import annotations

from typing import NamedTuple

from connector_sla.alerts.providers import ProviderStore
from connector_sla.alerts.store import NotificationStore
from connector_sla.config import settings
from connector_sla.escalation.admin import ChainAdmin, ConnectorDirectory, EtaRecorder, MaintenanceAdmin
from connector_sla.escalation.settings_store import ChainStore, MaintenanceStore
from connector_sla.sla.ledger import StateLedger
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table


class EscalationServices(NamedTuple):
    chains: ChainAdmin
    maintenance: MaintenanceAdmin
    eta: EtaRecorder


def escalation_services() -> EscalationServices:
    """The escalation API's services over this process's tables and shared DynamoDB client."""
    config = settings()
    dynamodb = client("dynamodb")
    notifications = Table(config.notifications_table, dynamodb)
    settings_table = Table(config.settings_table, dynamodb)
    connectors = Table(config.connectors_table, dynamodb)
    directory = ConnectorDirectory(connectors)
    return EscalationServices(
        chains=ChainAdmin(ChainStore(settings_table), ProviderStore(settings_table), directory),
        maintenance=MaintenanceAdmin(MaintenanceStore(settings_table), directory),
        eta=EtaRecorder(
            NotificationStore(notifications, Table(config.deliveries_table, dynamodb)),
            StateLedger(connectors, Table(config.transitions_table, dynamodb)),
        ),
    )
