"""Scheduled SLA evaluation: one pass over the fleet per tick, or a fan-out to the shard evaluator."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.config import settings
from connector_sla.sla.evaluator import Evaluator, ShardDispatcher, record_pass, tick_from_event
from connector_sla.storage.aws import client
from connector_sla.timeutil import utcnow

logger = Logger()
metrics = Metrics()
evaluator = Evaluator.from_settings()
dispatcher = ShardDispatcher(client("lambda"), settings().shard_function_name)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    tick = tick_from_event(event, utcnow())
    logger.append_keys(tick_id=tick.tick_id)
    shards = settings().evaluator_shards
    if shards > 1:
        published = evaluator.flush_outbox()
        dispatcher.dispatch(tick, shards)
        logger.info("evaluation fanned out", shards=shards, events_published=published)
        return {"tick_id": tick.tick_id, "shards": shards}
    report = evaluator.run_pass(tick, utcnow)
    record_pass(report, metrics)
    return report.as_log()
