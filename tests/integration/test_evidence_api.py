"""The evidence API's refusals and listing, through the real handler on moto: bad input gets a 4xx that says what
is expected, and nothing is written or started."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector_sla.timeutil import to_iso, utcnow
from tests.integration.test_evidence_export import Evidence


@pytest.fixture
def evidence(aws) -> Evidence:
    return Evidence(aws)


DAY = timedelta(days=1)


def days_ago(days: float) -> str:
    return to_iso(utcnow() - days * DAY)


# Each body is built when its test runs (a lambda), so "now" is the test's own.
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (lambda: {"start": days_ago(1)}, "body.end"),
        (lambda: {"start": "yesterday", "end": days_ago(0)}, "body.start"),
        (lambda: {"start": "2026-12-01T00:00:00", "end": "2026-12-02T00:00:00"}, "timezone"),
        (lambda: {"start": days_ago(0), "end": days_ago(1)}, "end must be after start"),
        (lambda: {"start": days_ago(400), "end": days_ago(0)}, "at most 366"),
        (lambda: {"start": days_ago(-1), "end": days_ago(-2)}, "in the future"),
        (lambda: {"start": days_ago(1), "end": days_ago(0), "connector": "orders"}, "body.connector"),
        (lambda: {"start": days_ago(1), "end": days_ago(0), "connector_id": "Orders DB"}, "body.connector_id"),
        (lambda: {"start": days_ago(1), "end": days_ago(0), "incident_id": "42"}, "body.incident_id"),
        (lambda: {"start": days_ago(1), "end": days_ago(0), "start_time": "x"}, "body.start_time"),
    ],
)
def test_a_bad_export_request_is_refused_and_nothing_is_started(evidence, body, expected):
    status, answer = evidence.call("POST", "/compliance/evidence/export", body=body())
    assert status == 400
    assert expected in answer["message"]
    assert evidence.export_rows() == []
    assert evidence.lambda_client.invocations == []


def test_a_body_that_is_not_json_is_refused(evidence):
    status, answer = evidence.call("POST", "/compliance/evidence/export", raw_body=b"start=today")
    assert status == 400 and "not valid JSON" in answer["message"]
    assert evidence.export_rows() == []


def test_reading_an_export_that_does_not_exist(evidence):
    status, answer = evidence.call("GET", "/compliance/evidence/export/exp_01M8YQZZ2MKD8EA4QGGV27SAH7")
    assert status == 404 and "GET /compliance/evidence/export" in answer["message"]
    status, answer = evidence.call("GET", "/compliance/evidence/export/not-an-id")
    assert status == 400 and "exp_" in answer["message"]


def test_exports_are_listed_newest_first_page_by_page(evidence):
    # Given three exports
    started = [evidence.start() for _ in range(3)]
    # When listed two at a time, Then the newest come first and the cursor leads to the rest
    status, first = evidence.call("GET", "/compliance/evidence/export", query={"limit": "2"})
    assert status == 200
    assert [item["export_id"] for item in first["items"]] == started[::-1][:2]
    assert all(item["download"] is None for item in first["items"])
    status, second = evidence.call(
        "GET", "/compliance/evidence/export", query={"limit": "2", "cursor": first["next_cursor"]}
    )
    assert [item["export_id"] for item in second["items"]] == started[:1]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"limit": "0"}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor is not valid"),
        ({"status": "failed"}, "query.status"),
    ],
)
def test_bad_list_queries_are_refused(evidence, query, expected):
    status, answer = evidence.call("GET", "/compliance/evidence/export", query=query)
    assert status == 400
    assert expected in answer["message"]
