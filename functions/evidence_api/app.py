"""Compliance evidence exports: start one, list them, read one (with its short-lived download URL)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.evidence.models import ExportAccepted, ExportListQuery, ExportPage, ExportRequest, ExportView
from connector_sla.evidence.service import EvidenceExports
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes

logger = Logger()
metrics = Metrics()
routes = ApiRoutes(tag="evidence")
exports = EvidenceExports.from_settings()


@routes.post(
    "/compliance/evidence/export",
    body=ExportRequest,
    response=ExportAccepted,
    status=202,
    errors=(400, 503),
    summary="Start an evidence export of a time range (runs asynchronously)",
)
def start_export(body: ExportRequest) -> dict[str, Any]:
    """Transitions, deliveries, callbacks, notifications and job runs of [start, end) go into one bundle in S3."""
    accepted = exports.start(body.to_query(), actor=routes.actor(), now=utcnow())
    metrics.add_metric(name="EvidenceExportsRequested", unit=MetricUnit.Count, value=1)
    return accepted


@routes.get(
    "/compliance/evidence/export",
    query=ExportListQuery,
    response=ExportPage,
    summary="List evidence exports, newest first",
)
def list_exports(query: ExportListQuery) -> dict[str, Any]:
    return exports.list(limit=query.limit, cursor=query.cursor, now=utcnow())


@routes.get(
    "/compliance/evidence/export/{export_id}",
    response=ExportView,
    errors=(400, 404),
    summary="Read an evidence export: status, chain verification and, once stored, a presigned download URL",
)
def get_export(export_id: str) -> dict[str, Any]:
    return exports.get(export_id, now=utcnow())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return routes.resolve(event)
