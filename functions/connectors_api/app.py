"""Connector registry, checkpoint reports and the SLA read endpoints."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.config import settings
from connector_sla.sla.models import (
    CheckpointAccepted,
    CheckpointReport,
    ConnectorDetail,
    ConnectorSpec,
    ListQuery,
    OverviewPage,
    SlaStatesPage,
    SourceHealthPage,
    StatesQuery,
)
from connector_sla.sla.registry import ConnectorRegistry
from connector_sla.sla.store import ConnectorStore
from connector_sla.sla.views import SlaViews, state_view
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes, json_response

logger = Logger()
metrics = Metrics()
routes = ApiRoutes(tag="connectors")

_dynamodb = client("dynamodb")
_store = ConnectorStore(Table(settings().connectors_table, _dynamodb))
registry = ConnectorRegistry(_store)
views = SlaViews(_store, Table(settings().transitions_table, _dynamodb))


@routes.put(
    "/events/connectors/{connector_id}",
    body=ConnectorSpec,
    response=ConnectorDetail,
    status=200,
    summary="Register or update a connector and its SLA policy",
    errors=(400, 409),
)
def put_connector(connector_id: str, body: ConnectorSpec) -> Any:
    logger.append_keys(connector_id=connector_id)
    connector, created = registry.save(connector_id, body, utcnow())
    metrics.add_metric(name="ConnectorsRegistered" if created else "ConnectorsUpdated", unit=MetricUnit.Count, value=1)
    return json_response(201 if created else 200, ConnectorDetail(connector=connector, state=None))


@routes.get(
    "/events/connectors/{connector_id}",
    response=ConnectorDetail,
    summary="A connector and its SLA state",
    errors=(400, 404),
)
def get_connector(connector_id: str) -> ConnectorDetail:
    connector, state = registry.get(connector_id)
    return ConnectorDetail(connector=connector, state=state_view(state) if state else None)


@routes.post(
    "/events/connectors/{connector_id}/checkpoints",
    body=CheckpointReport,
    response=CheckpointAccepted,
    status=202,
    summary="Report source progress and backlog counts",
    errors=(400, 404, 409),
)
def report_checkpoint(connector_id: str, body: CheckpointReport) -> CheckpointAccepted:
    logger.append_keys(connector_id=connector_id)
    accepted = registry.report(connector_id, body, utcnow())
    metrics.add_metric(name="CheckpointsReported", unit=MetricUnit.Count, value=1)
    return accepted


@routes.get(
    "/events/connectors/overview",
    query=ListQuery,
    response=OverviewPage,
    summary="Freshness, lag, backlogs, state, level, active source and predicted breach per connector",
)
def connectors_overview(query: ListQuery) -> OverviewPage:
    return views.overview(query, utcnow())


@routes.get(
    "/events/connectors/source-health",
    query=ListQuery,
    response=SourceHealthPage,
    summary="Each connector's sources, their health, the active source and the last failover",
)
def source_health(query: ListQuery) -> SourceHealthPage:
    return views.source_health(query, utcnow())


@routes.get(
    "/events/connectors/sla/states",
    query=StatesQuery,
    response=SlaStatesPage,
    summary="Current SLA states, or the transition history (view=transitions)",
)
def sla_states(query: StatesQuery) -> SlaStatesPage:
    return views.states(query)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return routes.resolve(event)
