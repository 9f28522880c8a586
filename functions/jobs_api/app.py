"""Scheduled jobs (alert_oncall_reconcile): register, read, change, pause, resume, delete, and their runs."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.jobs.models import (
    JobCreate,
    JobDeleted,
    JobPage,
    JobsQuery,
    JobUpdate,
    JobView,
    RunPage,
    RunsQuery,
    RunStarted,
    StartRunQuery,
)
from connector_sla.jobs.registry import JobRegistry
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes

logger = Logger()
metrics = Metrics()
routes = ApiRoutes(tag="jobs")
registry = JobRegistry.from_settings()


@routes.post("/ops/jobs", body=JobCreate, response=JobView, status=201, summary="Register a scheduled job")
def create_job(body: JobCreate) -> JobView:
    job = registry.create(body, actor=routes.actor(), now=utcnow())
    metrics.add_metric(name="JobsRegistered", unit=MetricUnit.Count, value=1)
    return job


@routes.get("/ops/jobs", query=JobsQuery, response=JobPage, summary="List jobs, newest first")
def list_jobs(query: JobsQuery) -> JobPage:
    return registry.list_jobs(query)


@routes.get("/ops/jobs/{job_id}", response=JobView, summary="Read a job", errors=(400, 404))
def get_job(job_id: str) -> JobView:
    return registry.get(job_id)


@routes.patch(
    "/ops/jobs/{job_id}", body=JobUpdate, response=JobView, summary="Change a job", errors=(400, 404, 409, 503)
)
def update_job(job_id: str, body: JobUpdate) -> JobView:
    return registry.update(job_id, body, actor=routes.actor(), now=utcnow())


@routes.post("/ops/jobs/{job_id}/pause", response=JobView, summary="Pause a job's schedule", errors=(404, 409, 503))
def pause_job(job_id: str) -> JobView:
    return registry.set_paused(job_id, True, actor=routes.actor(), now=utcnow())


@routes.post("/ops/jobs/{job_id}/resume", response=JobView, summary="Resume a job's schedule", errors=(404, 409, 503))
def resume_job(job_id: str) -> JobView:
    return registry.set_paused(job_id, False, actor=routes.actor(), now=utcnow())


@routes.delete("/ops/jobs/{job_id}", response=JobDeleted, summary="Delete a job and its schedule", errors=(404, 503))
def delete_job(job_id: str) -> JobDeleted:
    return registry.delete(job_id)


@routes.get("/ops/jobs/{job_id}/runs", query=RunsQuery, response=RunPage, summary="A job's runs", errors=(400, 404))
def list_runs(job_id: str, query: RunsQuery) -> RunPage:
    return registry.runs(job_id, query)


@routes.post(
    "/ops/jobs/{job_id}/runs",
    query=StartRunQuery,
    response=RunStarted,
    status=202,
    summary="Start a run now",
    errors=(400, 404, 503),
)
def start_run(job_id: str, query: StartRunQuery) -> RunStarted:
    started = registry.start_run(job_id, query, actor=routes.actor(), now=utcnow())
    metrics.add_metric(name="JobRunsRequested", unit=MetricUnit.Count, value=1)
    return started


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return routes.resolve(event)
