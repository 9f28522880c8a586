"""Settings read from the function's environment (set by ``template.yaml``; the local stack sets the same names)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import NamedTuple


class Settings(NamedTuple):
    """Every name the service reads from its environment, in one place; :data:`ENVIRONMENT` names the variables.

    A NamedTuple rather than a dataclass: every function builds it at its cold start, and a dataclass of this
    many fields costs about 1.4 ms to define there against 0.1 ms for this.
    """

    stage: str = "dev"
    connectors_table: str = ""
    transitions_table: str = ""
    notifications_table: str = ""
    deliveries_table: str = ""
    callbacks_table: str = ""
    settings_table: str = ""
    failures_table: str = ""
    jobs_table: str = ""
    sla_event_bus: str = ""
    evidence_bucket: str = ""
    runbook_url: str = "https://runbooks.example.com/connector-sla"
    secrets_store: str = "secretsmanager"
    provider_secrets_path: str = ""
    oncall_provider: str = "generic"
    oncall_webhook_url: str = ""
    risk_owner_email: str = ""
    platform_owner_email: str = ""
    duty_manager_email: str = ""
    sender_email: str = ""
    bridge_webhook_url: str = ""
    replay_target_arns: tuple[str, ...] = ()
    evaluator_shards: int = 1
    shard_function_name: str = ""
    replay_worker_function: str = ""
    export_function: str = ""
    job_runner_function_arn: str = ""
    scheduler_role_arn: str = ""
    schedule_group: str = ""
    dashboard_auth_parameter: str = ""
    # Only the local stack sets these two; a deployed stack leaves them empty.
    outbound_allowed_local: tuple[str, ...] = ()
    reconcile_file_base_dir: str = ""
    # Object Lock retention (days, compliance mode) of evidence bundles; only the export function has it set.
    evidence_retention_days: int = 365


# The environment variable behind each setting; a setting whose variable is unset keeps its default above.
ENVIRONMENT: Mapping[str, str] = {
    "stage": "STAGE",
    "connectors_table": "CONNECTORS_TABLE",
    "transitions_table": "TRANSITIONS_TABLE",
    "notifications_table": "NOTIFICATIONS_TABLE",
    "deliveries_table": "DELIVERIES_TABLE",
    "callbacks_table": "CALLBACKS_TABLE",
    "settings_table": "SETTINGS_TABLE",
    "failures_table": "FAILURES_TABLE",
    "jobs_table": "JOBS_TABLE",
    "sla_event_bus": "SLA_EVENT_BUS_NAME",
    "evidence_bucket": "EVIDENCE_BUCKET",
    "runbook_url": "RUNBOOK_URL",
    "secrets_store": "SECRETS_STORE",
    "provider_secrets_path": "PROVIDER_SECRETS_PATH",
    "oncall_provider": "ONCALL_PROVIDER",
    "oncall_webhook_url": "ONCALL_WEBHOOK_URL",
    "risk_owner_email": "RISK_OWNER_EMAIL",
    "platform_owner_email": "PLATFORM_OWNER_EMAIL",
    "duty_manager_email": "DUTY_MANAGER_EMAIL",
    "sender_email": "SENDER_EMAIL",
    "bridge_webhook_url": "BRIDGE_WEBHOOK_URL",
    "replay_target_arns": "REPLAY_TARGET_ARNS",
    "evaluator_shards": "EVALUATOR_SHARDS",
    "shard_function_name": "SHARD_FUNCTION_NAME",
    "replay_worker_function": "REPLAY_WORKER_FUNCTION",
    "export_function": "EXPORT_FUNCTION",
    "job_runner_function_arn": "JOB_RUNNER_FUNCTION_ARN",
    "scheduler_role_arn": "SCHEDULER_ROLE_ARN",
    "schedule_group": "SCHEDULE_GROUP",
    "dashboard_auth_parameter": "DASHBOARD_AUTH_PARAMETER",
    "outbound_allowed_local": "OUTBOUND_ALLOWED_LOCAL_TARGETS",
    "reconcile_file_base_dir": "RECONCILE_FILE_BASE_DIR",
    "evidence_retention_days": "EVIDENCE_RETENTION_DAYS",
}


def from_environment(environ: Mapping[str, str]) -> Settings:
    """The settings that ``environ`` sets, each converted to the type of its default."""
    values: dict[str, object] = {}
    for name, variable in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is None:
            continue
        default = Settings._field_defaults[name]
        if isinstance(default, tuple):
            values[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
        elif isinstance(default, int):
            values[name] = int(raw)
        else:
            values[name] = raw
    return Settings(**values)  # type: ignore[arg-type]


@cache
def settings() -> Settings:
    """The settings of this process, read once (Lambda fixes the environment for the life of the sandbox)."""
    return from_environment(os.environ)
