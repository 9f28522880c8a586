"""The job registry behind ``/ops/jobs``: register, read, change, pause, resume and delete jobs, start runs.

Every check runs before anything is written: the job type, the payload (for a reconcile job: its endpoint
against the SSRF and file rules, its mapping template compiled, its provider known) and the schedule. A refused
request creates nothing, neither a row nor a Scheduler schedule. When creating the schedule fails after the row
was written, the row is removed again.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError

from connector_sla.alerts.providers import ProviderStore
from connector_sla.config import settings
from connector_sla.errors import Conflict, DomainError, NotFound, ValidationFailed
from connector_sla.ids import new_id
from connector_sla.jobs.endpoints import EndpointRefused, check_endpoint
from connector_sla.jobs.models import (
    JOB_ID_PATTERN,
    JOB_TYPES,
    RECONCILE_JOB,
    JobCreate,
    JobDeleted,
    JobPage,
    JobsQuery,
    JobUpdate,
    JobView,
    RunPage,
    RunsQuery,
    RunStarted,
    RunView,
    StartRunQuery,
)
from connector_sla.jobs.schedule import ScheduleError, parse_schedule
from connector_sla.jobs.store import JobStore, StaleJob, run_sk
from connector_sla.jobs.triggers import JobSchedules, RunnerInvoker, TriggerFailed
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import epoch_seconds, to_iso
from connector_sla.web.routes import describe_validation_error

logger = Logger(child=True)

RUN_RETENTION_DAYS = 400


class TriggerUnavailable(DomainError):
    status = 503
    code = "trigger_unavailable"


class JobRegistry:
    """Jobs and their triggers; every public method validates first and writes only valid changes."""

    def __init__(
        self,
        store: JobStore,
        schedules: JobSchedules,
        invoker: RunnerInvoker,
        providers: ProviderStore,
        *,
        file_base_dir: str,
        allowed_local: tuple[str, ...],
    ) -> None:
        self.store = store
        self.schedules = schedules
        self.invoker = invoker
        self.providers = providers
        self.file_base_dir = file_base_dir
        self.allowed_local = allowed_local

    @classmethod
    def from_settings(cls) -> JobRegistry:
        config = settings()
        dynamodb = client("dynamodb")
        return cls(
            JobStore(Table(config.jobs_table, dynamodb)),
            JobSchedules(
                client("scheduler"),
                group=config.schedule_group,
                target_arn=config.job_runner_function_arn,
                role_arn=config.scheduler_role_arn,
            ),
            RunnerInvoker(client("lambda"), config.job_runner_function_arn),
            ProviderStore(Table(config.settings_table, dynamodb)),
            file_base_dir=config.reconcile_file_base_dir,
            allowed_local=config.outbound_allowed_local,
        )

    # -------------------------------------------------------------------------------------------- validation

    def validate(
        self, job_type: str, schedule: str | None, payload: dict[str, Any], *, now: datetime
    ) -> dict[str, Any]:
        """The stored form of a job's schedule and payload; raises :class:`ValidationFailed` saying why not."""
        model = JOB_TYPES.get(job_type)
        if model is None:
            raise ValidationFailed(
                f"job_type {job_type!r} is not known; expected one of: {', '.join(JOB_TYPES)}",
                details=[{"field": "body.job_type", "problem": "unknown job type"}],
            )
        expression = _check_schedule(schedule, now=now)
        try:
            parsed: BaseModel = model.model_validate(payload)
        except ValidationError as error:
            message, details = describe_validation_error(error, where="body.payload")
            raise ValidationFailed(message, details=details) from error
        stored = parsed.model_dump(mode="json")
        if job_type == RECONCILE_JOB:
            self._check_reconcile(stored)
        return {"schedule": expression, "payload": stored}

    def _check_reconcile(self, payload: dict[str, Any]) -> None:
        try:
            check_endpoint(payload["endpoint"], base_dir=self.file_base_dir, allowed_local=self.allowed_local)
        except EndpointRefused as error:
            raise ValidationFailed(
                f"payload.endpoint is refused: {error}",
                details=[{"field": "body.payload.endpoint", "problem": str(error)}],
            ) from error
        if self.providers.get(payload["provider"]) is None:
            raise ValidationFailed(
                f"payload.provider {payload['provider']!r} is not configured; save it under /alerts/providers "
                f"first or use the default provider {settings().oncall_provider!r}",
                details=[{"field": "body.payload.provider", "problem": "unknown provider"}],
            )

    # -------------------------------------------------------------------------------------------- jobs

    def create(self, body: JobCreate, *, actor: str, now: datetime) -> JobView:
        """Register a job and its schedule; nothing is left behind when any part is refused."""
        payload = dict(body.payload)
        schedule = body.schedule
        if "schedule" in payload and body.job_type in JOB_TYPES:
            inner = payload.pop("schedule")
            if schedule is not None and inner != schedule:
                raise ValidationFailed("schedule is given twice with different values; give it once, at the top")
            schedule = schedule if schedule is not None else inner
        checked = self.validate(body.job_type, schedule, payload, now=now)
        job_id = new_id("job")
        stamp = to_iso(now)
        job = {
            "pk": job_id,
            "job_id": job_id,
            "job_type": body.job_type,
            "description": body.description,
            "schedule": checked["schedule"],
            "state": "paused" if body.paused else "active",
            "payload": checked["payload"],
            "created_at": stamp,
            "created_by": actor,
            "updated_at": stamp,
            "updated_by": actor,
            "version": 1,
        }
        self.store.create_job(job)
        try:
            self.schedules.create(
                job_id, checked["schedule"], enabled=not body.paused, description=_describe(body.job_type, job_id)
            )
        except TriggerFailed as error:
            self.store.delete_job(job_id)
            logger.warning("job schedule not created", job_id=job_id, reason=str(error))
            raise TriggerUnavailable(f"the job's schedule could not be created ({error}); nothing was saved") from error
        logger.info("job registered", job_id=job_id, job_type=body.job_type, schedule=checked["schedule"])
        return JobView.model_validate(job)

    def get(self, job_id: str) -> JobView:
        return JobView.model_validate(self._job(job_id))

    def list_jobs(self, query: JobsQuery) -> JobPage:
        items, cursor = self.store.list_jobs(
            limit=query.limit, cursor=query.cursor, job_type=query.job_type, state=query.state
        )
        return JobPage(items=[JobView.model_validate(item) for item in items], next_cursor=cursor)

    def update(self, job_id: str, body: JobUpdate, *, actor: str, now: datetime) -> JobView:
        """Change a job's schedule, payload fields or description; the merged job is validated as a whole."""
        if body.schedule is None and body.payload is None and body.description is None:
            raise ValidationFailed("nothing to change: send schedule, payload (fields to change) or description")
        job = self._job(job_id)
        payload = {**job["payload"], **(body.payload or {})}
        schedule = body.schedule if body.schedule is not None else job["schedule"]
        checked = self.validate(job["job_type"], schedule, payload, now=now)
        changes: dict[str, Any] = {"payload": checked["payload"], "updated_at": to_iso(now), "updated_by": actor}
        if body.description is not None:
            changes["description"] = body.description
        schedule_changed = checked["schedule"] != job["schedule"]
        if schedule_changed:
            changes["schedule"] = checked["schedule"]
            self._set_schedule(job, checked["schedule"], enabled=job["state"] == "active")
        try:
            updated = self.store.update_job(job_id, changes, expected_version=int(job["version"]))
        except StaleJob as error:
            if schedule_changed:
                self._set_schedule(job, job["schedule"], enabled=job["state"] == "active")
            raise Conflict("the job changed while it was being updated; read it again and retry") from error
        logger.info("job updated", job_id=job_id, fields=sorted(changes), dry_run=checked["payload"].get("dry_run"))
        return JobView.model_validate(updated)

    def set_paused(self, job_id: str, paused: bool, *, actor: str, now: datetime) -> JobView:
        """Pause (schedule disabled) or resume (enabled) a job; asking for the state it is in changes nothing."""
        job = self._job(job_id)
        wanted = "paused" if paused else "active"
        if job["state"] == wanted:
            return JobView.model_validate(job)
        self._set_schedule(job, job["schedule"], enabled=not paused)
        changes = {"state": wanted, "updated_at": to_iso(now), "updated_by": actor}
        try:
            updated = self.store.update_job(job_id, changes, expected_version=int(job["version"]))
        except StaleJob as error:
            self._set_schedule(job, job["schedule"], enabled=job["state"] == "active")
            raise Conflict("the job changed while it was being paused or resumed; retry") from error
        logger.info("job paused" if paused else "job resumed", job_id=job_id)
        return JobView.model_validate(updated)

    def delete(self, job_id: str) -> JobDeleted:
        """Delete a job and its schedule. Its runs stay (they are evidence) until their retention ends."""
        self._job(job_id)
        try:
            self.schedules.delete(job_id)
        except TriggerFailed as error:
            raise TriggerUnavailable(f"the job's schedule could not be deleted ({error}); the job is kept") from error
        self.store.delete_job(job_id)
        logger.info("job deleted", job_id=job_id)
        return JobDeleted(job_id=job_id, deleted=True)

    # -------------------------------------------------------------------------------------------- runs

    def start_run(self, job_id: str, query: StartRunQuery, *, actor: str, now: datetime) -> RunStarted:
        """Queue a run now (a paused job can still be run by hand) and invoke the runner asynchronously."""
        job = self._job(job_id)
        run_id = new_id("run")
        started_at = to_iso(now)
        dry_run = bool(job["payload"].get("dry_run", True)) if query.dry_run is None else query.dry_run
        run = {
            "pk": job_id,
            "sk": run_sk(started_at, run_id),
            "run_id": run_id,
            "job_id": job_id,
            "job_type": job["job_type"],
            "trigger": "manual",
            "status": "queued",
            "dry_run": dry_run,
            "provider": job["payload"].get("provider"),
            "endpoint": job["payload"].get("endpoint"),
            "requested_by": actor,
            "started_at": started_at,
            "created_at": started_at,
            "expires_at": epoch_seconds(now) + RUN_RETENTION_DAYS * 86400,
        }
        self.store.create_run(run)
        try:
            self.invoker.start({"job_id": job_id, "trigger": "manual", "run_id": run_id})
        except TriggerFailed as error:
            self.store.update_run(
                job_id, run["sk"], {"status": "failed", "ended_at": to_iso(now), "message": f"not started: {error}"}
            )
            raise TriggerUnavailable(f"the job runner could not be invoked ({error}); retry later") from error
        logger.info("job run requested", job_id=job_id, run_id=run_id, dry_run=dry_run)
        return RunStarted(
            job_id=job_id, run_id=run_id, status="queued", dry_run=dry_run, runs_url=f"/ops/jobs/{job_id}/runs"
        )

    def runs(self, job_id: str, query: RunsQuery) -> RunPage:
        self._job(job_id)
        items, cursor = self.store.list_runs(job_id, limit=query.limit, cursor=query.cursor, status=query.status)
        return RunPage(items=[RunView.model_validate(item) for item in items], next_cursor=cursor)

    # -------------------------------------------------------------------------------------------- helpers

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.store.get_job(job_id) if re.fullmatch(JOB_ID_PATTERN, job_id) else None
        if job is None:
            raise NotFound(f"job {job_id[:64]!r} does not exist; list jobs with GET /ops/jobs")
        return job

    def _set_schedule(self, job: dict[str, Any], expression: str, *, enabled: bool) -> None:
        try:
            self.schedules.update(
                job["job_id"], expression, enabled=enabled, description=_describe(job["job_type"], job["job_id"])
            )
        except TriggerFailed as error:
            raise TriggerUnavailable(f"the job's schedule could not be changed ({error}); nothing changed") from error


def _check_schedule(schedule: str | None, *, now: datetime) -> str:
    if not schedule:
        raise ValidationFailed(
            "schedule is missing; expected rate(15 minutes), cron(0/15 * * * ? *) or at(2026-12-31T23:00:00)",
            details=[{"field": "body.schedule", "problem": "missing"}],
        )
    try:
        parsed = parse_schedule(schedule)
    except ScheduleError as error:
        raise ValidationFailed(
            f"schedule is invalid: {error}", details=[{"field": "body.schedule", "problem": str(error)}]
        ) from error
    if parsed.next_after(now) is None:
        raise ValidationFailed(
            f"schedule {parsed.expression!r} never fires after now ({to_iso(now)}); give a future time or a rate",
            details=[{"field": "body.schedule", "problem": "never fires"}],
        )
    return parsed.expression


def _describe(job_type: str, job_id: str) -> str:
    return f"{job_type} job {job_id} (connector-sla)"
