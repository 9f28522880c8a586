"""Escalation timers, on a schedule: ack timeouts, L3 ETA reminders and re-escalation, delivery retries and
maintenance releases. The tick's ``time`` is the moment the timers are judged at (a redelivered tick, the same)."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.escalation.wiring import escalation_timers
from connector_sla.timeutil import parse_iso, utcnow

logger = Logger()
metrics = Metrics()
timers = escalation_timers()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    tick = event.get("time") if isinstance(event.get("time"), str) else None
    try:
        now = parse_iso(tick) if tick else utcnow()
    except ValueError:
        logger.warning("tick time unreadable; using the clock", tick=tick)
        now = utcnow()

    outcomes = timers.run(now, tick=tick, time_left=lambda: context.get_remaining_time_in_millis() / 1000)

    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"timer_{outcome}", unit=MetricUnit.Count, value=count)
    return {"tick": tick, "outcomes": dict(outcomes)}
