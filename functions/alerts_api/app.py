"""Alerts API: notifications, delivery attempts and the on-call callback history (the runbook's read routes)."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.alerts.models import DeliveryPage, DeliveryQuery, NotificationPage, NotificationQuery
from connector_sla.alerts.reads import AlertReads
from connector_sla.callbacks.history_routes import register_history
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes

logger = Logger()
metrics = Metrics()
routes = ApiRoutes(tag="alerts")
reads = AlertReads.from_settings()
register_history(routes)


@routes.get("/alerts/notifications", query=NotificationQuery, response=NotificationPage, summary="List notifications")
def list_notifications(query: NotificationQuery) -> NotificationPage:
    return reads.list_notifications(query, now=utcnow())


@routes.get("/alerts/deliveries", query=DeliveryQuery, response=DeliveryPage, summary="List delivery attempts")
def list_deliveries(query: DeliveryQuery) -> DeliveryPage:
    return reads.list_deliveries(query, now=utcnow())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return routes.resolve(event)
