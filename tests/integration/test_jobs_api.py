"""The jobs API through its real handler on moto: registration, validation, schedules, pause, delete, runs."""

from __future__ import annotations

import json

import pytest

from connector_sla.config import settings
from tests.support import call_api

FN = "JobsApiFunction"


class RecordingInvoker:
    """Stands in for Lambda's asynchronous Invoke (moto cannot run the runner): keeps each payload."""

    def __init__(self, fail: bool = False):
        self.payloads = []
        self.fail = fail

    def start(self, payload):
        from connector_sla.jobs.triggers import TriggerFailed

        if self.fail:
            raise TriggerFailed("TooManyRequestsException: Rate exceeded")
        self.payloads.append(dict(payload))


@pytest.fixture
def api(aws, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "incidents.json").write_text(json.dumps({"incidents": []}))
    monkeypatch.setenv("RECONCILE_FILE_BASE_DIR", str(data))
    settings.cache_clear()
    handler = aws.load_handler(FN)
    handler.registry.invoker = RecordingInvoker()
    return aws, handler


def call(api, method, path, **kwargs):
    aws, handler = api
    return call_api(aws, handler, FN, method, path, **kwargs)


def reconcile_body(**payload):
    return {
        "job_type": "alert_oncall_reconcile",
        "schedule": "rate(15 minutes)",
        "payload": {
            "provider": "generic",
            "endpoint": "https://oncall.example.com/api/incidents",
            "mapping_template": {"status": "status", "status_map": {"ack": "acknowledged"}},
            "limit": 100,
            "dry_run": True,
            **payload,
        },
    }


def schedules(aws):
    client = aws.client("scheduler")
    return {item["Name"]: item for item in client.list_schedules(GroupName=settings().schedule_group)["Schedules"]}


def job_rows(aws):
    return list(aws.client("dynamodb").scan(TableName=aws.name("JobsTable"))["Items"])


def test_a_reconcile_job_is_registered_with_a_schedule_that_invokes_the_runner(api):
    aws, _ = api

    # When a reconcile job is registered
    status, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    # Then it is stored with its defaults filled in, and its Scheduler schedule targets the job runner
    assert status == 201, job
    assert job["job_id"].startswith("job_") and job["state"] == "active" and job["version"] == 1
    assert job["payload"]["mapping_template"]["next_page"]["style"] == "offset"
    assert job["created_by"] == "arn:aws:iam::123456789012:user/local-operator"
    detail = aws.client("scheduler").get_schedule(Name=job["job_id"], GroupName=settings().schedule_group)
    assert detail["ScheduleExpression"] == "rate(15 minutes)" and detail["State"] == "ENABLED"
    assert detail["Target"]["Arn"] == settings().job_runner_function_arn
    assert detail["Target"]["RoleArn"] == settings().scheduler_role_arn
    assert json.loads(detail["Target"]["Input"]) == {"job_id": job["job_id"], "trigger": "schedule"}
    status, read = call(api, "GET", f"/ops/jobs/{job['job_id']}")
    assert status == 200 and read == job


def test_the_sample_event_registers_a_job(api):
    aws, handler = api
    from tests.support import load_event

    response = handler.lambda_handler(load_event("jobs_api_create_reconcile_job.json"), aws.context(FN))

    assert response["statusCode"] == 201, response["body"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**reconcile_body(), "job_type": "alert_oncall_sync"}, "job_type 'alert_oncall_sync' is not known"),
        ({**reconcile_body(), "schedule": "rate(banana)"}, "schedule is invalid"),
        ({**reconcile_body(), "schedule": "cron(0 12 * * * *)"}, "exactly one of day-of-month and day-of-week"),
        ({**reconcile_body(), "schedule": "at(2020-01-01T00:00:00)"}, "never fires after now"),
        ({**reconcile_body(), "schedule": None}, "schedule is missing"),
        (reconcile_body(limit=0), "body.payload.limit"),
        (reconcile_body(dry_run="maybe"), "body.payload.dry_run"),
        (reconcile_body(provider="Bad Name"), "body.payload.provider"),
        (reconcile_body(provider="nobody"), "provider 'nobody' is not configured"),
        (reconcile_body(surprise=1), "body.payload.surprise"),
        (reconcile_body(mapping_template={"status": "status[?"}), "is not a valid JMESPath expression"),
        (reconcile_body(mapping_template={"status": "exec(status)"}), "unknown JMESPath function exec()"),
        (reconcile_body(mapping_template={"status_map": {"x": "done"}}), "body.payload.mapping_template.status_map"),
        (reconcile_body(endpoint="http://oncall.example.com/incidents"), "only https:// endpoints"),
        (reconcile_body(endpoint="https://169.254.169.254/latest/meta-data/"), "not a public address"),
        (reconcile_body(endpoint="file:../../etc/passwd"), "'..' is not allowed"),
        (reconcile_body(endpoint="file:///proc/self/environ"), "absolute path outside the allowed directory"),
    ],
)
def test_an_invalid_job_is_refused_with_the_reason_and_nothing_is_created(api, body, message):
    aws, _ = api

    status, answer = call(api, "POST", "/ops/jobs", body=body)

    assert status == 400, answer
    assert message in answer["message"] + json.dumps(answer.get("details", [])), answer
    assert job_rows(aws) == []
    assert schedules(aws) == {}


def test_a_file_endpoint_inside_the_allowed_directory_is_accepted(api):
    status, job = call(api, "POST", "/ops/jobs", body=reconcile_body(endpoint="file:incidents.json"))
    assert status == 201, job


def test_jobs_are_listed_newest_first_with_a_cursor(api):
    ids = [call(api, "POST", "/ops/jobs", body=reconcile_body())[1]["job_id"] for _ in range(3)]

    status, first = call(api, "GET", "/ops/jobs", query={"limit": "2"})
    _, second = call(api, "GET", "/ops/jobs", query={"limit": "2", "cursor": first["next_cursor"]})

    assert status == 200
    assert [item["job_id"] for item in first["items"] + second["items"]] == list(reversed(ids))
    assert call(api, "GET", "/ops/jobs", query={"colour": "red"})[0] == 400
    assert call(api, "GET", "/ops/jobs", query={"cursor": "bm9wZQ"})[0] == 400


def test_switching_dry_run_off_keeps_the_other_payload_fields(api):
    _, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    # When the runbook's step is taken: dry run off
    status, updated = call(api, "PATCH", f"/ops/jobs/{job['job_id']}", body={"payload": {"dry_run": False}})

    # Then only dry_run changed and the version moved on
    assert status == 200, updated
    assert updated["payload"] == {**job["payload"], "dry_run": False}
    assert updated["version"] == 2 and updated["schedule"] == job["schedule"]


def test_an_invalid_update_is_refused_and_changes_nothing(api):
    aws, _ = api
    _, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    cases = [
        ({"payload": {"endpoint": "https://10.0.0.1/incidents"}}, "not a public address"),
        ({"payload": {"mapping_template": {"incidents": "incidents[?"}}}, "not a valid JMESPath"),
        ({"schedule": "every day"}, "schedule is invalid"),
        ({}, "nothing to change"),
        ({"dry_run": False}, "body.dry_run"),
    ]
    for body, message in cases:
        status, answer = call(api, "PATCH", f"/ops/jobs/{job['job_id']}", body=body)
        assert status == 400 and message in answer["message"], (body, answer)

    assert call(api, "GET", f"/ops/jobs/{job['job_id']}")[1] == job
    assert schedules(aws)[job["job_id"]]["State"] == "ENABLED"
    expression = aws.client("scheduler").get_schedule(Name=job["job_id"], GroupName=settings().schedule_group)
    assert expression["ScheduleExpression"] == "rate(15 minutes)"


def test_a_new_schedule_reaches_the_scheduler(api):
    aws, _ = api
    _, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    status, updated = call(api, "PATCH", f"/ops/jobs/{job['job_id']}", body={"schedule": "cron(0/5 * * * ? *)"})

    assert status == 200 and updated["schedule"] == "cron(0/5 * * * ? *)"
    detail = aws.client("scheduler").get_schedule(Name=job["job_id"], GroupName=settings().schedule_group)
    assert detail["ScheduleExpression"] == "cron(0/5 * * * ? *)"


def test_pause_and_resume_switch_the_schedule_state(api):
    aws, _ = api
    _, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    status, paused = call(api, "POST", f"/ops/jobs/{job['job_id']}/pause")
    assert status == 200 and paused["state"] == "paused"
    assert schedules(aws)[job["job_id"]]["State"] == "DISABLED"
    assert call(api, "GET", "/ops/jobs", query={"state": "paused"})[1]["items"][0]["job_id"] == job["job_id"]

    status, resumed = call(api, "POST", f"/ops/jobs/{job['job_id']}/resume")
    assert status == 200 and resumed["state"] == "active"
    assert schedules(aws)[job["job_id"]]["State"] == "ENABLED"


def test_deleting_a_job_deletes_its_schedule(api):
    aws, _ = api
    _, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    status, answer = call(api, "DELETE", f"/ops/jobs/{job['job_id']}")

    assert status == 200 and answer == {"job_id": job["job_id"], "deleted": True}
    assert schedules(aws) == {}
    assert call(api, "GET", f"/ops/jobs/{job['job_id']}")[0] == 404
    assert call(api, "DELETE", f"/ops/jobs/{job['job_id']}")[0] == 404


def test_unknown_or_malformed_job_ids_are_not_found(api):
    for job_id in ("job_01JEXAMPLE0000000000000000", "x" * 3000, "job_..", "JOB"):
        status, answer = call(api, "GET", f"/ops/jobs/{job_id}")
        assert status == 404 and "does not exist" in answer["message"]
        assert len(answer["message"]) < 200


def test_a_run_started_on_demand_is_queued_and_the_runner_invoked(api):
    _, handler = api
    _, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    # When a run is started by hand
    status, started = call(api, "POST", f"/ops/jobs/{job['job_id']}/runs")

    # Then the answer is 202 with the run id, the runner is invoked asynchronously with it, and the run is listed
    assert status == 202, started
    assert started["status"] == "queued" and started["dry_run"] is True
    assert handler.registry.invoker.payloads == [
        {"job_id": job["job_id"], "trigger": "manual", "run_id": started["run_id"]}
    ]
    status, runs = call(api, "GET", f"/ops/jobs/{job['job_id']}/runs")
    assert status == 200
    assert [(run["run_id"], run["status"], run["trigger"]) for run in runs["items"]] == [
        (started["run_id"], "queued", "manual")
    ]


def test_a_run_can_override_dry_run_and_a_failed_invoke_is_recorded(api):
    _, handler = api
    _, job = call(api, "POST", "/ops/jobs", body=reconcile_body())

    assert call(api, "POST", f"/ops/jobs/{job['job_id']}/runs", query={"dry_run": "false"})[1]["dry_run"] is False

    handler.registry.invoker = RecordingInvoker(fail=True)
    status, answer = call(api, "POST", f"/ops/jobs/{job['job_id']}/runs")
    assert status == 503 and "could not be invoked" in answer["message"]
    _, runs = call(api, "GET", f"/ops/jobs/{job['job_id']}/runs", query={"status": "failed"})
    assert len(runs["items"]) == 1 and runs["items"][0]["message"].startswith("not started")


def test_runs_of_an_unknown_job_are_not_found(api):
    assert call(api, "GET", "/ops/jobs/job_01JEXAMPLE0000000000000000/runs")[0] == 404
    assert call(api, "POST", "/ops/jobs/job_01JEXAMPLE0000000000000000/runs")[0] == 404
