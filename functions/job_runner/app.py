"""Runs one scheduled job (alert_oncall_reconcile) when its schedule fires or a run is started on demand."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.jobs.runner import RunRequestInvalid, parse_request
from connector_sla.jobs.wiring import runner_from_settings

logger = Logger()
metrics = Metrics()
runner = runner_from_settings()

_COUNT_METRICS = {
    "fetched": "ReconcileFetched",
    "matched": "ReconcileMatched",
    "would_update": "ReconcileWouldUpdate",
    "updated": "ReconcileUpdated",
    "unmatched": "ReconcileUnmatched",
    "errors": "ReconcileErrors",
}
_STATUS_METRICS = {
    "succeeded": "JobRunsSucceeded",
    "partial": "JobRunsPartial",
    "failed": "JobRunsFailed",
    "skipped": "JobRunsSkipped",
}


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_request(event)
    except RunRequestInvalid as error:
        logger.warning("job run request refused", reason=str(error))
        return {"status": "refused", "reason": str(error)}
    logger.append_keys(job_id=request.job_id, trigger=request.trigger)

    summary = runner.run(request, remaining_ms=context.get_remaining_time_in_millis)

    metrics.add_metric(name=_STATUS_METRICS.get(summary["status"], "JobRunsSkipped"), unit=MetricUnit.Count, value=1)
    for key, value in (summary.get("counts") or {}).items():
        if key in _COUNT_METRICS:
            metrics.add_metric(name=_COUNT_METRICS[key], unit=MetricUnit.Count, value=value)
    return summary
