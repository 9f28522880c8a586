"""Operations dashboard (the page and its data) and the published OpenAPI document."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.dashboard.models import DashboardData, DashboardQuery
from connector_sla.dashboard.service import OperationsDashboard, published_openapi
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes, Response

logger = Logger()
metrics = Metrics()
routes = ApiRoutes(tag="operations")
dashboard = OperationsDashboard.from_settings()


@routes.get(
    "/ops/dashboard",
    response_content_type="text/html",
    errors=(),
    summary="The operations dashboard (HTML; it signs operators in and refreshes itself)",
)
def dashboard_page() -> Response:
    """Query parameters are not validated here: the sign-in redirect returns to this URL with ?code=&state=."""
    html, headers = dashboard.page()
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=html, headers=headers)


@routes.get(
    "/ops/dashboard/data",
    query=DashboardQuery,
    response=DashboardData,
    summary="Every panel of the dashboard as JSON: connectors, incidents, timelines, job runs, deliveries, exports",
)
def dashboard_data(query: DashboardQuery) -> dict[str, Any]:
    return dashboard.data(window_hours=query.hours, now=utcnow())


@routes.get("/openapi.json", errors=(), summary="This API's OpenAPI 3.1 document")
def openapi_document() -> Response:
    return Response(status_code=200, content_type="application/json", body=published_openapi())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return routes.resolve(event)
