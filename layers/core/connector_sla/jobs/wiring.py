"""The job runner on the deployment's tables, secrets and outbound client (what the runner function builds once)."""

from __future__ import annotations

from connector_sla.callbacks.recorder import CallbackRecorder
from connector_sla.config import settings
from connector_sla.jobs.apply import RecorderApplier
from connector_sla.jobs.fetch import IncidentSource
from connector_sla.jobs.runner import JobRunner
from connector_sla.jobs.store import JobStore, NotificationStates
from connector_sla.secrets import ProviderSecrets
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import utcnow


def runner_from_settings() -> JobRunner:
    """A runner whose boto3 clients are created now (at import, for warm reuse)."""
    config = settings()
    dynamodb = client("dynamodb")
    notifications = Table(config.notifications_table, dynamodb)
    recorder = CallbackRecorder(
        notifications=notifications,
        callbacks=Table(config.callbacks_table, dynamodb),
        settings_table=Table(config.settings_table, dynamodb),
    )
    secrets = ProviderSecrets(client("ssm" if config.secrets_store == "ssm" else "secretsmanager"))
    return JobRunner(
        JobStore(Table(config.jobs_table, dynamodb)),
        NotificationStates(notifications),
        IncidentSource(base_dir=config.reconcile_file_base_dir, allowed_local=config.outbound_allowed_local),
        RecorderApplier(recorder),
        lambda provider: secrets.get(provider).api_auth_header,
        base_dir=config.reconcile_file_base_dir,
        allowed_local=config.outbound_allowed_local,
        clock=utcnow,
    )
