"""POST /alerts/oncall/callback: the public webhook on-call providers call when a responder acts on an incident.

No resolver and no pydantic on this path (cold start); the route is declared for the OpenAPI document with model
references the document generator imports by name.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.callbacks.webhook import CallbackUnavailable, CallbackWebhook, answer
from connector_sla.errors import DomainError
from connector_sla.timeutil import utcnow
from connector_sla.web.spec import RouteSpec

logger = Logger()
metrics = Metrics()
webhook = CallbackWebhook.from_settings(metrics)

openapi_routes = [
    RouteSpec(
        method="POST",
        path="/alerts/oncall/callback",
        operation_id="receive_oncall_callback",
        summary="Receive an on-call provider's callback (acknowledged, resolved, closed...)",
        tag="oncall",
        auth="none",
        query="connector_sla.callbacks.models:CallbackQuery",
        body="connector_sla.callbacks.models:CallbackPayload",
        response="connector_sla.callbacks.models:CallbackAnswer",
        errors=(400, 401, 403, 404, 413, 503),
        description=(
            "Signed per provider (hmac_sha256: X-Callback-Timestamp and X-Callback-Signature: sha256=<hex HMAC of "
            '"<timestamp>.<raw body>">; standard_webhooks; pagerduty_v3). The body shown is the default mapping; '
            "a provider's mapping may read its native payload instead. A repeated callback answers 200 with "
            "duplicate=true and changes nothing."
        ),
    )
]


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = webhook.request_of(event)
        outcome = webhook.receive(request, now=utcnow())
    except DomainError as refused:
        logger.info("callback refused", status=refused.status, error_code=refused.code, reason=refused.message)
        retry = {"Retry-After": "5"} if isinstance(refused, CallbackUnavailable) else {}
        return _response(refused.status, refused.to_body(), retry)
    except Exception:
        logger.exception("callback failed")
        return _response(500, {"error": "internal_error", "message": "the callback failed; retry later"})
    return _response(200, answer(outcome))


def _response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
    }
