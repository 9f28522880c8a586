"""Dead-letter rows and the Replay Workbench: report, list, read and patch failures; start and follow replays."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_sla.replay.models import (
    FailurePage,
    FailureQuery,
    FailureReport,
    FailureView,
    PatchOutcome,
    PatchRequest,
    ReplayJobView,
    ReplayPlan,
    ReplayRequest,
    ReportOutcome,
)
from connector_sla.replay.service import FailuresService
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes, Response, json_response

logger = Logger()
metrics = Metrics()
routes = ApiRoutes(tag="failures")
service = FailuresService.from_settings()

REPORT_METRICS = {"recorded": "FailuresReported", "duplicate": "FailureReportsRepeated", "failed_again": "FailedAgain"}


@routes.post(
    "/events/connectors/failures",
    body=FailureReport,
    response=ReportOutcome,
    status=201,
    errors=(400, 404, 409, 413),
    summary="Report a failed row, or a replayed row that failed again",
)
def report_failure(body: FailureReport) -> Response:
    logger.append_keys(connector_id=body.connector_id)
    outcome = service.report(body, actor=routes.actor(), now=utcnow())
    metrics.add_metric(name=REPORT_METRICS[outcome.outcome], unit=MetricUnit.Count, value=1)
    return json_response(201 if outcome.outcome == "recorded" else 200, outcome)


@routes.get(
    "/events/connectors/failures",
    query=FailureQuery,
    response=FailurePage,
    errors=(400, 404),
    summary="List dead-letter rows with payload and retry count, filtered and paginated",
)
def list_failures(query: FailureQuery) -> FailurePage:
    return service.list(query, now=utcnow())


@routes.get(
    "/events/connectors/failures/{failure_id}",
    response=FailureView,
    errors=(404,),
    summary="One dead-letter row with its patch log and history",
)
def get_failure(failure_id: str) -> FailureView:
    return service.get(failure_id)


@routes.post(
    "/events/connectors/failures/{failure_id}/patch",
    body=PatchRequest,
    response=PatchOutcome,
    errors=(400, 404, 409, 413),
    summary="Patch a row's payload with RFC 6902 JSON Patch (or preview it)",
)
def patch_failure(failure_id: str, body: PatchRequest) -> PatchOutcome:
    outcome = service.patch(failure_id, body, actor=routes.actor(), now=utcnow())
    metrics.add_metric(name="PatchPreviews" if body.preview else "PayloadsPatched", unit=MetricUnit.Count, value=1)
    return outcome


@routes.post(
    "/events/connectors/replays",
    body=ReplayRequest,
    response=ReplayJobView,
    status=202,
    errors=(400, 404),
    summary="Start a replay of selected rows (202, runs asynchronously), or dry-run it (200, ReplayPlan)",
)
def start_replay(body: ReplayRequest) -> Response:
    logger.append_keys(connector_id=body.connector_id)
    result = service.replay(body, actor=routes.actor(), now=utcnow())
    if isinstance(result, ReplayPlan):
        return json_response(200, result)
    metrics.add_metric(name="ReplaysStarted", unit=MetricUnit.Count, value=1)
    return json_response(202, result)


@routes.get(
    "/events/connectors/replays/{replay_id}", response=ReplayJobView, errors=(404,), summary="Progress of a replay job"
)
def get_replay(replay_id: str) -> ReplayJobView:
    return service.get_replay(replay_id, now=utcnow())


@routes.post(
    "/events/connectors/replays/{replay_id}/resume",
    response=ReplayJobView,
    status=202,
    errors=(404, 409),
    summary="Resume an interrupted replay where it stopped",
)
def resume_replay(replay_id: str) -> Response:
    return json_response(202, service.resume(replay_id, actor=routes.actor(), now=utcnow()))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return routes.resolve(event)
