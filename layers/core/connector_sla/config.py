"""Settings read from the function's environment (set by ``template.yaml``; the local stack sets the same names)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in _env(name).split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Every name the service reads from its environment, in one place."""

    stage: str = field(default_factory=lambda: _env("STAGE", "dev"))
    connectors_table: str = field(default_factory=lambda: _env("CONNECTORS_TABLE"))
    transitions_table: str = field(default_factory=lambda: _env("TRANSITIONS_TABLE"))
    notifications_table: str = field(default_factory=lambda: _env("NOTIFICATIONS_TABLE"))
    deliveries_table: str = field(default_factory=lambda: _env("DELIVERIES_TABLE"))
    callbacks_table: str = field(default_factory=lambda: _env("CALLBACKS_TABLE"))
    settings_table: str = field(default_factory=lambda: _env("SETTINGS_TABLE"))
    failures_table: str = field(default_factory=lambda: _env("FAILURES_TABLE"))
    jobs_table: str = field(default_factory=lambda: _env("JOBS_TABLE"))
    sla_event_bus: str = field(default_factory=lambda: _env("SLA_EVENT_BUS_NAME"))
    evidence_bucket: str = field(default_factory=lambda: _env("EVIDENCE_BUCKET"))
    runbook_url: str = field(default_factory=lambda: _env("RUNBOOK_URL", "https://runbooks.example.com/connector-sla"))
    secrets_store: str = field(default_factory=lambda: _env("SECRETS_STORE", "secretsmanager"))
    provider_secrets_path: str = field(default_factory=lambda: _env("PROVIDER_SECRETS_PATH"))
    oncall_provider: str = field(default_factory=lambda: _env("ONCALL_PROVIDER", "generic"))
    oncall_webhook_url: str = field(default_factory=lambda: _env("ONCALL_WEBHOOK_URL"))
    risk_owner_email: str = field(default_factory=lambda: _env("RISK_OWNER_EMAIL"))
    platform_owner_email: str = field(default_factory=lambda: _env("PLATFORM_OWNER_EMAIL"))
    duty_manager_email: str = field(default_factory=lambda: _env("DUTY_MANAGER_EMAIL"))
    sender_email: str = field(default_factory=lambda: _env("SENDER_EMAIL"))
    bridge_webhook_url: str = field(default_factory=lambda: _env("BRIDGE_WEBHOOK_URL"))
    replay_target_arns: tuple[str, ...] = field(default_factory=lambda: _env_list("REPLAY_TARGET_ARNS"))
    evaluator_shards: int = field(default_factory=lambda: int(_env("EVALUATOR_SHARDS", "1")))
    shard_function_name: str = field(default_factory=lambda: _env("SHARD_FUNCTION_NAME"))
    replay_worker_function: str = field(default_factory=lambda: _env("REPLAY_WORKER_FUNCTION"))
    export_function: str = field(default_factory=lambda: _env("EXPORT_FUNCTION"))
    job_runner_function_arn: str = field(default_factory=lambda: _env("JOB_RUNNER_FUNCTION_ARN"))
    scheduler_role_arn: str = field(default_factory=lambda: _env("SCHEDULER_ROLE_ARN"))
    schedule_group: str = field(default_factory=lambda: _env("SCHEDULE_GROUP"))
    dashboard_auth_parameter: str = field(default_factory=lambda: _env("DASHBOARD_AUTH_PARAMETER"))
    # Only the local stack sets these two; a deployed stack leaves them empty.
    outbound_allowed_local: tuple[str, ...] = field(default_factory=lambda: _env_list("OUTBOUND_ALLOWED_LOCAL_TARGETS"))
    reconcile_file_base_dir: str = field(default_factory=lambda: _env("RECONCILE_FILE_BASE_DIR"))
    # Object Lock retention (days, compliance mode) of evidence bundles; only the export function has it set.
    evidence_retention_days: int = field(default_factory=lambda: int(_env("EVIDENCE_RETENTION_DAYS", "365")))


@cache
def settings() -> Settings:
    """The settings of this process, read once (Lambda fixes the environment for the life of the sandbox)."""
    return Settings()
