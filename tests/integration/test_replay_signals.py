"""The dead-letter store feeds the SLA evaluation through the COUNTERS row: the evaluator never reads the rows.

Real handlers on moto: the connector is registered through the connectors API, failures are reported and
replayed through the failures API and the replay worker, and the evaluator runs a scheduled tick.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from connector_sla.timeutil import to_iso, utcnow
from tests.integration.test_replay_api import CONNECTOR, WorkerContext
from tests.support import Aws, call_api, load_event

CONNECTORS_API = "ConnectorsApiFunction"
FAILURES_API = "FailuresApiFunction"
WORKER = "ReplayWorkerFunction"
EVALUATOR = "SlaEvaluatorFunction"


class Fleet:
    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self.connectors = aws.load_handler(CONNECTORS_API)
        self.failures = aws.load_handler(FAILURES_API)
        self.failures.service.launcher.launch = lambda _replay_id: None
        self.worker = aws.load_handler(WORKER)
        self.evaluator = aws.load_handler(EVALUATOR)
        self.minute = 0

    def register(self) -> None:
        body = {
            "name": "Orders from Postgres",
            "owner_team": "data-platform",
            "sources": [{"source_id": "pg-primary"}],
            "policy": {
                "poll_window_seconds": 60,
                "pending_replay_warning": 3,
                "pending_replay_critical": 5,
                "pending_replay_recovery_max": 0,
            },
            "replay_target": {"kind": "sqs", "arn": self.aws.arn("ReplayQueue")},
        }
        status, answer = call_api(
            self.aws, self.connectors, CONNECTORS_API, "PUT", f"/events/connectors/{CONNECTOR}", body=body
        )
        assert status in (200, 201), answer

    def checkpoint(self, **counts: int) -> None:
        body = {"sources": [{"source_id": "pg-primary", "last_event_at": to_iso(utcnow())}], **counts}
        path = f"/events/connectors/{CONNECTOR}/checkpoints"
        status, answer = call_api(self.aws, self.connectors, CONNECTORS_API, "POST", path, body=body)
        assert status == 202, answer

    def report_failure(self) -> str:
        body = {
            "connector_id": CONNECTOR,
            "source_id": "pg-primary",
            "error_kind": "parse",
            "error_message": "unexpected token",
            "retry_count": 0,
            "payload": {"order_id": "A-1"},
        }
        status, answer = call_api(
            self.aws, self.failures, FAILURES_API, "POST", "/events/connectors/failures", body=body
        )
        assert status == 201, answer
        return str(answer["failure"]["failure_id"])

    def replay(self, failure_ids: list[str]) -> None:
        body = {"connector_id": CONNECTOR, "failure_ids": failure_ids}
        status, job = call_api(self.aws, self.failures, FAILURES_API, "POST", "/events/connectors/replays", body=body)
        assert status == 202, job
        summary = self.worker.lambda_handler({"replay_id": job["replay_id"]}, WorkerContext(self.aws.functions[WORKER]))
        assert summary["status"] == "succeeded", summary

    def tick(self) -> list[str]:
        """One tick in its own poll window; returns the JSON of every DynamoDB request the evaluator made."""
        requests: list[str] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            requests.append(json.dumps(params, default=str))

        dynamodb = self.evaluator.evaluator.store.table.dynamodb
        dynamodb.meta.events.register("before-parameter-build.dynamodb", record)
        try:
            moment = utcnow().replace(second=0, microsecond=0) + timedelta(minutes=self.minute)
            self.minute += 1
            event = {**load_event("sla_evaluator_tick.json"), "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}
            self.evaluator.lambda_handler(event, self.aws.context(EVALUATOR))
        finally:
            dynamodb.meta.events.unregister("before-parameter-build.dynamodb", record)
        return requests

    def pending_replay_signal(self) -> dict[str, Any]:
        query = {"connector_id": CONNECTOR}
        status, body = call_api(
            self.aws, self.connectors, CONNECTORS_API, "GET", "/events/connectors/sla/states", query=query
        )
        assert status == 200, body
        return dict(body["states"][0]["signals"]["pending_replay"])


def test_the_evaluator_reads_the_backlog_from_the_counters_and_never_the_failure_rows(aws):
    # Given a connector holding one row itself, and four rows in the dead-letter store
    fleet = Fleet(aws)
    fleet.register()
    fleet.checkpoint(pending_replay=1, dead_letter_total=1)
    ids = [fleet.report_failure() for _ in range(4)]

    # When the evaluator runs a tick
    requests = fleet.tick()

    # Then the pending replay signal is the connector's count plus the store's: critical
    signal = fleet.pending_replay_signal()
    assert signal["value"] == 5 and signal["status"] == "critical"

    # And no request of the tick touched the failures table (no counting scan, no query of its rows)
    failures_table = aws.name("FailuresTable")
    assert requests and not [request for request in requests if failures_table in request]

    # When three of the rows are replayed, and the evaluator runs again
    fleet.replay(ids[:3])
    requests = fleet.tick()

    # Then the signal follows the counters at once (1 + 1), still without reading a failure row
    signal = fleet.pending_replay_signal()
    assert signal["value"] == 2 and signal["status"] == "ok"
    assert not [request for request in requests if failures_table in request]
