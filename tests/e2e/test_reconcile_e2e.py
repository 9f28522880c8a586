"""The reconcile job end to end in the local stack: register against the fake provider, dry run, then real run."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from connector_sla.storage.dynamo import Table
from devstack.fake_provider import FakeIncident
from devstack.stack import LocalStack
from tests.e2e.support import stack_options
from tests.support import unacked_page

pytestmark = pytest.mark.e2e

NOTIFICATION_ID = "ntf_01E2ERECONCILE000000000000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = stack_options(tmp_path_factory.mktemp("devstack"), speed=60)
    local = LocalStack(options, log=lambda _: None)
    local.start()
    local.wait_until_ready()
    yield local
    local.stop()


def request(stack, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(
        f"{stack.api_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(call, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for_run(stack, job_id: str, wanted, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        _, page = request(stack, "GET", f"/ops/jobs/{job_id}/runs?limit=50")
        runs = page["items"]
        found = next((run for run in runs if wanted(run)), None)
        if found is not None:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no matching run within {timeout:.0f} s; runs: {json.dumps(runs)[:2000]}")


def test_a_newcomer_registers_a_reconcile_job_sees_the_dry_run_then_switches_it_off(stack):
    # Given a notification the service still thinks is unacked, and the fake provider holding it as acknowledged
    notifications = Table(stack.template.attribute("NotificationsTable", "Ref"), stack.client("dynamodb"))
    notifications.put(
        unacked_page(NOTIFICATION_ID, incident_id="inc_01E2E", connector_id="orders-eu", at="2026-12-03T10:00:00.000Z")
    )
    assert stack.provider is not None
    stack.provider.incidents[NOTIFICATION_ID] = FakeIncident(
        NOTIFICATION_ID, NOTIFICATION_ID, f"dlv_{NOTIFICATION_ID[4:]}_1", "inc_01E2E", status="acknowledged"
    )

    # When a reconcile job is registered against the fake provider with a fast schedule, dry run first
    status, job = request(
        stack,
        "POST",
        "/ops/jobs",
        {
            "job_type": "alert_oncall_reconcile",
            "schedule": "rate(1 minute)",
            "payload": {
                "provider": "generic",
                "endpoint": f"http://127.0.0.1:{stack.options.provider_port}/incidents",
                "mapping_template": {},
                "limit": 50,
                "dry_run": True,
            },
        },
    )
    assert status == 201, job

    # Then a scheduled dry run reports the change it would make, and changes nothing
    dry = wait_for_run(stack, job["job_id"], lambda run: run["dry_run"] and run["status"] == "succeeded")
    assert dry["trigger"] == "schedule"
    assert dry["counts"]["would_update"] == 1
    assert dry["changes"][0]["notification_id"] == NOTIFICATION_ID
    assert notifications.get({"notification_id": NOTIFICATION_ID})["ack_state"] == "unacked"

    # When dry_run is switched off
    status, updated = request(stack, "PATCH", f"/ops/jobs/{job['job_id']}", {"payload": {"dry_run": False}})
    assert status == 200 and updated["payload"]["dry_run"] is False, updated

    # Then a real run applies it, and the callback history shows the reconcile run as its source
    real = wait_for_run(stack, job["job_id"], lambda run: not run["dry_run"] and run["counts"].get("updated") == 1)
    assert real["status"] == "succeeded"
    assert notifications.get({"notification_id": NOTIFICATION_ID})["ack_state"] == "acknowledged"
    callbacks = Table(stack.template.attribute("CallbacksTable", "Ref"), stack.client("dynamodb"))
    records = [item for page in callbacks.scan_pages() for item in page]
    assert [(r["source"], r["job_id"], r["run_id"]) for r in records] == [("reconcile", job["job_id"], real["run_id"])]

    # And with the job paused, a run started by hand goes through the runner too
    status, paused = request(stack, "POST", f"/ops/jobs/{job['job_id']}/pause")
    assert status == 200 and paused["state"] == "paused"
    status, started = request(stack, "POST", f"/ops/jobs/{job['job_id']}/runs")
    assert status == 202, started
    manual = wait_for_run(
        stack, job["job_id"], lambda run: run["run_id"] == started["run_id"] and run["status"] == "succeeded"
    )
    assert manual["trigger"] == "manual" and manual["counts"]["updated"] == 0

    status, _ = request(stack, "DELETE", f"/ops/jobs/{job['job_id']}")
    assert status == 200
