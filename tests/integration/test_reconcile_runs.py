"""Reconcile runs through the real handlers on moto, against the local stack's fake provider over loopback."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connector_sla.config import settings
from connector_sla.jobs.reconcile import Change
from connector_sla.jobs.runner import ApplyResult
from connector_sla.storage.dynamo import Table
from devstack.fake_provider import FakeIncident, FakeProvider
from devstack.functions import LambdaContext
from tests.support import call_api

API = "JobsApiFunction"
RUNNER = "JobRunnerFunction"


class Server:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.hostport = f"127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.thread.join(timeout=5)


class RecordingInvoker:
    def __init__(self):
        self.payloads = []

    def start(self, payload):
        self.payloads.append(dict(payload))


class Stack:
    """The jobs API and runner handlers, the fake provider, and helpers to seed and read rows."""

    def __init__(self, aws, provider, server):
        self.aws = aws
        self.provider = provider
        self.server = server
        self.api = aws.load_handler(API)
        self.api.registry.invoker = RecordingInvoker()
        self.runner = aws.load_handler(RUNNER)
        dynamodb = aws.client("dynamodb")
        self.notifications = Table(aws.name("NotificationsTable"), dynamodb)
        self.callbacks = Table(aws.name("CallbacksTable"), dynamodb)
        self.jobs = Table(aws.name("JobsTable"), dynamodb)

    def allow(self, hostport):
        """Let the handlers reach one more loopback peer, as OUTBOUND_ALLOWED_LOCAL_TARGETS would."""
        allowed = (self.server.hostport, hostport)
        for component in (self.runner.runner, self.runner.runner.source, self.api.registry):
            component.allowed_local = allowed

    def call(self, method, path, **kwargs):
        return call_api(self.aws, self.api, API, method, path, **kwargs)

    def run(self, payload):
        context = LambdaContext(self.aws.functions[RUNNER], deadline=time.monotonic() + 300)
        return self.runner.lambda_handler(payload, context)

    def register(self, **payload):
        body = {
            "job_type": "alert_oncall_reconcile",
            "schedule": "rate(5 minutes)",
            "payload": {
                "provider": "generic",
                "endpoint": f"http://{self.server.hostport}/incidents",
                "mapping_template": {"next_page": {"page_size": 2}},
                "limit": 100,
                "dry_run": True,
                **payload,
            },
        }
        status, job = self.call("POST", "/ops/jobs", body=body)
        assert status == 201, job
        return job

    def run_now(self, job_id, **query):
        status, started = self.call("POST", f"/ops/jobs/{job_id}/runs", query=query or None)
        assert status == 202, started
        payload = self.api.registry.invoker.payloads[-1]
        return self.run(payload), started["run_id"]

    def runs(self, job_id):
        status, page = self.call("GET", f"/ops/jobs/{job_id}/runs")
        assert status == 200, page
        return page["items"]

    def seed_notification(self, number, *, ack_state="unacked", incident_id="inc_01SEED"):
        notification_id = f"ntf_01SEED{number:020d}"
        self.notifications.put(
            {
                "notification_id": notification_id,
                "incident_id": incident_id,
                "connector_id": "orders-eu",
                "connector_name": "Orders EU",
                "owner_team": "data-platform",
                "level": "L1",
                "kind": "alert",
                "transition_id": "trn_01SEED",
                "channel": "oncall",
                "target": "generic",
                "provider": "generic",
                "recipients": ["oncall-im"],
                "summary": "freshness lag critical",
                "ack_state": ack_state,
                "delivery_status": "sent",
                "attempt_count": 1,
                "last_delivery_id": f"dlv_{notification_id[4:]}_1",
                "created_at": "2026-12-03T10:00:00.000Z",
                "updated_at": "2026-12-03T10:00:00.000Z",
                "day": "2026-12-03",
                "version": 1,
                **({"unacked_shard": "3"} if ack_state == "unacked" else {}),
            }
        )
        return notification_id

    def remote(self, notification_id, status, *, incident_id="inc_01SEED", created_at=None):
        incident = FakeIncident(
            notification_id, notification_id, f"dlv_{notification_id[4:]}_1", incident_id, status=status
        )
        if created_at is not None:
            incident.created_at = created_at
        self.provider.incidents[notification_id] = incident

    def notification(self, notification_id):
        return self.notifications.get({"notification_id": notification_id}, consistent=True)

    def callback_records(self):
        return [item for page in self.callbacks.scan_pages() for item in page]


@pytest.fixture
def stack(aws, tmp_path, monkeypatch):
    provider = FakeProvider(secret=lambda: "s", callback_url="http://127.0.0.1:9/cb", log=lambda _: None)
    server = Server(provider)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("OUTBOUND_ALLOWED_LOCAL_TARGETS", server.hostport)
    monkeypatch.setenv("RECONCILE_FILE_BASE_DIR", str(data))
    settings.cache_clear()
    try:
        yield Stack(aws, provider, server)
    finally:
        server.stop()


def test_the_runbook_order_dry_run_then_real_run(stack):
    # Given three unacked notifications; the provider acknowledged one, resolved one, and still pages the third
    acked, resolved, open_ = (stack.seed_notification(number) for number in (1, 2, 3))
    stack.remote(acked, "acknowledged", created_at=1)
    stack.remote(resolved, "resolved", created_at=2)
    stack.remote(open_, "triggered", created_at=3)
    stack.remote("ntf_01UNKNOWN00000000000000000", "acknowledged", created_at=4)
    job = stack.register()

    # When the dry run runs (as its schedule fires it)
    summary = stack.run({"job_id": job["job_id"], "trigger": "schedule"})

    # Then its report lists the two changes it would make, and nothing changed locally
    assert summary["status"] == "succeeded", summary
    (dry,) = stack.runs(job["job_id"])
    assert dry["dry_run"] is True and dry["trigger"] == "schedule" and dry["pages"] == 2
    assert dry["counts"] == {
        "fetched": 4,
        "matched": 3,
        "would_update": 2,
        "unchanged": 1,
        "unmatched": 1,
        "errors": 0,
    }
    assert {
        (c["notification_id"], c["ack_state_before"], c["ack_state_after"], c["outcome"]) for c in dry["changes"]
    } == {
        (acked, "unacked", "acknowledged", "would_update"),
        (resolved, "unacked", "resolved", "would_update"),
    }
    assert dry["unmatched_sample"][0]["notification_id"] == "ntf_01UNKNOWN00000000000000000"
    assert stack.notification(acked)["ack_state"] == "unacked"
    assert stack.callback_records() == []

    # When the operator switches dry_run off and the schedule fires again
    status, _ = stack.call("PATCH", f"/ops/jobs/{job['job_id']}", body={"payload": {"dry_run": False}})
    assert status == 200
    summary = stack.run({"job_id": job["job_id"], "trigger": "schedule"})

    # Then the changes are applied through the callback recorder, with the run as their source
    assert summary["status"] == "succeeded", summary
    real = stack.runs(job["job_id"])[0]
    assert real["dry_run"] is False and real["counts"]["updated"] == 2 and "would_update" not in real["counts"]
    assert stack.notification(acked)["ack_state"] == "acknowledged"
    assert stack.notification(acked)["ack_source"] == "reconcile"
    assert "unacked_shard" not in stack.notification(acked)
    assert stack.notification(resolved)["ack_state"] == "resolved"
    assert stack.notification(open_)["ack_state"] == "unacked"
    records = {record["notification_id"]: record for record in stack.callback_records()}
    assert set(records) == {acked, resolved}
    assert records[acked]["source"] == "reconcile"
    assert (records[acked]["job_id"], records[acked]["run_id"]) == (job["job_id"], real["run_id"])
    assert records[acked]["ack_applied"] is True and records[acked]["raw_status"] == "acknowledged"
    assert {change["callback_id"] for change in real["changes"]} == {r["callback_id"] for r in records.values()}
    _, read = stack.call("GET", f"/ops/jobs/{job['job_id']}")
    assert read["last_run"]["run_id"] == real["run_id"] and read["running_run_id"] is None


def test_a_second_real_run_changes_nothing(stack):
    notification_id = stack.seed_notification(1)
    stack.remote(notification_id, "acknowledged")
    job = stack.register(dry_run=False)
    stack.run({"job_id": job["job_id"], "trigger": "schedule"})
    history = stack.callback_records()

    stack.run({"job_id": job["job_id"], "trigger": "schedule"})

    latest = stack.runs(job["job_id"])[0]
    assert latest["counts"]["updated"] == 0 and latest["counts"]["unchanged"] == 1
    assert latest["changes"] == []
    assert stack.callback_records() == history


def test_a_run_that_fails_halfway_records_what_it_did_and_the_next_run_finishes(stack):
    first, second, third = (stack.seed_notification(number) for number in (1, 2, 3))
    for order, notification_id in enumerate((first, second, third)):
        stack.remote(notification_id, "acknowledged", created_at=order)
    job = stack.register(dry_run=False)
    real_applier = stack.runner.runner.applier

    class FailsOnSecond:
        def apply(self, change, **kwargs):
            if change.notification_id == second:
                raise ConnectionError("DynamoDB endpoint unreachable")
            return real_applier.apply(change, **kwargs)

    # When a run's second change fails
    stack.runner.runner.applier = FailsOnSecond()
    summary = stack.run({"job_id": job["job_id"], "trigger": "schedule"})

    # Then the run is partial: what it applied, and what failed and why
    assert summary["status"] == "partial"
    run = stack.runs(job["job_id"])[0]
    assert run["counts"]["updated"] == 2 and run["counts"]["errors"] == 1
    outcomes = {change["notification_id"]: change["outcome"] for change in run["changes"]}
    assert outcomes == {first: "updated", second: "failed", third: "updated"}
    assert run["error_details"][0]["stage"] == "apply"
    assert run["error_details"][0]["notification_id"] == second
    assert "DynamoDB endpoint unreachable" in run["error_details"][0]["message"]
    assert stack.notification(second)["ack_state"] == "unacked"

    # When the next run runs with the recorder working again
    stack.runner.runner.applier = real_applier
    stack.run({"job_id": job["job_id"], "trigger": "schedule"})

    # Then it applies only what was left, and nothing is recorded twice
    latest = stack.runs(job["job_id"])[0]
    assert latest["status"] == "succeeded"
    assert [change["notification_id"] for change in latest["changes"]] == [second]
    assert {n: stack.notification(n)["ack_state"] for n in (first, second, third)} == dict.fromkeys(
        (first, second, third), "acknowledged"
    )
    assert len(stack.callback_records()) == 3


def test_applying_an_already_applied_change_again_changes_nothing(stack):
    notification_id = stack.seed_notification(1)
    stack.remote(notification_id, "acknowledged")
    job = stack.register(dry_run=False)
    stack.run({"job_id": job["job_id"], "trigger": "schedule"})
    run = stack.runs(job["job_id"])[0]

    # Given the same change handed to the recorder again (as after a crash between applying and recording it)
    change = Change(notification_id, "inc_01SEED", None, notification_id, "acknowledged", "unacked", "acknowledged")
    result = stack.runner.runner.applier.apply(
        change,
        provider="generic",
        job_id=job["job_id"],
        run_id=run["run_id"],
        received_at=datetime.now(UTC),
    )

    # Then it is recognized as the same event: nothing moves and the history keeps one record
    assert result == ApplyResult(
        applied=False, callback_id=result.callback_id, duplicate=True, ack_state_after="acknowledged"
    )
    assert len(stack.callback_records()) == 1


def test_a_page_that_cannot_be_fetched_stops_the_run_after_what_was_applied(stack):
    def app(environ, start_response):
        request = Request(environ)
        if request.args.get("offset") == "0":
            body = {
                "incidents": [stack.provider.incidents[key].as_json() for key in sorted(stack.provider.incidents)],
                "more": True,
            }
            return Response(json.dumps(body), content_type="application/json")(environ, start_response)
        return Response("upstream timeout", status=504)(environ, start_response)

    flaky = Server(app)
    try:
        stack.allow(flaky.hostport)
        notification_id = stack.seed_notification(1)
        stack.remote(notification_id, "resolved")
        job = stack.register(dry_run=False, endpoint=f"http://{flaky.hostport}/incidents")

        summary = stack.run({"job_id": job["job_id"], "trigger": "schedule"})
    finally:
        flaky.stop()

    assert summary["status"] == "partial"
    run = stack.runs(job["job_id"])[0]
    assert run["counts"]["updated"] == 1 and run["pages"] == 1
    assert run["error_details"] == [{"stage": "fetch", "message": "127.0.0.1 answered HTTP 504", "page": 2}]
    assert stack.notification(notification_id)["ack_state"] == "resolved"


def test_only_one_run_of_a_job_runs_at_a_time_and_an_abandoned_one_is_closed(stack):
    job = stack.register()
    _, first_run_id = stack.run_now(job["job_id"])
    first = stack.runs(job["job_id"])[0]
    assert first["status"] == "succeeded"

    # Given a run that took the lease and then died without finishing
    stack.jobs.update(
        {"pk": job["job_id"], "sk": "JOB"},
        *_lease(first["run_id"], f"RUN#{first['started_at']}#{first['run_id']}", "2999-01-01T00:00:00.000Z"),
    )
    stack.jobs.update({"pk": job["job_id"], "sk": f"RUN#{first['started_at']}#{first['run_id']}"}, *_status("running"))

    # When another run starts while that lease is live, Then it is skipped and says why
    summary = stack.run({"job_id": job["job_id"], "trigger": "schedule"})
    assert summary["status"] == "skipped" and first_run_id in summary["reason"]

    # When the lease has expired, Then the next run closes the abandoned one as failed and runs
    stack.jobs.update(
        {"pk": job["job_id"], "sk": "JOB"},
        *_lease(first["run_id"], f"RUN#{first['started_at']}#{first['run_id']}", "2000-01-01T00:00:00.000Z"),
    )
    summary = stack.run({"job_id": job["job_id"], "trigger": "schedule"})
    assert summary["status"] == "succeeded"
    by_id = {run["run_id"]: run for run in stack.runs(job["job_id"])}
    assert by_id[first_run_id]["status"] == "failed" and "lease expired" in by_id[first_run_id]["message"]


def _lease(run_id, sk, until):
    from connector_sla.storage.dynamo import Expression

    expr = Expression()
    return expr, expr.update(set_={"running_run_id": run_id, "running_run_sk": sk, "lease_expires_at": until})


def _status(status):
    from connector_sla.storage.dynamo import Expression

    expr = Expression()
    return expr, expr.update(set_={"status": status})


def test_a_manual_run_delivered_twice_runs_once(stack):
    job = stack.register()
    stack.run_now(job["job_id"])
    payload = stack.api.registry.invoker.payloads[-1]

    again = stack.run(payload)

    assert again["status"] == "skipped" and again["reason"] == "run_already_started"
    assert len(stack.runs(job["job_id"])) == 1


def test_a_paused_job_skips_its_schedule_but_can_be_run_by_hand(stack):
    job = stack.register()
    stack.call("POST", f"/ops/jobs/{job['job_id']}/pause")

    assert stack.run({"job_id": job["job_id"], "trigger": "schedule"})["reason"] == "job_paused"
    assert stack.runs(job["job_id"]) == []
    summary, _ = stack.run_now(job["job_id"])
    assert summary["status"] == "succeeded" and summary["trigger"] == "manual"


def test_a_manual_run_can_be_a_dry_run_of_a_real_job(stack):
    notification_id = stack.seed_notification(1)
    stack.remote(notification_id, "acknowledged")
    job = stack.register(dry_run=False)

    stack.run_now(job["job_id"], dry_run="true")

    run = stack.runs(job["job_id"])[0]
    assert run["dry_run"] is True and run["counts"]["would_update"] == 1
    assert stack.notification(notification_id)["ack_state"] == "unacked"


def test_runs_of_a_deleted_job_or_a_bad_request_do_nothing(stack):
    job = stack.register()
    stack.call("DELETE", f"/ops/jobs/{job['job_id']}")

    assert stack.run({"job_id": job["job_id"], "trigger": "schedule"})["reason"] == "job_not_found"
    assert stack.run({"nonsense": True})["status"] == "refused"
    assert stack.run({"job_id": job["job_id"], "trigger": "manual"})["status"] == "refused"


def test_a_file_endpoint_is_reconciled_from_the_allowed_directory(stack):
    notification_id = stack.seed_notification(1)
    page = {"data": [{"ref": notification_id, "state": "RESOLVED", "incident": "inc_01SEED"}]}
    Path(settings().reconcile_file_base_dir, "export.json").write_text(json.dumps(page))
    template = {
        "incidents": "data",
        "notification_id": "ref",
        "delivery_id": None,
        "incident_id": "incident",
        "status": "state",
        "remote_id": "ref",
        "status_map": {"RESOLVED": "resolved"},
    }
    job = stack.register(endpoint="file:export.json", mapping_template=template, dry_run=False)

    stack.run({"job_id": job["job_id"], "trigger": "schedule"})

    assert stack.runs(job["job_id"])[0]["counts"]["updated"] == 1
    assert stack.notification(notification_id)["ack_state"] == "resolved"


def test_the_providers_auth_header_comes_from_its_secret_and_is_sent(stack):
    seen = []

    def app(environ, start_response):
        seen.append(Request(environ).headers.get("X-Api-Key"))
        return Response('{"incidents": []}', content_type="application/json")(environ, start_response)

    peer = Server(app)
    try:
        stack.allow(peer.hostport)
        secret_id = f"{settings().provider_secrets_path}/generic"
        stack.aws.client("secretsmanager").put_secret_value(
            SecretId=secret_id, SecretString=json.dumps({"signing_secret": "x", "api_auth_header": "X-Api-Key: k-123"})
        )
        job = stack.register(endpoint=f"http://{peer.hostport}/incidents")
        stack.run({"job_id": job["job_id"], "trigger": "schedule"})
    finally:
        peer.stop()
    assert seen == ["k-123"]
    assert "k-123" not in json.dumps(stack.runs(job["job_id"])) + json.dumps(stack.call("GET", "/ops/jobs")[1])


def test_a_missing_secret_or_a_metadata_address_fails_the_run_with_the_reason(stack):
    from connector_sla.alerts.providers import ProviderConfig, ProviderStore

    ProviderStore(Table(stack.aws.name("SettingsTable"), stack.aws.client("dynamodb"))).put(ProviderConfig(name="acme"))
    no_secret = stack.register(provider="acme")
    stack.run({"job_id": no_secret["job_id"], "trigger": "schedule"})
    run = stack.runs(no_secret["job_id"])[0]
    assert run["status"] == "failed" and "cannot be read" in run["error_details"][0]["message"]

    # Given a public-looking name that resolves to the metadata address at run time
    stack.runner.runner.source.resolver = lambda host, port: ["169.254.169.254"]
    sneaky = stack.register(endpoint="https://incidents.example.com/api/incidents")
    stack.run({"job_id": sneaky["job_id"], "trigger": "schedule"})
    run = stack.runs(sneaky["job_id"])[0]
    assert run["status"] == "failed"
    assert run["error_details"][0]["stage"] == "fetch" and "169.254.169.254" in run["error_details"][0]["message"]


def test_incidents_the_template_cannot_read_are_errors_of_a_partial_run(stack):
    notification_id = stack.seed_notification(1)
    stack.remote(notification_id, "acknowledged")
    stack.provider.incidents["odd"] = FakeIncident("odd", "ntf_X", None, None, status="snoozed")
    job = stack.register()

    stack.run({"job_id": job["job_id"], "trigger": "schedule"})

    run = stack.runs(job["job_id"])[0]
    assert run["status"] == "partial" and run["counts"]["would_update"] == 1 and run["counts"]["errors"] == 1
    assert "'snoozed' is not in status_map" in run["error_details"][0]["message"]


def test_the_runner_sample_events_are_valid_run_requests(stack):
    from tests.support import load_event

    for name in ("job_runner_scheduled_run.json", "job_runner_manual_run.json"):
        # The sample job does not exist here: the runner recognizes the request and skips it without failing
        assert stack.run(load_event(name)) == {"status": "skipped", "reason": "job_not_found"}
