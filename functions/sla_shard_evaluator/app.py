"""Evaluates one parallel-scan segment of the fleet for one tick (invoked by the SLA evaluator's fan-out)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.errors import ValidationFailed
from connector_sla.sla.evaluator import Evaluator, record_pass, tick_from_event
from connector_sla.timeutil import utcnow

logger = Logger()
metrics = Metrics()
evaluator = Evaluator.from_settings()


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    segment, total = event.get("segment"), event.get("total_segments")
    if not isinstance(segment, int) or not isinstance(total, int) or not 0 <= segment < total:
        raise ValidationFailed("expected {tick_id, segment, total_segments} with 0 <= segment < total_segments")
    tick = tick_from_event(event, utcnow())
    logger.append_keys(tick_id=tick.tick_id, segment=segment)
    report = evaluator.run_pass(tick, utcnow, segment=segment, total_segments=total, flush_outbox=False)
    record_pass(report, metrics)
    return report.as_log()
