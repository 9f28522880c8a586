"""Export rules (range, keys, retention, status) and the streaming of a bundle from a source, without AWS."""

from __future__ import annotations

import io
import itertools
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import connector_sla
from connector_sla.errors import ValidationFailed
from connector_sla.evidence.bundle import FILES_BY_NAME
from connector_sla.evidence.chain import ChainHead
from connector_sla.evidence.export import (
    ExportQuery,
    ExportTimeLimit,
    bundle_key,
    check_export_id,
    check_range,
    effective_status,
    export_view,
    manifest_key,
    new_export_item,
    order_ties,
    retain_until,
    write_bundle,
)
from connector_sla.evidence.models import ExportRequest
from connector_sla.evidence.verify import verify_bundle

NOW = datetime(2026, 12, 3, 19, 22, 5, 123000, tzinfo=UTC)


def test_a_range_must_be_ordered_bounded_and_not_in_the_future():
    day = timedelta(days=1)
    check_range(NOW - day, NOW, NOW)
    check_range(NOW - timedelta(days=366), NOW, NOW)
    with pytest.raises(ValidationFailed, match="end must be after start"):
        check_range(NOW, NOW, NOW)
    with pytest.raises(ValidationFailed, match="at most 366"):
        check_range(NOW - timedelta(days=367), NOW, NOW)
    with pytest.raises(ValidationFailed, match="in the future"):
        check_range(NOW + day, NOW + 2 * day, NOW)


def test_export_ids_are_checked_before_any_read():
    assert check_export_id("exp_01M8YQZZ2MKD8EA4QGGV27SAH7") == "exp_01M8YQZZ2MKD8EA4QGGV27SAH7"
    for bad in ("exp_short", "inc_01M8YQZZ2MKD8EA4QGGV27SAH7", "../../etc", None, 42):
        with pytest.raises(ValidationFailed, match="export_id must look like exp_"):
            check_export_id(bad)


def test_objects_are_laid_out_by_request_day_so_auditors_can_browse_them():
    created = datetime(2026, 3, 7, 23, 59, tzinfo=UTC)
    assert bundle_key("exp_X", created) == "evidence/2026/03/07/exp_X/bundle.zip"
    assert manifest_key("exp_X", created) == "evidence/2026/03/07/exp_X/manifest.json"


def test_retention_is_counted_in_whole_seconds_from_the_export():
    assert retain_until(NOW, 365) == datetime(2027, 12, 3, 19, 22, 5, tzinfo=UTC)


def test_a_run_that_outlived_its_function_is_shown_as_failed():
    item = new_export_item("exp_X", ExportQuery(NOW - timedelta(days=1), NOW), actor="me", now=NOW)
    running = {**item, "status": "running", "started_at": "2026-12-03T19:22:05.123Z"}
    assert effective_status(running, NOW + timedelta(minutes=10)) == ("running", None)
    status, error = effective_status(running, NOW + timedelta(minutes=17))
    assert status == "failed" and "time limit" in error
    assert export_view(running, NOW + timedelta(minutes=17))["status"] == "failed"


def test_the_query_survives_a_round_trip_through_the_export_row():
    query = ExportQuery(NOW - timedelta(hours=5), NOW, connector_id="orders-postgres")
    item = new_export_item("exp_X", query, actor="arn:aws:iam::1:user/a", now=NOW)
    assert item["query"] == {
        "start": "2026-12-03T14:22:05.123Z",
        "end": "2026-12-03T19:22:05.123Z",
        "connector_id": "orders-postgres",
    }
    assert ExportQuery.from_item(item["query"]) == query
    assert (item["pk"], item["sk"], item["kind"], item["status"]) == ("exp_X", "EXPORT", "export", "queued")


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("abc"), st.integers(1, 5)), max_size=30))
def test_records_of_one_instant_are_put_in_chain_order_and_nothing_else_moves(rows):
    # Given records in time order, several sharing an instant, in any chain order
    records = [
        {"at": f"t{at}", "chain_id": chain, "chain_seq": seq, "transition_id": f"{chain}{seq}-{index}"}
        for index, (at, chain, seq) in enumerate(sorted(rows, key=lambda row: row[0]))
    ]
    ordered = list(order_ties(records, FILES_BY_NAME["transitions.jsonl"]))
    # Then the same records come out, still in time order, and records of one instant are in chain order
    assert sorted(map(id, ordered)) == sorted(map(id, records))
    assert [record["at"] for record in ordered] == [record["at"] for record in records]
    for first, second in itertools.pairwise(ordered):
        if first["at"] == second["at"]:
            assert (first["chain_id"], first["chain_seq"]) <= (second["chain_id"], second["chain_seq"])


def test_the_request_model_refuses_what_is_not_an_export():
    ExportRequest.model_validate({"start": "2026-12-01T00:00:00Z", "end": "2026-12-04T00:00:00Z"})
    refused = [
        {"start": "2026-12-01T00:00:00Z"},
        {"start": "2026-12-01T00:00:00", "end": "2026-12-04T00:00:00"},
        {"start": "2026-12-04T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
        {"start": "2026-12-01T00:00:00Z", "end": "2026-12-04T00:00:00Z", "connector": "x"},
        {"start": "2026-12-01T00:00:00Z", "end": "2026-12-04T00:00:00Z", "connector_id": "Not Valid"},
        {"start": "2026-12-01T00:00:00Z", "end": "2026-12-04T00:00:00Z", "incident_id": "inc_1"},
    ]
    for body in refused:
        with pytest.raises(ValidationError):
            ExportRequest.model_validate(body)


# ------------------------------------------------------------------------------------------------ write_bundle


class ListSource:
    """Records per bundle file, served the way the reader serves them (filtered to the query's range)."""

    def __init__(self, files: dict[str, list[dict]]) -> None:
        self.files = files
        self.asked: list[tuple[str, ExportQuery, datetime]] = []

    def records(self, file, query, until):
        self.asked.append((file.name, query, until))
        return iter(self.files.get(file.name, []))


class Sink:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self.buffer.write(data)


def chain_of(chain_id: str, count: int, minute: int = 0, **fields) -> list[dict]:
    head, records = ChainHead(), []
    for index in range(count):
        record = head.next({"at": f"2026-12-03T10:{minute + index:02d}:00.000Z", **fields}, chain_id)
        head = ChainHead(record["chain_seq"], record["record_hash"])
        records.append({**record, "event_pending": "1"})
    return records


def test_a_bundle_holds_every_file_in_its_sealed_view_with_a_manifest(tmp_path):
    # Given transitions (one still in the SLA event outbox) and a notification
    query = ExportQuery(NOW - timedelta(days=1), NOW, connector_id="c1")
    source = ListSource(
        {
            "transitions.jsonl": chain_of("transitions:c1", 3, transition_id="t"),
            "notifications.jsonl": [{"notification_id": "ntf_1", "created_at": "2026-12-03T10:00:00.000Z"}],
        }
    )
    sink = Sink()
    # When the bundle is written
    result = write_bundle(export_id="exp_T", query=query, source=source, sink=sink, exported_at=NOW)
    # Then every file was asked for with the export time as the upper bound
    assert [name for name, _, _ in source.asked] == [
        "transitions.jsonl",
        "deliveries.jsonl",
        "callbacks.jsonl",
        "notifications.jsonl",
        "job_runs.jsonl",
    ]
    assert all(until == NOW for _, _, until in source.asked)
    # And records are exported without their unsealed fields, with their hash
    archive = zipfile.ZipFile(io.BytesIO(sink.buffer.getvalue()))
    lines = [json.loads(line) for line in archive.read("transitions.jsonl").splitlines()]
    assert all("event_pending" not in line and "record_hash" in line for line in lines)
    # And the manifest says what was exported, when, by which version, and that the chains verified
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["query"] == {
        "start": "2026-12-02T19:22:05.123Z",
        "end": "2026-12-03T19:22:05.123Z",
        "connector_id": "c1",
        "incident_id": None,
    }
    assert manifest["exported_at"] == "2026-12-03T19:22:05.123Z"
    assert manifest["service_version"] == connector_sla.__version__
    assert {entry["name"]: entry["records"] for entry in manifest["files"]} == {
        "transitions.jsonl": 3,
        "deliveries.jsonl": 0,
        "callbacks.jsonl": 0,
        "notifications.jsonl": 1,
        "job_runs.jsonl": 0,
    }
    assert manifest["chain_verification"]["verified"] is True
    assert result.status == "succeeded" and result.records == 4
    path = tmp_path / "bundle.zip"
    path.write_bytes(sink.buffer.getvalue())
    assert verify_bundle(path).verified


def test_a_broken_chain_is_exported_and_named_in_the_manifest():
    # Given a delivery chain whose second record was altered in the table
    deliveries = chain_of("deliveries:ntf_1", 3, delivery_id="d")
    deliveries[1] = {**deliveries[1], "delivery_id": "d-forged"}
    source = ListSource({"deliveries.jsonl": deliveries})
    # When exported, Then the bundle is still written (the broken record is evidence too) and names it
    result = write_bundle(
        export_id="exp_T", query=ExportQuery(NOW - timedelta(days=1), NOW), source=source, sink=Sink(), exported_at=NOW
    )
    assert result.status == "chain_broken"
    problem = result.manifest["chain_verification"]["first_problem"]
    assert (problem["file"], problem["line"], problem["record_id"]) == ("deliveries.jsonl", 2, "d-forged")


def test_an_export_stops_before_the_function_time_limit():
    source = ListSource({"callbacks.jsonl": [{"received_at": "t", "n": index} for index in range(1200)]})
    with pytest.raises(ExportTimeLimit, match=r"callbacks\.jsonl line 500"):
        write_bundle(
            export_id="exp_T",
            query=ExportQuery(NOW - timedelta(days=1), NOW),
            source=source,
            sink=Sink(),
            exported_at=NOW,
            time_left=lambda: 30.0,
        )
