"""The connector registry and SLA read endpoints, through the real handler on moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import call_api

FN = "ConnectorsApiFunction"


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def api(aws):
    handler = aws.load_handler(FN)

    def call(method, path, **kwargs):
        return call_api(aws, handler, FN, method, path, **kwargs)

    return call


def connector_body(**overrides):
    body = {
        "name": "Orders CDC",
        "owner_team": "payments",
        "sources": [{"source_id": "primary", "name": "Postgres primary"}, {"source_id": "replica"}],
    }
    body.update(overrides)
    return body


def stored_rows(aws, connector_id):
    items = aws.client("dynamodb").query(
        TableName=aws.name("ConnectorsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": connector_id}},
    )["Items"]
    return {item["sk"]["S"] for item in items}


def test_registering_a_connector_fills_policy_defaults_and_creates_its_rows(api, aws):
    status, body = api("PUT", "/events/connectors/orders", body=connector_body())
    assert status == 201
    connector = body["connector"]
    assert connector["policy"]["freshness_warning_seconds"] == 300
    assert connector["policy"]["recovery_clean_windows"] == 2
    assert connector["config_version"] == 1
    assert stored_rows(aws, "orders") == {"CONFIG", "PROGRESS", "COUNTERS"}
    # When it is updated, Then the version moves and the creation time stays
    status, body = api("PUT", "/events/connectors/orders", body=connector_body(name="Orders v2"))
    assert status == 200 and body["connector"]["config_version"] == 2
    assert body["connector"]["created_at"] == connector["created_at"]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        (
            "/events/connectors/orders",
            connector_body(policy={"freshness_warning_seconds": 900, "freshness_critical_seconds": 300}),
            "freshness_warning_seconds (900) is above freshness_critical_seconds (300)",
        ),
        ("/events/connectors/orders", connector_body(sources=[]), "body.sources"),
        ("/events/connectors/orders", connector_body(sources=[{"source_id": "a"}, {"source_id": "a"}]), "repeated: a"),
        ("/events/connectors/overview", connector_body(), "reserved"),
        ("/events/connectors/Orders_UPPER", connector_body(), "lower-case"),
        (
            "/events/connectors/orders",
            connector_body(replay_target={"kind": "sqs", "arn": "arn:aws:sqs:us-east-1:1:x"}),
            "not a replay target of this deployment",
        ),
        (
            "/events/connectors/orders",
            connector_body(payload_schema={"type": "no-such-type"}),
            "not a valid JSON Schema",
        ),
        ("/events/connectors/orders", connector_body(surprise=1), "body.surprise"),
    ],
)
def test_invalid_registrations_are_refused_and_nothing_is_stored(api, aws, path, body, fragment):
    status, answer = api("PUT", path, body=body)
    assert status == 400
    assert fragment in answer["message"] + str(answer.get("details"))
    connector_id = path.rsplit("/", 1)[-1]
    assert stored_rows(aws, connector_id) == set()


def test_checkpoint_reports_are_validated(api):
    api("PUT", "/events/connectors/orders", body=connector_body())
    cases = [
        ("/events/connectors/ghost/checkpoints", {"pending_replay": 1}, 404, "not registered"),
        ("/events/connectors/orders/checkpoints", {"pending_replay": -1}, 400, "greater than or equal to 0"),
        (
            "/events/connectors/orders/checkpoints",
            {"sources": [{"source_id": "primary", "last_event_at": iso(now() + timedelta(hours=1))}]},
            400,
            "future",
        ),
        (
            "/events/connectors/orders/checkpoints",
            {"sources": [{"source_id": "nope", "last_event_at": iso(now())}]},
            400,
            "unknown source_id nope",
        ),
        (
            "/events/connectors/orders/checkpoints",
            {"sources": [{"source_id": "primary", "last_event_at": "2026-12-03T10:00:00"}]},
            400,
            "UTC offset",
        ),
        ("/events/connectors/orders/checkpoints", {}, 400, "at least one of"),
    ]
    for path, body, expected_status, fragment in cases:
        status, answer = api("POST", path, body=body)
        assert status == expected_status, (body, answer)
        assert fragment in answer["message"] + str(answer.get("details")), answer


def test_a_refused_checkpoint_changes_nothing(api):
    api("PUT", "/events/connectors/orders", body=connector_body())
    good = {
        "sources": [{"source_id": "primary", "last_event_at": iso(now() - timedelta(seconds=30))}],
        "pending_replay": 7,
    }
    assert api("POST", "/events/connectors/orders/checkpoints", body=good)[0] == 202
    bad = {"sources": [{"source_id": "primary", "last_event_at": iso(now())}], "pending_replay": -5}
    assert api("POST", "/events/connectors/orders/checkpoints", body=bad)[0] == 400
    _, overview = api("GET", "/events/connectors/overview")
    assert overview["items"][0]["pending_replay"] == 7


def test_the_overview_shows_freshness_lag_backlogs_and_active_source(api):
    api("PUT", "/events/connectors/orders", body=connector_body())
    api(
        "POST",
        "/events/connectors/orders/checkpoints",
        body={
            "sources": [
                {"source_id": "primary", "last_event_at": iso(now() - timedelta(seconds=120)), "checkpoint": "lsn/42"}
            ],
            "pending_replay": 3,
            "dead_letter_total": 9,
        },
    )
    status, body = api("GET", "/events/connectors/overview")
    assert status == 200
    item = body["items"][0]
    assert item["connector_id"] == "orders" and item["active_source"] == "primary"
    assert item["checkpoint"] == "lsn/42" and 118 <= item["freshness_lag_seconds"] <= 130
    assert item["pending_replay"] == 3 and item["dead_letter_total"] == 9
    assert item["severity"] == "ok" and item["level"] == "none"


def test_lists_paginate_with_opaque_cursors_and_refuse_unknown_filters(api):
    for index in range(5):
        api("PUT", f"/events/connectors/c{index}", body=connector_body())
    seen, cursor = [], None
    while True:
        status, page = api(
            "GET", "/events/connectors/overview", query={"limit": "2", **({"cursor": cursor} if cursor else {})}
        )
        assert status == 200 and len(page["items"]) <= 2
        seen.extend(item["connector_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"c{index}" for index in range(5)]
    status, answer = api("GET", "/events/connectors/overview", query={"colour": "red"})
    assert status == 400 and "query.colour" in answer["message"]
    status, answer = api("GET", "/events/connectors/overview", query={"cursor": "garbage"})
    assert status == 400 and "cursor" in answer["message"]
    status, answer = api("GET", "/events/connectors/sla/states", query={"view": "current", "kind": "opened"})
    assert status == 400 and "view=transitions" in answer["message"]


def test_source_health_lists_each_source_with_its_health(api):
    api("PUT", "/events/connectors/orders", body=connector_body())
    api(
        "POST",
        "/events/connectors/orders/checkpoints",
        body={
            "sources": [
                {"source_id": "primary", "last_event_at": iso(now() - timedelta(seconds=2000)), "status": "down"},
                {"source_id": "replica", "last_event_at": iso(now() - timedelta(seconds=5))},
            ]
        },
    )
    status, body = api("GET", "/events/connectors/source-health")
    assert status == 200
    sources = {source["source_id"]: source for source in body["items"][0]["sources"]}
    assert sources["primary"]["health"] == "down" and sources["primary"]["priority"] == 0
    assert sources["replica"]["health"] == "healthy" and sources["replica"]["lag_seconds"] <= 10
