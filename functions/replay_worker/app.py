"""Runs a replay job asynchronously (``{"replay_id": "rpl_..."}``); resumable, never publishes a recorded row twice."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.replay.worker import ReplayWorker

logger = Logger()
metrics = Metrics()
worker = ReplayWorker.from_settings()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict[str, Any]:
    replay_id = event.get("replay_id") if isinstance(event, dict) else None
    logger.append_keys(replay_id=replay_id)

    summary = worker.run(replay_id, context, on_job=lambda job: logger.append_keys(connector_id=job["connector_id"]))

    metrics.add_metric(name="ReplayRowsPublished", unit=MetricUnit.Count, value=summary.published)
    metrics.add_metric(name="ReplayRowsRecorded", unit=MetricUnit.Count, value=summary.replayed)
    metrics.add_metric(name="ReplayRowsSkipped", unit=MetricUnit.Count, value=summary.skipped)
    metrics.add_metric(name="ReplayPublishFailures", unit=MetricUnit.Count, value=summary.publish_failures)
    if summary.interrupted_reason:
        metrics.add_metric(name="ReplaysInterrupted", unit=MetricUnit.Count, value=1)
    logger.info("replay invocation finished", **summary.as_dict())
    return summary.as_dict()
