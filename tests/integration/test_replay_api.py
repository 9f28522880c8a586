"""The failure routes through the real handler on moto: report, list, read, patch, dry-run and start replays.

The ``bench`` fixture (also used by ``test_replay_worker``) registers a connector by writing its CONFIG row
directly, loads both functions, hands the API a launcher that records the jobs it starts, and gives the worker
a clock and a sleep it controls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from connector_sla.replay.worker import WorkerSettings
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import to_iso, utcnow
from devstack.functions import LambdaContext
from devstack.gateway import LOCAL_OPERATOR_ARN
from tests.support import Aws, call_api, load_event

API = "FailuresApiFunction"
WORKER = "ReplayWorkerFunction"
CONNECTOR = "orders-postgres"
OMIT = object()


class RecordingLauncher:
    """Stands in for the Lambda Invoke API: records which replay jobs were started."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, replay_id: str) -> None:
        self.launched.append(replay_id)


class WorkerContext(LambdaContext):
    """Lambda's context with a scripted remaining time (one value per call, then plenty)."""

    def __init__(self, spec: Any, remaining: list[int] | None = None) -> None:
        super().__init__(spec, deadline=0)
        self.remaining = list(remaining or [])

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining.pop(0) if self.remaining else 900_000


@dataclass
class Clock:
    moment: datetime = field(default_factory=utcnow)
    on_sleep: list[Any] = field(default_factory=list)
    slept: float = 0.0

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.moment += timedelta(seconds=seconds)
        for action in list(self.on_sleep):
            action()


@dataclass
class Bench:
    aws: Aws
    api: Any
    worker: Any
    launcher: RecordingLauncher
    clock: Clock
    worker_launcher: RecordingLauncher

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        return call_api(self.aws, self.api, API, method, path, **kwargs)

    def put_connector(self, connector_id: str = CONNECTOR, *, target: str | None = "sqs", schema: Any = None) -> None:
        item: dict[str, Any] = {
            "pk": connector_id,
            "sk": "CONFIG",
            "name": "Orders from Postgres",
            "owner_team": "data-platform",
            "sources": [{"source_id": "pg-primary", "name": "primary"}, {"source_id": "pg-replica", "name": "replica"}],
        }
        if target == "sqs":
            item["replay_target"] = {"kind": "sqs", "arn": self.aws.arn("ReplayQueue")}
        elif target == "eventbridge":
            item["replay_target"] = {"kind": "eventbridge", "arn": self.aws.arn("ReplayBus")}
        elif target is not None:
            item["replay_target"] = json.loads(target)
        if schema is not None:
            item["payload_schema"] = schema
        self.table("ConnectorsTable").put(item)

    def table(self, logical_id: str) -> Table:
        return Table(self.aws.name(logical_id), self.aws.client("dynamodb"))

    def report(self, connector_id: str = CONNECTOR, **overrides: Any) -> dict[str, Any]:
        body = {
            "connector_id": connector_id,
            "source_id": "pg-primary",
            "error_kind": "parse",
            "error_message": "unexpected token at offset 17",
            "retry_count": 0,
            "payload": {"order_id": "A-1", "amount": "12,50"},
            **overrides,
        }
        status, response = self.call("POST", "/events/connectors/failures", body=body)
        assert status in (200, 201), response
        return response["failure"]

    def replay(self, **body: Any) -> tuple[int, Any]:
        return self.call("POST", "/events/connectors/replays", body={"connector_id": CONNECTOR, **body})

    def row(self, failure_id: str) -> dict[str, Any]:
        item = self.table("FailuresTable").get({"failure_id": failure_id}, consistent=True)
        assert item is not None
        return item

    def counters(self, connector_id: str = CONNECTOR) -> dict[str, int]:
        item = self.table("ConnectorsTable").get({"pk": connector_id, "sk": "COUNTERS"}) or {}
        return {name: int(item.get(name) or 0) for name in ("dead_letter_total", "pending_replay", "replayed_total")}

    def run_worker(self, replay_id: str, remaining: list[int] | None = None) -> dict[str, Any]:
        context = WorkerContext(self.aws.functions[WORKER], remaining)
        return self.worker.lambda_handler({"replay_id": replay_id}, context)

    def job(self, replay_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/events/connectors/replays/{replay_id}")
        assert status == 200, body
        return body

    def drain_queue(self, logical_id: str = "ReplayQueue") -> list[dict[str, Any]]:
        sqs = self.aws.client("sqs")
        url = self.aws.name(logical_id)
        received = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)
            messages = batch.get("Messages", [])
            if not messages:
                return received
            received += [json.loads(message["Body"]) for message in messages]
            # Consumed, as a consumer does (a FIFO queue holds back a group's next messages until then)
            entries = [{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)


@pytest.fixture(name="bench")
def bench_fixture(aws: Aws) -> Bench:
    api = aws.load_handler(API)
    worker = aws.load_handler(WORKER)
    launcher, worker_launcher, clock = RecordingLauncher(), RecordingLauncher(), Clock()
    api.service.launcher = launcher
    worker.worker.launcher_for = lambda _name: worker_launcher
    worker.worker.now = clock.now
    worker.worker.sleep = clock.sleep
    worker.worker.tuning = WorkerSettings(batch_size=4, page_size=10, backoff_seconds=0.5, canary_poll_seconds=5)
    return Bench(aws, api, worker, launcher, clock, worker_launcher)


def assert_never_lost(bench: Bench, failure_ids: list[str]) -> None:
    """Every row is in one of the four statuses, and the last history entry says how it got there."""
    for failure_id in failure_ids:
        row = bench.row(failure_id)
        assert row["status"] in ("dead", "patched", "replaying", "replayed")
        assert row["history"][-1]["to_status"] == row["status"]
        assert row["history"][0]["event"] == "reported"


# ------------------------------------------------------------------------------------------------ reporting


def test_a_reported_failure_is_stored_dead_counted_and_listed_with_payload_and_retry_count(bench):
    # Given a registered connector
    bench.put_connector()

    # When a connector reports a failed row (the sample event of the function)
    response = bench.api.lambda_handler(load_event("failures_api_report_failure.json"), bench.aws.context(API))

    # Then the row is stored dead with the reporter as author, and counted
    assert response["statusCode"] == 201
    failure = json.loads(response["body"])["failure"]
    assert failure["status"] == "dead" and failure["retry_count"] == 0
    assert failure["reported_by"] == LOCAL_OPERATOR_ARN
    assert failure["failure_id"].startswith("flr_")
    assert bench.counters() == {"dead_letter_total": 1, "pending_replay": 1, "replayed_total": 0}

    # And the list shows its payload and retry count (the sample list event filters by connector and kind)
    listed = bench.api.lambda_handler(load_event("failures_api_list_failures.json"), bench.aws.context(API))
    items = json.loads(listed["body"])["items"]
    assert [(item["failure_id"], item["payload"], item["retry_count"]) for item in items] == [
        (failure["failure_id"], {"order_id": "A-1", "amount": "12,50"}, 0)
    ]


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"connector_id": "unknown-connector"}, 404, "connector unknown-connector is not registered"),
        ({"source_id": "kafka"}, 400, "source_id kafka is not a source of connector orders-postgres"),
        ({"error_kind": "explosion"}, 400, "body.error_kind"),
        ({"retry_count": -1}, 400, "body.retry_count"),
        ({"payload": None}, 400, "a new failure needs payload"),
        ({"retry_count": OMIT}, 400, "a new failure needs retry_count"),
        ({"colour": "red"}, 400, "body.colour"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, 400, "occurred_at 2999-01-01T00:00:00.000Z is in the future"),
        ({"occurred_at": "2026-01-01T00:00:00"}, 400, "body.occurred_at"),
        ({"payload": {"blob": "x" * 70_000}}, 413, "at most 65536 bytes"),
        ({"connector_id": "Not Valid"}, 400, "body.connector_id"),
    ],
)
def test_an_invalid_report_is_refused_with_what_was_wrong_and_nothing_is_written(bench, change, status, fragment):
    bench.put_connector()
    body = {
        "connector_id": CONNECTOR,
        "source_id": "pg-primary",
        "error_kind": "parse",
        "error_message": "bad",
        "retry_count": 1,
        "payload": {"a": 1},
    }
    body.update(change)
    body = {key: value for key, value in body.items() if value is not OMIT}

    got, response = bench.call("POST", "/events/connectors/failures", body=body)

    assert got == status, response
    assert fragment in response["message"] + json.dumps(response.get("details", []))
    assert bench.counters() == {"dead_letter_total": 0, "pending_replay": 0, "replayed_total": 0}
    assert bench.table("FailuresTable").dynamodb.scan(TableName=bench.aws.name("FailuresTable"))["Count"] == 0


def test_a_retried_report_with_the_same_dedup_key_returns_the_row_already_recorded(bench):
    bench.put_connector()
    first = bench.report(dedup_key="wal/0/16B3F50")

    status, again = bench.call(
        "POST",
        "/events/connectors/failures",
        body={
            "connector_id": CONNECTOR,
            "source_id": "pg-primary",
            "error_kind": "parse",
            "error_message": "unexpected token at offset 17",
            "retry_count": 0,
            "payload": {"order_id": "A-1", "amount": "12,50"},
            "dedup_key": "wal/0/16B3F50",
        },
    )

    assert status == 200 and again["outcome"] == "duplicate"
    assert again["failure"]["failure_id"] == first["failure_id"]
    assert bench.counters()["dead_letter_total"] == 1


def test_a_very_long_error_message_is_kept_truncated(bench):
    bench.put_connector()
    failure = bench.report(error_message="trace " * 2000)
    assert len(failure["error_message"]) == 4000 and failure["error_message_truncated"] is True


# ------------------------------------------------------------------------------------------------ listing


def test_filters_combine_and_pages_cover_every_row_once(bench):
    # Given nine rows of two kinds on one connector and one row on another
    bench.put_connector()
    bench.put_connector("billing-kafka")
    ids = [bench.report(error_kind="parse" if n % 3 else "mapping")["failure_id"] for n in range(9)]
    bench.report("billing-kafka")

    # When the parse rows of the connector are read two at a time
    seen, cursor, pages = [], None, 0
    while True:
        query = {
            "connector_id": CONNECTOR,
            "error_kind": "parse",
            "limit": "2",
            **({"cursor": cursor} if cursor else {}),
        }
        status, page = bench.call("GET", "/events/connectors/failures", query=query)
        assert status == 200, page
        seen += [item["failure_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break

    # Then every parse row appears exactly once, newest first, and nothing else
    expected = [failure_id for n, failure_id in enumerate(ids) if n % 3]
    assert seen == list(reversed(expected))
    assert pages == 3


def test_without_a_connector_the_list_spans_connectors_by_day_with_status_and_time_filters(bench):
    bench.put_connector()
    bench.put_connector("billing-kafka")
    first = bench.report()["failure_id"]
    second = bench.report("billing-kafka")["failure_id"]

    status, page = bench.call("GET", "/events/connectors/failures", query={"status": "dead"})
    assert status == 200 and [item["failure_id"] for item in page["items"]] == [second, first]

    later = to_iso(utcnow() + timedelta(minutes=5))
    status, page = bench.call("GET", "/events/connectors/failures", query={"since": later})
    assert status == 200 and page["items"] == []

    status, page = bench.call("GET", "/events/connectors/failures", query={"status": "replayed"})
    assert status == 200 and page["items"] == []


@pytest.mark.parametrize(
    ("query", "status", "fragment"),
    [
        ({"colour": "red"}, 400, "query.colour"),
        ({"status": "lost"}, 400, "query.status"),
        ({"error_kind": "nope"}, 400, "query.error_kind"),
        ({"limit": "0"}, 400, "query.limit"),
        ({"since": "yesterday"}, 400, "query.since"),
        ({"since": "2026-12-03T10:00:00Z", "until": "2026-12-01T10:00:00Z"}, 400, "is after until"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, 400, "at most 31 days"),
        ({"cursor": "not-a-cursor!"}, 400, "cursor"),
        ({"cursor": "eyJkYXkiOiIiLCJhZnRlciI6eyJ4IjoxfX0"}, 400, "cursor does not belong"),
        ({"connector_id": "missing-connector"}, 404, "not registered"),
    ],
)
def test_invalid_filters_are_refused_naming_them(bench, query, status, fragment):
    bench.put_connector()
    got, response = bench.call("GET", "/events/connectors/failures", query=query)
    assert got == status, response
    assert fragment in response["message"]


def test_one_failure_is_read_with_its_history_and_unknown_ids_are_404(bench):
    bench.put_connector()
    failure_id = bench.report()["failure_id"]

    status, failure = bench.call("GET", f"/events/connectors/failures/{failure_id}")
    assert status == 200 and [item["event"] for item in failure["history"]] == ["reported"]

    for unknown in ("flr_01JEXAMPLE0000000000000000", "nope", "dedup_X"):
        status, response = bench.call("GET", f"/events/connectors/failures/{unknown}")
        assert status == 404 and unknown in response["message"]


# ------------------------------------------------------------------------------------------------ patching

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
}


def patch(bench: Bench, failure_id: str, operations: list[dict[str, Any]], **extra: Any) -> tuple[int, Any]:
    return bench.call("POST", f"/events/connectors/failures/{failure_id}/patch", body={"patch": operations, **extra})


def test_a_preview_shows_the_patched_payload_and_saves_nothing(bench):
    bench.put_connector(schema=ORDER_SCHEMA)
    failure = bench.report()

    status, preview = patch(
        bench, failure["failure_id"], [{"op": "replace", "path": "/amount", "value": 12.5}], preview=True
    )

    assert status == 200 and preview["preview"] is True and preview["failure"] is None
    assert preview["payload"] == {"order_id": "A-1", "amount": 12.5}
    assert preview["before_sha256"] == failure["payload_sha256"] != preview["after_sha256"]
    assert bench.row(failure["failure_id"])["version"] == 1


def test_a_saved_patch_records_who_when_and_the_hashes_before_and_after(bench):
    bench.put_connector(schema=ORDER_SCHEMA)
    failure = bench.report()

    status, saved = patch(
        bench,
        failure["failure_id"],
        [{"op": "replace", "path": "/amount", "value": 12.5}],
        comment="decimal comma",
        expected_payload_sha256=failure["payload_sha256"],
    )

    assert status == 200, saved
    row = saved["failure"]
    assert row["status"] == "patched" and row["payload"] == {"order_id": "A-1", "amount": 12.5}
    assert row["original_payload"] == {"order_id": "A-1", "amount": "12,50"}
    (entry,) = row["patches"]
    assert entry["by"] == LOCAL_OPERATOR_ARN and entry["comment"] == "decimal comma"
    assert entry["before_sha256"] == failure["payload_sha256"] and entry["after_sha256"] == row["payload_sha256"]
    assert entry["operations"] == [{"op": "replace", "path": "/amount", "value": 12.5}]
    assert [item["event"] for item in row["history"]] == ["reported", "patched"]
    assert bench.counters()["pending_replay"] == 1


@pytest.mark.parametrize(
    ("operations", "status", "fragment"),
    [
        ([{"op": "remove", "path": "/nope"}], 400, "patch operation 0 (remove /nope) does not apply"),
        ([{"op": "replace", "path": "/amount", "value": "still text"}], 400, "does not satisfy the payload_schema"),
        ([{"op": "remove", "path": "/order_id"}], 400, "'order_id' is a required property"),
        ([{"op": "test", "path": "/amount", "value": "12,50"}], 400, "leaves the payload unchanged"),
        ([{"op": "add", "path": "/blob", "value": "x" * 20_000}], 413, "patch is"),
        ([], 400, "body.patch"),
    ],
)
def test_a_patch_that_does_not_apply_or_that_the_schema_refuses_is_a_400_and_the_row_is_unchanged(
    bench, operations, status, fragment
):
    bench.put_connector(schema=ORDER_SCHEMA)
    failure = bench.report()

    got, response = patch(bench, failure["failure_id"], operations)

    assert got == status, response
    assert fragment in response["message"]
    row = bench.row(failure["failure_id"])
    assert row["version"] == 1 and row["status"] == "dead" and row["payload_sha256"] == failure["payload_sha256"]


def test_a_stale_patch_is_refused_with_409(bench):
    bench.put_connector()
    failure = bench.report()
    status, response = patch(
        bench, failure["failure_id"], [{"op": "add", "path": "/x", "value": 1}], expected_payload_sha256="0" * 64
    )
    assert status == 409 and "changed since it was read" in response["message"]


# ------------------------------------------------------------------------------------------------ replays


def test_a_dry_run_lists_what_would_be_replayed_and_why_others_are_skipped(bench):
    # Given rows in every situation: dead, patched, another connector's, replaying elsewhere, unknown
    bench.put_connector()
    bench.put_connector("billing-kafka")
    dead = bench.report()["failure_id"]
    patched = bench.report()["failure_id"]
    assert patch(bench, patched, [{"op": "replace", "path": "/amount", "value": 12.5}])[0] == 200
    busy = bench.report()["failure_id"]
    other = bench.report("billing-kafka")["failure_id"]
    unknown = "flr_01JEXAMPLE0000000000000000"
    _force(bench, busy, status="replaying", replay_id="rpl_01JOTHER00000000000000000")

    # When a dry run selects them all, with a canary of one row
    status, plan = bench.replay(
        failure_ids=[dead, patched, busy, other, unknown, dead], dry_run=True, canary={"rows": 1}
    )

    # Then it lists the two replayable rows with the keys they would carry and why each other row is skipped
    assert status == 200, plan
    assert [(item["failure_id"], item["replay_key"]) for item in plan["would_replay"]] == [
        (dead, f"{dead}:1"),
        (patched, f"{patched}:1"),
    ]
    assert {item["failure_id"]: item["reason"] for item in plan["skipped"]} == {
        busy: "replay_in_progress",
        other: "other_connector",
        unknown: "not_found",
    }
    assert plan["counts"] == {"examined": 5, "would_replay": 2, "skipped": 3}
    assert plan["canary_rows"] == [dead] and plan["complete"] is True
    assert bench.launcher.launched == []
    assert bench.row(dead)["status"] == "dead"


def test_a_dry_run_by_filter_selects_the_connectors_dead_and_patched_rows(bench):
    bench.put_connector()
    ids = [bench.report(error_kind=kind)["failure_id"] for kind in ("parse", "mapping", "parse")]

    status, plan = bench.replay(filter={"error_kind": "parse"}, dry_run=True)

    assert status == 200
    assert [item["failure_id"] for item in plan["would_replay"]] == [ids[0], ids[2]]


@pytest.mark.parametrize(
    ("target", "status", "fragment"),
    [
        (None, 400, "has no replay_target"),
        (
            '{"kind": "sqs", "arn": "arn:aws:sqs:us-east-1:123456789012:someone-elses-queue"}',
            400,
            "is not an allowed replay target",
        ),
    ],
)
def test_a_replay_to_a_missing_or_foreign_target_is_refused_and_nothing_starts(bench, target, status, fragment):
    bench.put_connector(target=target)
    failure_id = bench.report()["failure_id"]

    got, response = bench.replay(failure_ids=[failure_id])

    assert got == status and fragment in response["message"]
    assert bench.launcher.launched == []
    assert bench.row(failure_id)["status"] == "dead"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"connector_id": "nobody-here", "failure_ids": ["flr_01JEXAMPLE0000000000000000"]}, 404, "not registered"),
        ({"connector_id": CONNECTOR}, 400, "exactly one of failure_ids"),
        ({"connector_id": CONNECTOR, "failure_ids": ["x"]}, 400, "body.failure_ids.0"),
        ({"connector_id": CONNECTOR, "filter": {}, "canary": {"rows": 0}}, 400, "body.canary.rows"),
        ({"connector_id": CONNECTOR, "filter": {"status": "replayed"}}, 400, "body.filter.status"),
    ],
)
def test_an_invalid_replay_request_is_refused(bench, body, status, fragment):
    bench.put_connector()
    got, response = bench.call("POST", "/events/connectors/replays", body=body)
    assert got == status, response
    assert fragment in response["message"]
    assert bench.launcher.launched == []


def test_a_replay_returns_202_at_once_and_hands_the_job_to_the_worker(bench):
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(3)]

    status, job = bench.replay(failure_ids=ids)

    assert status == 202, job
    assert job["status"] == "queued" and job["progress"]["total"] == 3
    assert job["status_url"] == f"/events/connectors/replays/{job['replay_id']}"
    assert bench.launcher.launched == [job["replay_id"]]
    assert bench.job(job["replay_id"])["requested_by"] == LOCAL_OPERATOR_ARN
    stored = bench.table("JobsTable").get({"pk": job["replay_id"], "sk": "REPLAY"})
    assert stored["kind"] == "replay" and stored["created_at"] == job["created_at"]


def test_unknown_replays_are_404_and_a_finished_one_cannot_be_resumed(bench):
    bench.put_connector()
    status, _ = bench.call("GET", "/events/connectors/replays/rpl_01JEXAMPLE0000000000000000")
    assert status == 404
    failure_id = bench.report()["failure_id"]
    _, job = bench.replay(failure_ids=[failure_id])
    bench.run_worker(job["replay_id"])

    status, response = bench.call("POST", f"/events/connectors/replays/{job['replay_id']}/resume")

    assert status == 409 and "has finished (succeeded)" in response["message"]


def _force(bench: Bench, failure_id: str, **values: Any) -> None:
    """Put a row in a state another replay would have left it in (for skip reasons)."""
    table = bench.table("FailuresTable")
    row = table.get({"failure_id": failure_id}, consistent=True)
    assert row is not None
    table.put({**row, **values})


# ------------------------------------------------------------------------------------------------ audit additions


def test_the_time_filter_of_one_connector_bounds_failed_at_on_both_sides(bench):
    # Given three rows of the connector, failed at three known times
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(3)]
    base = utcnow() - timedelta(hours=3)
    table = bench.table("FailuresTable")
    for hours, failure_id in enumerate(ids):
        table.put({**bench.row(failure_id), "failed_at": to_iso(base + timedelta(hours=hours))})

    # When the list asks for the window around the middle one
    query = {
        "connector_id": CONNECTOR,
        "since": to_iso(base + timedelta(minutes=30)),
        "until": to_iso(base + timedelta(minutes=90)),
    }
    status, page = bench.call("GET", "/events/connectors/failures", query=query)

    # Then only the middle row is listed
    assert status == 200, page
    assert [item["failure_id"] for item in page["items"]] == [ids[1]]


def test_a_saved_patch_is_stamped_with_the_time_it_was_saved(bench):
    bench.put_connector()
    failure_id = bench.report()["failure_id"]
    before = utcnow()

    status, saved = patch(bench, failure_id, [{"op": "add", "path": "/currency", "value": "EUR"}])

    assert status == 200, saved
    (entry,) = saved["failure"]["patches"]
    assert to_iso(before) <= entry["at"] <= to_iso(utcnow())
    assert saved["failure"]["history"][-1]["at"] == entry["at"]


def test_a_row_being_replayed_cannot_be_patched_and_stays_as_it_was(bench):
    bench.put_connector()
    failure_id = bench.report()["failure_id"]
    _force(bench, failure_id, status="replaying", replay_id="rpl_01JOTHER00000000000000000")

    status, response = patch(bench, failure_id, [{"op": "add", "path": "/x", "value": 1}])

    assert status == 409 and "is being replayed by rpl_01JOTHER00000000000000000" in response["message"]
    row = bench.row(failure_id)
    assert row["version"] == 1 and row["patch_count"] == 0 and "x" not in json.loads(row["payload_json"])


def test_a_failed_again_report_naming_another_connectors_row_is_refused(bench):
    bench.put_connector()
    bench.put_connector("billing-kafka")
    failure_id = bench.report()["failure_id"]
    _force(
        bench, failure_id, status="replayed", replay_id="rpl_01JOTHER00000000000000000", replay_key=f"{failure_id}:1"
    )
    body = {
        "connector_id": "billing-kafka",
        "source_id": "pg-primary",
        "error_kind": "mapping",
        "error_message": "consumer could not map amount",
        "replay_key": f"{failure_id}:1",
    }

    status, response = bench.call("POST", "/events/connectors/failures", body=body)

    assert status == 400 and f"belongs to connector {CONNECTOR}, not billing-kafka" in response["message"]
    assert bench.row(failure_id)["status"] == "replayed"
    assert bench.counters("billing-kafka")["dead_letter_total"] == 0


def test_a_dry_run_over_a_long_backlog_stops_at_its_page_budget_and_says_it_is_incomplete(bench):
    # Given five rows, and a dry run that may read two pages of two rows
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(5)]
    bench.api.service.dry_run_page_size = 2
    bench.api.service.dry_run_page_budget = 2

    # When a filter dry run selects every row
    status, plan = bench.replay(filter={}, dry_run=True)

    # Then it shows the four rows it read, oldest first, and says the plan is incomplete
    assert status == 200, plan
    assert [item["failure_id"] for item in plan["would_replay"]] == ids[:4]
    assert plan["counts"]["examined"] == 4 and plan["complete"] is False and plan["truncated"] is True

    # And with room for every page, the same dry run is complete
    bench.api.service.dry_run_page_budget = 10
    status, plan = bench.replay(filter={}, dry_run=True)
    assert plan["counts"]["examined"] == 5 and plan["complete"] is True and plan["truncated"] is False


def test_starting_a_replay_costs_the_same_requests_for_a_thousand_rows_as_for_ten(bench):
    # Given a connector, and every DynamoDB request of the API counted
    bench.put_connector()
    requests: list[str] = []
    dynamodb = bench.api.service.store.dynamodb
    dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: requests.append(model.name))

    def requests_to_start(count: int) -> list[str]:
        requests.clear()
        failure_ids = [f"flr_{n:026d}" for n in range(count)]
        status, job = bench.replay(failure_ids=failure_ids)
        assert status == 202 and job["progress"]["total"] == count
        return list(requests)

    # When a replay of ten rows and one of a thousand rows are started
    ten, thousand = requests_to_start(10), requests_to_start(1000)

    # Then both requests did the same few things (the rows are read by the worker, not by the API)
    assert ten == thousand
    assert len(thousand) <= 3
