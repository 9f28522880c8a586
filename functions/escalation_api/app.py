"""Escalation API: on-call providers, escalation chains, maintenance windows and L3 recovery ETAs."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.callbacks.provider_routes import register_providers
from connector_sla.escalation.api import escalation_services
from connector_sla.escalation.models import ChainBody, ChainView, EtaBody, EtaRecorded
from connector_sla.escalation.models import MaintenancePage as WindowPage
from connector_sla.escalation.models import MaintenanceQuery as WindowQuery
from connector_sla.escalation.models import MaintenanceWindowBody as WindowBody
from connector_sla.escalation.models import MaintenanceWindowView as WindowView
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes, Response

logger = Logger()
metrics = Metrics()
routes = ApiRoutes(tag="alerts")
services = escalation_services()
register_providers(routes)
CHAIN = "/alerts/chains/{scope}/{scope_id}"


@routes.get(CHAIN, response=ChainView, errors=(400, 404), summary="Read the chain of a scope")
def get_chain(scope: str, scope_id: str) -> ChainView:
    return services.chains.view(scope, scope_id)


@routes.put(CHAIN, body=ChainBody, response=ChainView, errors=(400, 404), summary="Save the chain of a scope")
def put_chain(scope: str, scope_id: str, body: ChainBody) -> ChainView:
    return services.chains.save(scope, scope_id, body, actor=routes.actor(), now=utcnow())


@routes.delete(CHAIN, status=204, errors=(400, 404), summary="Remove the chain of a scope")
def delete_chain(scope: str, scope_id: str) -> Response:
    services.chains.remove(scope, scope_id, actor=routes.actor())
    return Response(status_code=204)


@routes.get("/alerts/maintenance-windows", query=WindowQuery, response=WindowPage, summary="List maintenance windows")
def list_maintenance_windows(query: WindowQuery) -> WindowPage:
    return services.maintenance.list_windows(query, now=utcnow())


@routes.post("/alerts/maintenance-windows", body=WindowBody, response=WindowView, status=201, summary="Open a window")
def create_maintenance_window(body: WindowBody) -> WindowView:
    return services.maintenance.create(body, actor=routes.actor(), now=utcnow())


@routes.delete("/alerts/maintenance-windows/{window_id}", response=WindowView, errors=(404, 409), summary="End now")
def cancel_maintenance_window(window_id: str) -> WindowView:
    return services.maintenance.cancel(window_id, actor=routes.actor(), now=utcnow())


@routes.post(
    "/alerts/incidents/{incident_id}/eta",
    body=EtaBody,
    response=EtaRecorded,
    errors=(400, 404, 409),
    summary="Record a recovery ETA",
)
def record_eta(incident_id: str, body: EtaBody) -> EtaRecorded:
    return services.eta.record(incident_id, body, actor=routes.actor(), now=utcnow())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return routes.resolve(event)
