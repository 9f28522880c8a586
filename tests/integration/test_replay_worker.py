"""Replay jobs end to end on moto: the API starts a job, the real worker handler runs it against the real target.

The worker runs with batches of 4 rows and filter pages of 10 (see the ``bench`` fixture), so a handful of rows
exercises several batches and pages.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from connector_sla.storage.aws import client
from tests.integration.test_replay_api import CONNECTOR, Bench, assert_never_lost, bench_fixture, patch

__all__ = ["bench_fixture"]  # the ``bench`` fixture, shared with the API tests


def start(bench: Bench, **body: Any) -> str:
    status, job = bench.replay(**body)
    assert status == 202, job
    assert bench.launcher.launched[-1] == job["replay_id"]
    return job["replay_id"]


def published_ids(messages: list[dict[str, Any]]) -> Counter[str]:
    return Counter(message["failure_id"] for message in messages)


def fail_again(bench: Bench, replay_key: str, **extra: Any) -> tuple[int, Any]:
    body = {
        "connector_id": CONNECTOR,
        "source_id": "pg-primary",
        "error_kind": "mapping",
        "error_message": "consumer could not map amount",
        "replay_key": replay_key,
        **extra,
    }
    return bench.call("POST", "/events/connectors/failures", body=body)


# ------------------------------------------------------------------------------------------------ a full replay


def test_selected_rows_are_published_once_each_marked_replayed_and_counted(bench):
    # Given six dead rows, one of them patched
    bench.put_connector()
    ids = [bench.report(payload={"order_id": f"A-{n}", "amount": "1,00"})["failure_id"] for n in range(6)]
    assert patch(bench, ids[0], [{"op": "replace", "path": "/amount", "value": 1.0}])[0] == 200

    # When a replay of all six runs (two batches)
    replay_id = start(bench, failure_ids=ids)
    summary = bench.run_worker(replay_id)

    # Then each row reached the queue exactly once, with its replay key and its current payload
    messages = bench.drain_queue()
    assert published_ids(messages) == Counter(ids)
    first = next(message for message in messages if message["failure_id"] == ids[0])
    assert first["replay_key"] == f"{ids[0]}:1" and first["replay_id"] == replay_id
    assert first["payload"] == {"order_id": "A-0", "amount": 1.0}

    # And every row is replayed with its history, the counters moved, and the job says it is done
    for failure_id in ids:
        row = bench.row(failure_id)
        assert row["status"] == "replayed" and row["replay_target"] == bench.aws.arn("ReplayQueue")
        assert row["history"][-2:][0]["event"] == "replay_started" and row["history"][-1]["event"] == "replayed"
    assert bench.counters() == {"dead_letter_total": 6, "pending_replay": 0, "replayed_total": 6}
    job = bench.job(replay_id)
    assert job["status"] == "succeeded" and job["phase"] == "done" and job["resumable"] is False
    assert job["progress"] == {
        "examined": 6,
        "published": 6,
        "replayed": 6,
        "skipped": 0,
        "failed_again": 0,
        "total": 6,
        "percent": 100,
    }
    assert summary["status"] == "succeeded" and summary["batches"] == 2
    assert_never_lost(bench, ids)


def test_a_replay_to_an_eventbridge_bus_carries_the_replay_key_in_the_detail(bench):
    # Given a connector whose replay target is the replay bus, and a rule that copies the bus to a queue
    bench.put_connector(target="eventbridge")
    sqs, events = bench.aws.client("sqs"), bench.aws.client("events")
    capture = sqs.create_queue(QueueName="replay-capture")["QueueUrl"]
    capture_arn = sqs.get_queue_attributes(QueueUrl=capture, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = bench.aws.name("ReplayBus")
    events.put_rule(Name="capture", EventBusName=bus, EventPattern=json.dumps({"source": ["connector-sla.replay"]}))
    events.put_targets(Rule="capture", EventBusName=bus, Targets=[{"Id": "q", "Arn": capture_arn}])
    ids = [bench.report()["failure_id"] for _ in range(3)]

    # When they are replayed
    bench.run_worker(start(bench, failure_ids=ids))

    # Then the bus received one event per row, detail-type connector_failure_replay, keyed by replay_key
    received = []
    while batch := sqs.receive_message(QueueUrl=capture, MaxNumberOfMessages=10).get("Messages", []):
        received += [json.loads(message["Body"]) for message in batch]
    assert {event["detail-type"] for event in received} == {"connector_failure_replay"}
    assert sorted(event["detail"]["replay_key"] for event in received) == sorted(f"{i}:1" for i in ids)


def test_rows_already_replayed_are_skipped_with_a_reason(bench):
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(2)]
    bench.run_worker(start(bench, failure_ids=ids[:1]))
    bench.drain_queue()

    replay_id = start(bench, failure_ids=ids)
    bench.run_worker(replay_id)

    assert published_ids(bench.drain_queue()) == Counter(ids[1:])
    job = bench.job(replay_id)
    assert job["progress"]["skipped"] == 1
    (skipped,) = job["skipped"]
    assert skipped["failure_id"] == ids[0] and skipped["reason"] == "already_replayed"
    assert bench.counters()["replayed_total"] == 2


def test_a_filter_replay_pages_through_the_connectors_rows_and_ignores_rows_failing_after_it_started(bench):
    # Given 23 parse rows and 2 mapping rows
    bench.put_connector()
    parse_rows = [bench.report()["failure_id"] for _ in range(23)]
    mapping_rows = [bench.report(error_kind="mapping")["failure_id"] for _ in range(2)]

    # When a filter replay of parse rows is requested, and another parse row fails before the worker runs
    replay_id = start(bench, filter={"error_kind": "parse"})
    late = bench.report()["failure_id"]
    bench.run_worker(replay_id)

    # Then exactly the 23 parse rows known at the request were replayed, once each, oldest first
    messages = bench.drain_queue()
    assert [message["failure_id"] for message in messages] == parse_rows
    assert {bench.row(failure_id)["status"] for failure_id in [*mapping_rows, late]} == {"dead"}
    assert bench.job(replay_id)["progress"]["replayed"] == 23


# ------------------------------------------------------------------------------------------------ failing again


def test_a_replayed_row_that_fails_again_is_dead_again_with_retry_count_plus_one_and_its_history(bench):
    # Given a replayed row
    bench.put_connector()
    failure_id = bench.report(retry_count=3)["failure_id"]
    replay_id = start(bench, failure_ids=[failure_id])
    bench.run_worker(replay_id)
    (message,) = bench.drain_queue()

    # When its consumer reports that it failed again, naming the replay key it received
    status, response = fail_again(bench, message["replay_key"])

    # Then the row is dead again, retry count 4, error updated, history kept, and the counters say so
    assert status == 200 and response["outcome"] == "failed_again"
    row = response["failure"]
    assert row["status"] == "dead" and row["retry_count"] == 4 and row["error_kind"] == "mapping"
    assert [item["event"] for item in row["history"]] == ["reported", "replay_started", "replayed", "failed_again"]
    assert bench.counters() == {"dead_letter_total": 2, "pending_replay": 1, "replayed_total": 1}
    assert bench.job(replay_id)["progress"]["failed_again"] == 1

    # And a retried report changes nothing
    status, response = fail_again(bench, message["replay_key"])
    assert status == 200 and response["outcome"] == "duplicate"
    assert bench.counters() == {"dead_letter_total": 2, "pending_replay": 1, "replayed_total": 1}

    # And once patched, it can be replayed again as attempt 2
    assert patch(bench, failure_id, [{"op": "replace", "path": "/amount", "value": 12.5}])[0] == 200
    bench.run_worker(start(bench, failure_ids=[failure_id]))
    (again,) = bench.drain_queue()
    assert again["replay_key"] == f"{failure_id}:2" and again["payload"]["amount"] == 12.5
    assert_never_lost(bench, [failure_id])


@pytest.mark.parametrize(
    ("make_key", "status", "fragment"),
    [
        (lambda failure_id: f"{failure_id}:1", 409, "only a replayed row can fail again"),
        (lambda failure_id: "flr_01JEXAMPLE0000000000000000:1", 404, "does not exist"),
    ],
)
def test_a_failed_again_report_for_a_row_never_replayed_is_refused(bench, make_key, status, fragment):
    bench.put_connector()
    failure_id = bench.report()["failure_id"]
    got, response = fail_again(bench, make_key(failure_id))
    assert got == status and fragment in response["message"]
    assert bench.counters()["dead_letter_total"] == 1


# ------------------------------------------------------------------------------------------------ canary


def test_a_canary_that_fails_again_stops_the_replay_and_leaves_the_other_rows_dead(bench):
    # Given six rows and a replay whose canary is the first two, watched for 30 seconds
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(6)]
    replay_id = start(bench, failure_ids=ids, canary={"rows": 2, "wait_seconds": 30})

    # When the consumer reports the first canary row failed again while the worker waits
    def consumer_fails_first_canary() -> None:
        if bench.row(ids[0])["status"] == "replayed":
            assert fail_again(bench, f"{ids[0]}:1")[0] == 200

    bench.clock.on_sleep.append(consumer_fails_first_canary)
    summary = bench.run_worker(replay_id)

    # Then only the two canary rows were published, the job stopped as canary_failed naming the row
    assert published_ids(bench.drain_queue()) == Counter(ids[:2])
    job = bench.job(replay_id)
    assert summary["status"] == job["status"] == "canary_failed"
    assert job["canary"]["outcome"] == "failed" and job["canary"]["failed_ids"] == [ids[0]]
    assert [bench.row(failure_id)["status"] for failure_id in ids] == ["dead", "replayed", *["dead"] * 4]
    assert bench.counters()["pending_replay"] == 5
    assert_never_lost(bench, ids)


def test_a_canary_that_holds_for_its_wait_lets_the_replay_go_on(bench):
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(6)]
    replay_id = start(bench, failure_ids=ids, canary={"rows": 2, "wait_seconds": 30})

    bench.run_worker(replay_id)

    assert published_ids(bench.drain_queue()) == Counter(ids)
    job = bench.job(replay_id)
    assert job["status"] == "succeeded" and job["canary"]["outcome"] == "passed"
    assert bench.clock.slept >= 30


# ------------------------------------------------------------------------------------------------ interruptions


class ThrottlingSqs:
    """The real (moto) SQS client, except that entries of ``throttled`` rows are refused as a throttle."""

    def __init__(self, real: Any, throttled: set[str]) -> None:
        self.real = real
        self.throttled = throttled
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        allowed = [entry for entry in Entries if entry["Id"] not in self.throttled]
        refused = [entry for entry in Entries if entry["Id"] in self.throttled]
        response = self.real.send_message_batch(QueueUrl=QueueUrl, Entries=allowed) if allowed else {}
        failed = [{"Id": entry["Id"], "Code": "RequestThrottled", "SenderFault": False} for entry in refused]
        return {"Successful": response.get("Successful", []), "Failed": failed}


def test_a_throttled_replay_stops_cleanly_and_resumes_without_publishing_any_row_twice(bench):
    # Given seven rows and a target that throttles two of them every time
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(7)]
    publishers = bench.worker.worker.publishers
    throttling = ThrottlingSqs(publishers.sqs, {ids[5], ids[6]})
    publishers.sqs = throttling
    replay_id = start(bench, failure_ids=ids)

    # When the replay runs
    summary = bench.run_worker(replay_id)

    # Then it retried with backoff, then stopped as interrupted (throttled) with the two rows still replaying
    assert summary["status"] == "interrupted" and summary["interrupted_reason"] == "throttled"
    assert bench.clock.slept > 0
    job = bench.job(replay_id)
    assert job["status"] == "interrupted" and job["resumable"] is True and "RequestThrottled" in job["last_error"]
    assert [bench.row(failure_id)["status"] for failure_id in ids] == ["replayed"] * 5 + ["replaying"] * 2
    assert bench.counters()["pending_replay"] == 2
    assert_never_lost(bench, ids)

    # When the throttle is over and the replay is resumed through the API
    throttling.throttled.clear()
    status, resumed = bench.call("POST", f"/events/connectors/replays/{replay_id}/resume")
    assert status == 202 and resumed["status"] == "queued" and bench.launcher.launched[-1] == replay_id
    bench.run_worker(replay_id)

    # Then the two rows are published with their original keys, and no row reached the queue twice
    messages = bench.drain_queue()
    assert published_ids(messages) == Counter(ids)
    assert {message["replay_key"] for message in messages} == {f"{failure_id}:1" for failure_id in ids}
    assert bench.job(replay_id)["status"] == "succeeded"
    assert bench.counters() == {"dead_letter_total": 7, "pending_replay": 0, "replayed_total": 7}


def test_a_replay_short_of_time_saves_its_place_starts_its_continuation_and_goes_on_without_repeats(bench):
    # Given ten rows (three batches)
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(10)]
    replay_id = start(bench, failure_ids=ids)

    # When the invocation has time for one batch only (calls: the lease, batch 1, then the check before batch 2)
    summary = bench.run_worker(replay_id, remaining=[900_000, 900_000, 1_000])

    # Then it stopped before the second batch, and started its own continuation
    assert summary["status"] == "interrupted" and summary["interrupted_reason"] == "timeout"
    assert bench.worker_launcher.launched == [replay_id]
    progress = bench.job(replay_id)["progress"]
    assert progress["examined"] == 4 and progress["total"] == 10 and progress["percent"] == 40

    # When the continuation runs
    bench.run_worker(replay_id)

    # Then all rows were published exactly once and the job finished
    assert published_ids(bench.drain_queue()) == Counter(ids)
    assert bench.job(replay_id)["status"] == "succeeded"
    assert bench.counters()["replayed_total"] == 10


def test_a_crash_between_publishing_and_recording_republishes_with_the_same_replay_key(bench):
    # Given a replay whose first attempt to record a batch crashes after the rows were published
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(3)]
    store = bench.worker.worker.store
    real_record = store.record_replayed

    def crash_once(*args: Any, **kwargs: Any) -> Any:
        store.record_replayed = real_record
        raise RuntimeError("worker crashed")

    store.record_replayed = crash_once
    sent: Counter[str] = Counter()
    client("sqs").meta.events.register(
        "before-parameter-build.sqs.SendMessageBatch",
        lambda params, **_: sent.update(entry["MessageDeduplicationId"] for entry in params["Entries"]),
    )
    replay_id = start(bench, failure_ids=ids)
    with pytest.raises(RuntimeError, match="worker crashed"):
        bench.run_worker(replay_id)
    assert bench.job(replay_id)["interrupted_reason"] == "error"
    assert {bench.row(failure_id)["status"] for failure_id in ids} == {"replaying"}

    # When the replay is resumed
    assert bench.call("POST", f"/events/connectors/replays/{replay_id}/resume")[0] == 202
    bench.run_worker(replay_id)

    # Then the unrecorded rows went out again with the same replay key, which the FIFO replay queue takes as its
    # deduplication id: each row reached the queue's consumer once, and is recorded and counted once
    messages = bench.drain_queue()
    keys = Counter(message["replay_key"] for message in messages)
    assert keys == Counter({f"{failure_id}:1": 1 for failure_id in ids})
    assert sent == Counter({f"{failure_id}-1": 2 for failure_id in ids})  # each row published twice
    assert bench.counters() == {"dead_letter_total": 3, "pending_replay": 0, "replayed_total": 3}
    assert_never_lost(bench, ids)


def test_a_job_held_by_a_live_worker_is_not_run_twice(bench):
    bench.put_connector()
    failure_id = bench.report()["failure_id"]
    replay_id = start(bench, failure_ids=[failure_id])
    jobs = bench.table("JobsTable")
    job = jobs.get({"pk": replay_id, "sk": "REPLAY"})
    lease = (bench.clock.now().replace(year=bench.clock.now().year + 1)).isoformat().replace("+00:00", "Z")
    jobs.put({**job, "status": "running", "lease_owner": "other-worker", "lease_until": lease})

    summary = bench.run_worker(replay_id)

    assert summary["status"] == "running" and summary.get("published", 0) == 0
    assert bench.drain_queue() == []
    status, response = bench.call("POST", f"/events/connectors/replays/{replay_id}/resume")
    assert status == 409 and "is running" in response["message"]


def test_a_target_removed_from_the_allowed_list_stops_the_job_before_anything_is_claimed(bench):
    bench.put_connector()
    failure_id = bench.report()["failure_id"]
    replay_id = start(bench, failure_ids=[failure_id])
    bench.worker.worker.allowed_targets = ()

    summary = bench.run_worker(replay_id)

    assert summary["interrupted_reason"] == "target_not_allowed"
    assert "is not an allowed replay target" in bench.job(replay_id)["last_error"]
    assert bench.row(failure_id)["status"] == "dead" and bench.drain_queue() == []


# ------------------------------------------------------------------------------------------------ audit additions


class ConsumerFailingAtOnce:
    """The real (moto) SQS client; right after ``row`` is sent, its consumer reports that it failed again."""

    def __init__(self, real: Any, bench: Bench, row: str) -> None:
        self.real = real
        self.bench = bench
        self.row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        response = self.real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
        if any(entry["Id"] == self.row for entry in Entries):
            status, answer = fail_again(self.bench, f"{self.row}:1")
            assert status == 200 and answer["outcome"] == "failed_again", answer
        return response


def test_a_row_that_fails_again_before_the_worker_records_it_stays_dead_and_is_counted_once(bench):
    # Given three rows, and a consumer that fails the second one the moment it receives it
    bench.put_connector()
    ids = [bench.report(retry_count=1)["failure_id"] for _ in range(3)]
    publishers = bench.worker.worker.publishers
    publishers.sqs = ConsumerFailingAtOnce(publishers.sqs, bench, ids[1])

    # When the replay runs
    replay_id = start(bench, failure_ids=ids)
    summary = bench.run_worker(replay_id)

    # Then the worker did not overwrite the failure: that row is dead, retry count 2, its history in order
    row = bench.row(ids[1])
    assert row["status"] == "dead" and int(row["retry_count"]) == 2
    assert [item["event"] for item in row["history"]] == ["reported", "replay_started", "failed_again"]
    assert [bench.row(failure_id)["status"] for failure_id in (ids[0], ids[2])] == ["replayed", "replayed"]

    # And the counters and the job count it once, as failed again and not as replayed
    assert bench.counters() == {"dead_letter_total": 4, "pending_replay": 1, "replayed_total": 2}
    progress = bench.job(replay_id)["progress"]
    assert progress["published"] == 3 and progress["replayed"] == 2 and progress["failed_again"] == 1
    assert summary["status"] == "succeeded" and summary["replayed"] == 2
    assert_never_lost(bench, ids)


def test_a_consumer_may_report_a_failure_again_by_failure_id_alone(bench):
    # Given a replayed row
    bench.put_connector()
    failure_id = bench.report(retry_count=0)["failure_id"]
    bench.run_worker(start(bench, failure_ids=[failure_id]))

    # When its consumer reports the failure naming only the failure id
    status, response = bench.call(
        "POST",
        "/events/connectors/failures",
        body={
            "connector_id": CONNECTOR,
            "source_id": "pg-replica",
            "error_kind": "upstream",
            "error_message": "downstream API answered 503",
            "failure_id": failure_id,
            "retry_count": 5,
        },
    )

    # Then it is the failure of the latest replay: dead, retry count 1, what the consumer said kept in the history
    assert status == 200 and response["outcome"] == "failed_again"
    row = response["failure"]
    assert row["status"] == "dead" and row["retry_count"] == 1 and row["error_kind"] == "upstream"
    assert row["last_failed_replay_key"] == f"{failure_id}:1"
    last = row["history"][-1]
    assert last["event"] == "failed_again" and last["source_id"] == "pg-replica"
    assert last["reported_retry_count"] == 5 and last["replay_key"] == f"{failure_id}:1"


def test_a_filter_replay_short_of_time_goes_on_from_its_saved_place_without_repeats(bench):
    # Given eleven rows (pages of 10, batches of 4)
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(11)]
    replay_id = start(bench, filter={})

    # When the first invocation has time for two batches (calls: the lease, batch 1, batch 2, the check before 3)
    summary = bench.run_worker(replay_id, remaining=[900_000, 900_000, 900_000, 1_000])

    # Then eight rows are replayed and the job shows it while it waits for its continuation
    assert summary["status"] == "interrupted" and summary["interrupted_reason"] == "timeout"
    job = bench.job(replay_id)
    assert job["status"] == "interrupted" and job["progress"]["examined"] == 8 and job["progress"]["replayed"] == 8
    assert [bench.row(failure_id)["status"] for failure_id in ids] == ["replayed"] * 8 + ["dead"] * 3

    # When the continuation runs
    bench.run_worker(replay_id)

    # Then every row went out exactly once, oldest first
    assert [message["failure_id"] for message in bench.drain_queue()] == ids
    assert bench.job(replay_id)["status"] == "succeeded"
    assert bench.counters() == {"dead_letter_total": 11, "pending_replay": 0, "replayed_total": 11}


class WorkerKilled(BaseException):
    """The runtime ending the invocation (hard timeout, out of memory): no handler code runs after it."""


class KilledBeforeSending:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.kills = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        if self.kills:
            self.kills -= 1
            raise WorkerKilled()
        return self.real.send_message_batch(**kwargs)


def test_a_worker_killed_mid_batch_leaves_its_rows_replaying_and_a_resume_publishes_each_once(bench):
    # Given five rows, and a worker that is killed after claiming its first batch, before sending it
    bench.put_connector()
    ids = [bench.report()["failure_id"] for _ in range(5)]
    publishers = bench.worker.worker.publishers
    publishers.sqs = KilledBeforeSending(publishers.sqs)
    replay_id = start(bench, failure_ids=ids)
    with pytest.raises(WorkerKilled):
        bench.run_worker(replay_id)

    # Then no row is lost: the claimed batch is replaying (with its history), the rest dead, nothing sent
    assert [bench.row(failure_id)["status"] for failure_id in ids] == ["replaying"] * 4 + ["dead"]
    assert_never_lost(bench, ids)
    assert bench.drain_queue() == []

    # And while the dead worker's lease runs, the job cannot be resumed
    job = bench.job(replay_id)
    assert job["status"] == "running" and job["resumable"] is False
    assert bench.call("POST", f"/events/connectors/replays/{replay_id}/resume")[0] == 409

    # When the lease has run out and the job is resumed
    jobs = bench.table("JobsTable")
    stored = jobs.get({"pk": replay_id, "sk": "REPLAY"}, consistent=True)
    jobs.put({**stored, "lease_until": "2000-01-01T00:00:00.000Z"})
    assert bench.job(replay_id)["resumable"] is True
    assert bench.call("POST", f"/events/connectors/replays/{replay_id}/resume")[0] == 202
    bench.run_worker(replay_id)

    # Then every row was published exactly once, with attempt 1's key, and the counters are exact
    messages = bench.drain_queue()
    assert Counter(message["replay_key"] for message in messages) == Counter(f"{i}:1" for i in ids)
    assert bench.job(replay_id)["status"] == "succeeded"
    assert bench.counters() == {"dead_letter_total": 5, "pending_replay": 0, "replayed_total": 5}
    assert_never_lost(bench, ids)
