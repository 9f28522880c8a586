"""Runs one evidence export: streams its bundle to the evidence bucket, verifying every hash chain on the way."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.evidence.export import EXPORT_ID
from connector_sla.evidence.service import EvidenceExporter
from connector_sla.timeutil import utcnow

logger = Logger()
metrics = Metrics()
exporter = EvidenceExporter.from_settings()

EXPECTED_PAYLOAD = '{"export_id": "exp_..."}'
OUTCOME_METRICS = {
    "succeeded": "EvidenceExportsSucceeded",
    "chain_broken": "EvidenceExportsChainBroken",
    "failed": "EvidenceExportsFailed",
}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    export_id = event.get("export_id") if isinstance(event, dict) else None
    if not isinstance(export_id, str) or not EXPORT_ID.fullmatch(export_id):
        logger.error("export payload refused", expected=EXPECTED_PAYLOAD)
        return {"status": "refused", "reason": f"the payload must be {EXPECTED_PAYLOAD}"}

    logger.append_keys(export_id=export_id)
    outcome = exporter.run(export_id, now=utcnow(), time_left=lambda: context.get_remaining_time_in_millis() / 1000)

    if outcome["status"] in OUTCOME_METRICS:
        metrics.add_metric(name=OUTCOME_METRICS[outcome["status"]], unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="EvidenceRecordsExported", unit=MetricUnit.Count, value=outcome["records"])
        metrics.add_metric(name="EvidenceBundleBytes", unit=MetricUnit.Bytes, value=outcome["bytes"])
    return outcome
