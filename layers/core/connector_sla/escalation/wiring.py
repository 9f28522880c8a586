"""Building the escalation services from this process's settings, with the shared boto3 clients (warm reuse)."""

from __future__ import annotations

from connector_sla.alerts.providers import ProviderStore
from connector_sla.alerts.store import NotificationStore
from connector_sla.config import settings
from connector_sla.escalation.channels import ChannelSenders
from connector_sla.escalation.consumer import StateStreamConsumer
from connector_sla.escalation.dispatch import Dispatcher
from connector_sla.escalation.settings_store import ChainStore, MaintenanceStore
from connector_sla.escalation.timers import EscalationTimers
from connector_sla.secrets import ProviderSecrets
from connector_sla.sla.ledger import StateLedger
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table


def table(name: str) -> Table:
    return Table(name, client("dynamodb"))


def notification_store() -> NotificationStore:
    config = settings()
    return NotificationStore(table(config.notifications_table), table(config.deliveries_table))


def state_ledger() -> StateLedger:
    config = settings()
    return StateLedger(table(config.connectors_table), table(config.transitions_table))


def dispatcher(store: NotificationStore) -> Dispatcher:
    """A dispatcher whose channels send through SES, the provider settings and the provider secrets."""
    config = settings()
    secrets_client = client("ssm" if config.secrets_store == "ssm" else "secretsmanager")
    senders = ChannelSenders(
        ses=client("ses"),
        providers=ProviderStore(table(config.settings_table)),
        secrets=ProviderSecrets(secrets_client),
        sender_email=config.sender_email,
        runbook_url=config.runbook_url,
        bridge_signing_provider=config.oncall_provider,
    )
    return Dispatcher(store, senders)


def stream_consumer() -> StateStreamConsumer:
    """The escalation function's consumer of the state stream."""
    store = notification_store()
    settings_table = table(settings().settings_table)
    return StateStreamConsumer(
        store=store,
        dispatcher=dispatcher(store),
        chains=ChainStore(settings_table),
        windows=MaintenanceStore(settings_table),
    )


def escalation_timers() -> EscalationTimers:
    """The escalation timer function's timers."""
    store = notification_store()
    return EscalationTimers(
        store=store,
        dispatcher=dispatcher(store),
        ledger=state_ledger(),
        windows=MaintenanceStore(table(settings().settings_table)),
    )
