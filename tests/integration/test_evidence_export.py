"""Evidence exports through the real handlers on moto: the API starts an export, the export function streams the
bundle to the evidence bucket, the API hands out a presigned URL, and the downloaded bundle verifies offline."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connector_sla.evidence.chain import ChainHead
from connector_sla.evidence.export import retain_until
from connector_sla.evidence.store import EvidenceBucket
from connector_sla.evidence.verify import main as verify_main
from connector_sla.evidence.verify import verify_bundle
from connector_sla.storage.dynamo import to_item
from connector_sla.timeutil import day_of, parse_iso, to_iso, utcnow
from tests.known_scenario import KnownScenario, dynamodb_put
from tests.support import Aws, call_api, load_event, moto_stack


class RecordingLambda:
    """The Lambda client the evidence API invokes the export function with (moto cannot run functions)."""

    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, **request: Any) -> dict[str, Any]:
        self.invocations.append(request)
        return {"StatusCode": 202}


class Evidence:
    """The two evidence functions loaded fresh on moto, with the known scenario seeded two hours back."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        # moto applies a bucket policy's Deny statements without their conditions, so the template's TLS-only deny
        # would refuse even these HTTPS requests: take it away in moto (test_template checks the policy itself).
        aws.client("s3").delete_bucket_policy(Bucket=aws.name("EvidenceBucket"))
        self.now = utcnow()
        put = dynamodb_put(aws.client("dynamodb"), aws.name)
        self.scenario = KnownScenario(base=self.now - timedelta(hours=2)).seed(put)
        self.api = aws.load_handler("EvidenceApiFunction")
        self.lambda_client = RecordingLambda()
        self.api.exports.launcher.lambda_client = self.lambda_client
        self.export_function = aws.load_handler("EvidenceExportFunction")

    def range(self, **filters: str) -> dict[str, str]:
        return {"start": to_iso(self.now - timedelta(days=1)), "end": to_iso(self.now + timedelta(hours=1)), **filters}

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        return call_api(self.aws, self.api, "EvidenceApiFunction", method, path, **kwargs)

    def start(self, **filters: str) -> str:
        status, body = self.call("POST", "/compliance/evidence/export", body=self.range(**filters))
        assert status == 202, body
        return body["export_id"]

    def run(self, export_id: str) -> dict[str, Any]:
        context = self.aws.context("EvidenceExportFunction")
        return self.export_function.lambda_handler({"export_id": export_id}, context)

    def get(self, export_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/compliance/evidence/export/{export_id}")
        assert status == 200, body
        return body

    def export(self, **filters: str) -> dict[str, Any]:
        export_id = self.start(**filters)
        self.run(export_id)
        return self.get(export_id)

    def download(self, view: dict[str, Any], tmp_path) -> tuple[bytes, Any]:
        response = requests.get(view["download"]["url"], timeout=10)
        assert response.status_code == 200
        path = tmp_path / f"{view['export_id']}.zip"
        path.write_bytes(response.content)
        return response.content, path

    def export_rows(self) -> list[dict[str, Any]]:
        response = self.aws.client("dynamodb").query(
            TableName=self.aws.name("JobsTable"),
            IndexName="ByKind",
            KeyConditionExpression="kind = :k",
            ExpressionAttributeValues={":k": {"S": "export"}},
        )
        return response["Items"]


@pytest.fixture
def evidence(aws) -> Evidence:
    return Evidence(aws)


def lines(bundle: bytes, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in zipfile.ZipFile(io.BytesIO(bundle)).read(name).splitlines()]


# ------------------------------------------------------------------------------------------------ the whole path


def test_an_export_runs_asynchronously_and_its_download_verifies(evidence, tmp_path):
    # When an auditor asks for the last day's evidence
    export_id = evidence.start()

    # Then the API answers at once: the export is queued and the export function was invoked asynchronously
    queued = evidence.get(export_id)
    assert queued["status"] == "queued" and queued["download"] is None
    assert queued["requested_by"] == "arn:aws:iam::123456789012:user/local-operator"
    (invocation,) = evidence.lambda_client.invocations
    assert invocation["FunctionName"] == evidence.aws.functions["EvidenceExportFunction"].name
    assert invocation["InvocationType"] == "Event"
    assert json.loads(invocation["Payload"]) == {"export_id": export_id}

    # When the export function runs, Then the export succeeds with every record of the scenario
    outcome = evidence.run(export_id)
    view = evidence.get(export_id)
    assert outcome["status"] == view["status"] == "succeeded"
    written = evidence.scenario.written
    expected = {
        "transitions.jsonl": len(written["TransitionsTable"]),
        "deliveries.jsonl": len(written["DeliveriesTable"]),
        "callbacks.jsonl": len(written["CallbacksTable"]),
        "notifications.jsonl": len(written["NotificationsTable"]),
        "job_runs.jsonl": len(written["JobsTable"]),
    }
    assert {entry["name"]: entry["records"] for entry in view["files"]} == expected
    assert view["record_count"] == sum(expected.values())
    assert view["chain_verification"]["verified"] is True
    assert view["chain_verification"]["chains"] == 12

    # And the presigned URL serves the bundle byte for byte, and it verifies offline
    bundle, path = evidence.download(view, tmp_path)
    assert hashlib.sha256(bundle).hexdigest() == view["bundle"]["sha256"]
    assert verify_bundle(path).verified

    # And the link is short-lived (15 minutes) and names the exact, locked object version
    link = parse_qs(urlsplit(view["download"]["url"]).query)
    assert link["X-Amz-Expires"] == ["900"]
    assert link["versionId"] == [view["bundle"]["version_id"]]
    expires_in = parse_iso(view["download"]["expires_at"]) - utcnow()
    assert timedelta(minutes=14) < expires_in <= timedelta(minutes=15)
    assert verify_main([str(path)]) == 0

    # And the bundle holds the records as they were sealed
    sealed = {item["transition_id"]: item["record_hash"] for item in written["TransitionsTable"]}
    exported = {line["transition_id"]: line["record_hash"] for line in lines(bundle, "transitions.jsonl")}
    assert exported == sealed
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))
    assert manifest["export_id"] == export_id
    assert manifest["query"]["start"] == evidence.range()["start"]


def test_the_bundle_is_locked_encrypted_and_checksummed_where_auditors_find_it(evidence, tmp_path):
    view = evidence.export()
    s3 = evidence.aws.client("s3")
    bucket = evidence.aws.name("EvidenceBucket")
    created = view["created_at"][:10].replace("-", "/")

    # Then the bundle and its manifest sit under evidence/YYYY/MM/DD/<export_id>/ (browsable without the API)
    prefix = f"evidence/{created}/{view['export_id']}/"
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="evidence/")["Contents"]]
    assert sorted(keys) == [prefix + "bundle.zip", prefix + "manifest.json"]

    # And both are under Object Lock in compliance mode until now + EvidenceRetentionDays, encrypted with KMS
    # (read back with HeadObject: moto does not implement GetObjectRetention)
    wanted = retain_until(evidence.now, 365)
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert abs((head["ObjectLockRetainUntilDate"] - wanted).total_seconds()) < 120
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["Metadata"]["export-id"] == view["export_id"]
    assert view["bundle"]["object_lock_mode"] == "COMPLIANCE"

    # And S3 holds the SHA-256 checksums given at upload: per part for the bundle, whole for the manifest
    bundle_head = s3.head_object(Bucket=bucket, Key=prefix + "bundle.zip", ChecksumMode="ENABLED")
    assert bundle_head["ChecksumSHA256"] == view["bundle"]["checksum_sha256"]
    manifest_object = s3.get_object(Bucket=bucket, Key=prefix + "manifest.json", ChecksumMode="ENABLED")
    body = manifest_object["Body"].read()
    assert manifest_object["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()

    # And the manifest object pins the exact bundle: the verifier checks a download against it
    stored = json.loads(body)
    assert stored["bundle"] == {
        "key": prefix + "bundle.zip",
        "sha256": view["bundle"]["sha256"],
        "bytes": view["bundle"]["bytes"],
    }
    _, path = evidence.download(view, tmp_path)
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_bytes(requests.get(view["download"]["manifest_url"], timeout=10).content)
    assert verify_main([str(path), "--manifest", str(manifest_path)]) == 0

    # And the locked version cannot be deleted
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=prefix + "bundle.zip", VersionId=view["bundle"]["version_id"])


def test_the_retention_follows_the_template_parameter(tmp_path):
    # Given a stack deployed with EvidenceRetentionDays=30
    with moto_stack(EvidenceRetentionDays="30") as aws:
        evidence = Evidence(aws)
        view = evidence.export()
    # Then the bundle is locked for 30 days
    wanted = retain_until(evidence.now, 30)
    assert abs((parse_iso(view["bundle"]["retain_until"]) - wanted).total_seconds()) < 120


def test_an_export_can_be_scoped_to_a_connector_or_an_incident(evidence, tmp_path):
    scenario = evidence.scenario
    # When exporting one connector, Then only its records are in the bundle, and its chains still verify
    view = evidence.export(connector_id=scenario.orders)
    bundle, path = evidence.download(view, tmp_path)
    for name in ("transitions.jsonl", "deliveries.jsonl", "callbacks.jsonl", "notifications.jsonl"):
        assert {line["connector_id"] for line in lines(bundle, name)} == {scenario.orders}, name
    assert len(lines(bundle, "transitions.jsonl")) == 5
    # Job runs are not scoped by connector: every run of the range is kept
    assert len(lines(bundle, "job_runs.jsonl")) == 2
    assert verify_bundle(path).verified

    # When exporting one incident, Then only its records are in the bundle
    view = evidence.export(incident_id=scenario.crm_incident)
    bundle, _ = evidence.download(view, tmp_path)
    assert [line["kind"] for line in lines(bundle, "transitions.jsonl")] == ["opened", "recovered"]
    assert {line["incident_id"] for line in lines(bundle, "callbacks.jsonl")} == {scenario.crm_incident}
    assert view["query"]["incident_id"] == scenario.crm_incident


def test_only_records_inside_the_range_are_exported(evidence, tmp_path):
    # When the range ends an hour after the scenario's base (end exclusive)
    scenario = evidence.scenario
    body = {"start": to_iso(scenario.at(0)), "end": to_iso(scenario.at(60))}
    status, accepted = evidence.call("POST", "/compliance/evidence/export", body=body)
    assert status == 202
    evidence.run(accepted["export_id"])
    view = evidence.get(accepted["export_id"])
    bundle, _ = evidence.download(view, tmp_path)
    # Then the billing incident (opened at base + 60 min) and the crm incident (before base) are left out
    ats = [line["at"] for line in lines(bundle, "transitions.jsonl")]
    assert ats and all(body["start"] <= at < body["end"] for at in ats)
    assert {line["connector_id"] for line in lines(bundle, "transitions.jsonl")} == {scenario.orders}


# ------------------------------------------------------------------------------------------------ tampering


def test_a_record_altered_in_the_table_breaks_the_chain_and_is_named(evidence, tmp_path, capsys):
    # Given a transition whose reason was changed in the table after it was sealed
    scenario = evidence.scenario
    altered = next(
        item
        for item in scenario.written["TransitionsTable"]
        if item["connector_id"] == scenario.orders and item["seq"] == 3
    )
    evidence.aws.client("dynamodb").put_item(
        TableName=evidence.aws.name("TransitionsTable"), Item=to_item({**altered, "reason": "nothing happened"})
    )
    # When exported, Then the export is stored but marked chain_broken, naming that record
    view = evidence.export()
    assert view["status"] == "chain_broken"
    problem = view["chain_verification"]["first_problem"]
    assert problem["record_id"] == altered["transition_id"]
    assert problem["chain_id"] == f"transitions:{scenario.orders}" and problem["chain_seq"] == 3
    assert "record altered" in problem["reason"]
    # And the downloaded bundle fails offline with the same record named
    _, path = evidence.download(view, tmp_path)
    assert verify_main([str(path)]) == 1
    assert altered["transition_id"] in capsys.readouterr().out


def test_a_deleted_record_in_the_middle_of_a_chain_is_reported(evidence):
    scenario = evidence.scenario
    evidence.aws.client("dynamodb").delete_item(
        TableName=evidence.aws.name("TransitionsTable"),
        Key=to_item({"connector_id": scenario.orders, "seq": 3}),
    )
    view = evidence.export()
    assert view["status"] == "chain_broken"
    assert "chain_seq 3 is missing" in view["chain_verification"]["first_problem"]["reason"]


# ------------------------------------------------------------------------------------------------ failures


def test_a_repeated_invocation_does_not_export_twice(evidence):
    export_id = evidence.start()
    assert evidence.run(export_id)["status"] == "succeeded"
    assert evidence.run(export_id)["status"] == "skipped"
    versions = evidence.aws.client("s3").list_object_versions(
        Bucket=evidence.aws.name("EvidenceBucket"), Prefix="evidence/"
    )
    assert len(versions["Versions"]) == 2  # one bundle, one manifest


def test_a_failure_halfway_aborts_the_upload_and_is_recorded(evidence):
    # Given a table read that fails after the first records were streamed
    export_id = evidence.start()
    reader = evidence.export_function.exporter.reader

    class FailingReader:
        def records(self, file, query, until):
            for index, record in enumerate(reader.records(file, query, until)):
                if index == 2:
                    raise RuntimeError("throttled")
                yield record

    evidence.export_function.exporter.reader = FailingReader()
    # When the export runs, Then it is marked failed with the reason, and no upload is left behind
    assert evidence.run(export_id)["status"] == "failed"
    view = evidence.get(export_id)
    assert view["status"] == "failed" and view["error"] == "the export failed: RuntimeError"
    assert view["download"] is None
    s3 = evidence.aws.client("s3")
    bucket = evidence.aws.name("EvidenceBucket")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_an_export_stops_cleanly_before_its_time_limit(evidence):
    # Given more callbacks than are checked between two looks at the clock, and a function about to time out
    put = dynamodb_put(evidence.aws.client("dynamodb"), evidence.aws.name)
    at, day = evidence.scenario.iso(5), day_of(evidence.scenario.at(5))
    head = ChainHead()
    for index in range(501):
        callback = {"callback_id": f"cbk_{index}", "provider": "p", "received_at": at, "day": day}
        record = head.next(callback, "callbacks:unmatched:p")
        head = ChainHead(record["chain_seq"], record["record_hash"])
        put("CallbacksTable", record)
    export_id = evidence.start()
    context = evidence.aws.context("EvidenceExportFunction")
    context.get_remaining_time_in_millis = lambda: 20_000
    # When it runs, Then it gives up, says why, and leaves no upload behind
    outcome = evidence.export_function.lambda_handler({"export_id": export_id}, context)
    assert outcome["status"] == "failed"
    assert "export a shorter range" in evidence.get(export_id)["error"]
    uploads = evidence.aws.client("s3").list_multipart_uploads(Bucket=evidence.aws.name("EvidenceBucket"))
    assert uploads.get("Uploads", []) == []


def test_an_export_whose_function_cannot_be_started_is_refused_and_marked_failed(evidence):
    class Throttled:
        def invoke(self, **_: Any) -> None:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke")

    evidence.api.exports.launcher.lambda_client = Throttled()
    status, body = evidence.call("POST", "/compliance/evidence/export", body=evidence.range())
    assert status == 503 and body["error"] == "export_not_started"
    (row,) = evidence.export_rows()
    assert row["status"]["S"] == "failed"


def test_the_export_function_refuses_a_payload_without_an_export_id(evidence):
    for payload in ({}, {"export_id": "../x"}, ["exp_01M8YQZZ2MKD8EA4QGGV27SAH7"]):
        outcome = evidence.export_function.lambda_handler(payload, evidence.aws.context("EvidenceExportFunction"))
        assert outcome["status"] == "refused"
    assert evidence.export_rows() == []


def test_the_sample_events_run_through_the_handlers(evidence):
    # The files `sam local invoke -e` takes: a start request, and a job payload for an export that does not exist
    api_context = evidence.aws.context("EvidenceApiFunction")
    response = evidence.api.lambda_handler(load_event("evidence_api_start_export.json"), api_context)
    assert response["statusCode"] == 202, response["body"]
    response = evidence.api.lambda_handler(load_event("evidence_api_get_export.json"), api_context)
    assert response["statusCode"] == 404
    job_context = evidence.aws.context("EvidenceExportFunction")
    assert evidence.export_function.lambda_handler(load_event("evidence_export_job.json"), job_context) == {
        "export_id": "exp_01JEXAMPLE0000000000000000",
        "status": "skipped",
        "records": 0,
        "bytes": 0,
    }


def test_a_multipart_upload_checksums_every_part(aws):
    # Given an upload larger than one part (incompressible bytes, 5 MiB parts: S3's smallest)
    aws.client("s3").delete_bucket_policy(Bucket=aws.name("EvidenceBucket"))
    bucket = EvidenceBucket(aws.client("s3"), aws.name("EvidenceBucket"))
    payload = os.urandom(11 * 1024 * 1024)
    upload = bucket.open_bundle(
        "evidence/test/bundle.zip", retain_until=retain_until(utcnow(), 1), metadata={}, part_size=5 * 1024 * 1024
    )
    for offset in range(0, len(payload), 64 * 1024):
        upload.write(payload[offset : offset + 64 * 1024])
    version = upload.complete()
    # Then it went up in three parts, each with its SHA-256, and S3's whole-object checksum is built from them
    assert [part["PartNumber"] for part in upload.parts] == [1, 2, 3]
    for part, digest in zip(upload.parts, upload.part_digests, strict=True):
        assert part["ChecksumSHA256"] == base64.b64encode(digest).decode()
    stored = bucket.describe("evidence/test/bundle.zip", version)
    assert stored.checksum_sha256 == upload.composite_checksum
    assert aws.client("s3").get_object(Bucket=bucket.name, Key="evidence/test/bundle.zip")["Body"].read() == payload


def test_two_exports_of_the_same_range_hold_the_same_files(evidence):
    # Given the same range exported twice (records of one instant come back from the indexes in no defined order)
    first, second = evidence.export(), evidence.export()
    # Then every file is byte for byte the same: the files' order is total (time, chain position, id)
    assert first["export_id"] != second["export_id"]
    assert [(entry["name"], entry["sha256"]) for entry in first["files"]] == [
        (entry["name"], entry["sha256"]) for entry in second["files"]
    ]
