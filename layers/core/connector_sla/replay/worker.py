"""The replay worker: runs one replay job in batches; resumable, and it never publishes a recorded row twice.

Each batch (up to 50 rows):

1. reads the next selected rows (by id, or the next page of the filter, oldest failure first);
2. decides each row (:func:`~connector_sla.replay.rules.replay_decision`): skip with a reason, replay, or
   resume (claimed by this job in an earlier run but not recorded);
3. claims the rows to replay in one transaction (dead|patched -> replaying, with their replay key), guarded by
   the job's lease so that only the worker holding the job claims;
4. publishes claimed and resumed rows to the connector's replay target, retrying refused entries with backoff;
5. records the published rows replayed, the connector's counters and the job's progress in one transaction.

Before each batch the worker checks the time the invocation has left; short of time it saves where it stopped,
and starts itself again to go on. Entries the target keeps refusing (a throttle) stop the job as
``interrupted``; ``POST /events/connectors/replays/{replay_id}/resume`` goes on from there.

A timeout or a throttle never republishes a row: claims are recorded before publishing and publishes before the
next claim. Only a crash between steps 4 and 5 leaves published rows unrecorded; the resumed job publishes them
again with the same ``replay_key``, which a FIFO queue (the stack's ReplayQueue) takes as its deduplication id.

# Limitation: after a crash between steps 4 and 5, an EventBridge target, a standard SQS queue, or a FIFO queue
# resumed more than five minutes later receives those rows twice; their consumers drop the repeat by replay_key.
# No publisher API lets a publish and a DynamoDB write commit together, so this window cannot be closed here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from connector_sla.config import settings
from connector_sla.errors import ValidationFailed
from connector_sla.replay.rules import (
    REPLAY_ID_PATTERN,
    ReplayTarget,
    claim_fields,
    lease_is_free,
    replay_decision,
    replay_message_body,
    replayed_fields,
    resolve_target,
)
from connector_sla.replay.store import (
    ConnectorConfigs,
    EventBridgePublisher,
    FailureStore,
    LeaseLost,
    OutgoingMessage,
    Publishers,
    ReplayJobs,
    RowChange,
    SqsPublisher,
    WorkerLauncher,
)
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Item, Table
from connector_sla.timeutil import parse_iso, to_iso, utcnow

logger = Logger(child=True)

MAX_SKIPPED_SAMPLES = 100
_THROTTLE_CODES = ("Throttl", "LimitExceeded", "TooManyRequests", "RequestLimit")


class InvocationContext(Protocol):
    """The part of Lambda's context object the worker uses."""

    aws_request_id: str
    invoked_function_arn: str

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass
class RunSummary:
    """What one invocation did (the handler turns it into metrics)."""

    replay_id: str
    status: str
    batches: int = 0
    published: int = 0
    replayed: int = 0
    skipped: int = 0
    publish_failures: int = 0
    interrupted_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}


@dataclass(frozen=True)
class WorkerSettings:
    batch_size: int = 50
    page_size: int = 500
    margin_ms: int = 60_000
    canary_poll_seconds: float = 5.0
    publish_attempts: int = 4
    backoff_seconds: float = 0.25


@dataclass
class _Batch:
    failure_ids: list[str]
    rows: dict[str, Item]
    position: dict[str, Any]


class ReplayWorker:
    """Runs replay jobs over the stores, publishers and launcher handed in; ``now`` and ``sleep`` are injectable."""

    def __init__(
        self,
        store: FailureStore,
        configs: ConnectorConfigs,
        jobs: ReplayJobs,
        publishers: Publishers,
        launcher_for: Callable[[str], WorkerLauncher],
        allowed_targets: tuple[str, ...],
        *,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        tuning: WorkerSettings | None = None,
    ) -> None:
        self.store = store
        self.configs = configs
        self.jobs = jobs
        self.publishers = publishers
        self.launcher_for = launcher_for
        self.allowed_targets = allowed_targets
        self.now = now
        self.sleep = sleep
        self.tuning = tuning or WorkerSettings()

    @classmethod
    def from_settings(cls) -> ReplayWorker:
        """The worker over the deployment's tables and targets (clients created once, reused while warm)."""
        config = settings()
        dynamodb = client("dynamodb")
        failures = Table(config.failures_table, dynamodb)
        connectors = Table(config.connectors_table, dynamodb)
        jobs = Table(config.jobs_table, dynamodb)
        lambda_client = client("lambda")
        return cls(
            FailureStore(failures, connectors, jobs),
            ConnectorConfigs(connectors),
            ReplayJobs(jobs),
            Publishers(client("events"), client("sqs")),
            lambda name: WorkerLauncher(lambda_client, name),
            config.replay_target_arns,
        )

    def run(
        self,
        replay_id: object,
        context: InvocationContext,
        *,
        on_job: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> RunSummary:
        """Run (or go on with) the replay job until it finishes, stops, or the invocation runs short of time.

        ``on_job`` sees the job once this worker holds it (the handler attaches its ids to the log there).
        """
        if not isinstance(replay_id, str) or not re.fullmatch(REPLAY_ID_PATTERN, replay_id):
            logger.error("replay event refused", reason="replay_id missing or malformed")
            return RunSummary(replay_id=str(replay_id), status="invalid")
        job = self.jobs.get(replay_id)
        if job is None:
            logger.error("replay job missing")
            return RunSummary(replay_id=replay_id, status="missing")
        now = self.now()
        if not lease_is_free(job, now):
            logger.info("replay job not taken", status=job.get("status"))
            return RunSummary(replay_id=replay_id, status=str(job.get("status")))
        lease_until = now + timedelta(milliseconds=context.get_remaining_time_in_millis() + 5_000)
        owner = context.aws_request_id
        taken = self.jobs.acquire(replay_id, owner=owner, lease_until=lease_until, now=now)
        if taken is None:
            logger.info("replay job taken by another worker")
            return RunSummary(replay_id=replay_id, status="busy")
        if on_job is not None:
            on_job(taken)
        return _JobRun(self, taken, owner, context).execute()


class _JobRun:
    """One invocation's run of one job; it holds the job's lease for its whole life."""

    def __init__(self, worker: ReplayWorker, job: Item, owner: str, context: InvocationContext) -> None:
        self.worker = worker
        self.store = worker.store
        self.tuning = worker.tuning
        self.job = job
        self.owner = owner
        self.context = context
        self.replay_id = str(job["pk"])
        self.connector_id = str(job["connector_id"])
        self.actor = str(job.get("requested_by") or "anonymous")
        self.summary = RunSummary(replay_id=self.replay_id, status="running")
        self.phase = str(job.get("phase") or "main")
        self.position: dict[str, Any] = dict(job.get("position") or {})
        self.counts = {
            name: int(job.get(name) or 0)
            for name in ("examined_count", "published_count", "replayed_count", "skipped_count", "batches")
        }
        self.skipped_samples: list[dict[str, Any]] = list(job.get("skipped_samples") or [])
        self.canary_keys: list[dict[str, Any]] = list(job.get("canary_keys") or [])
        self.buffer: list[Item] = []
        self.buffer_next: dict[str, Any] | None = None
        self.target: ReplayTarget | None = None

    # ---------------------------------------------------------------------------------------- the loop

    def execute(self) -> RunSummary:
        try:
            return self._loop()
        except LeaseLost:
            logger.warning("replay job lease lost", replay_id=self.replay_id)
            self.summary.status = "lease_lost"
            return self.summary
        except Exception as error:
            logger.exception("replay job failed", replay_id=self.replay_id)
            self._stop("error", f"{type(error).__name__}: {error}", go_on=False)
            raise

    def _loop(self) -> RunSummary:
        publisher = self._publisher()
        if publisher is None:
            return self.summary
        while True:
            if self.context.get_remaining_time_in_millis() < self.tuning.margin_ms:
                return self._stop("timeout", "the invocation ran short of time; a new invocation goes on", go_on=True)
            if self.phase == "canary_wait":
                if self._canary_step():
                    return self.summary
                continue
            limit = self.tuning.batch_size
            if self.phase == "canary":
                limit = min(limit, int(self.job["canary_rows"]) - len(self.canary_keys))
            batch = self._next_batch(limit)
            if batch is None:
                if self.phase == "canary" and self.canary_keys:
                    self._start_canary_wait()
                    continue
                return self._finish("succeeded")
            refused = self._process(batch, publisher)
            if refused:
                throttled = all(any(code in error for code in _THROTTLE_CODES) for error in refused.values())
                reason = "throttled" if throttled else "publish_failed"
                first = next(iter(refused.items()))
                message = f"{len(refused)} rows not published after retries (e.g. {first[0]}: {first[1]})"
                return self._stop(reason, message, go_on=False)
            if self.phase == "canary" and len(self.canary_keys) >= int(self.job["canary_rows"]):
                self._start_canary_wait()

    def _publisher(self) -> EventBridgePublisher | SqsPublisher | None:
        config = self.worker.configs.get(self.connector_id)
        if config is None:
            self._stop("connector_missing", f"connector {self.connector_id} is not registered", go_on=False)
            return None
        try:
            self.target = resolve_target(config, self.worker.allowed_targets)
        except ValidationFailed as error:
            self._stop("target_not_allowed", error.message, go_on=False)
            return None
        return self.worker.publishers.for_target(self.target)

    # ---------------------------------------------------------------------------------------- selection

    def _next_batch(self, limit: int) -> _Batch | None:
        if self.job["mode"] == "failure_ids":
            selected = list(self.job.get("failure_ids") or [])
            start = int(self.position.get("next_index") or 0)
            chosen = selected[start : start + limit]
            if not chosen:
                return None
            return _Batch(chosen, self.store.get_many(chosen), {"next_index": start + len(chosen)})
        while not self.buffer:
            if self.position.get("done"):
                return None
            selection = self.job.get("filter") or {}
            items, after = self.store.replay_page(
                self.connector_id,
                since=selection.get("since"),
                until=str(selection["until"]),
                status=selection.get("status"),
                error_kind=selection.get("error_kind"),
                replay_id=self.replay_id,
                after=self.position.get("after"),
                limit=self.tuning.page_size,
            )
            if items:
                self.buffer, self.buffer_next = list(items), after
            else:
                self.position = {"after": after, "done": after is None}
        taken, self.buffer = self.buffer[:limit], self.buffer[limit:]
        position: dict[str, Any] = {"after": self.buffer_next, "done": self.buffer_next is None}
        if self.buffer:
            last = taken[-1]
            after = {name: str(last[name]) for name in ("connector_id", "failed_at", "failure_id")}
            position = {"after": after, "done": False}
        return _Batch([item["failure_id"] for item in taken], {item["failure_id"]: item for item in taken}, position)

    # ---------------------------------------------------------------------------------------- one batch

    def _process(self, batch: _Batch, publisher: EventBridgePublisher | SqsPublisher) -> dict[str, str]:
        now = self.worker.now()
        skipped: list[dict[str, Any]] = []
        resumed: list[Item] = []
        claims: list[tuple[RowChange, Item]] = []
        for failure_id in batch.failure_ids:
            row = batch.rows.get(failure_id)
            decision = replay_decision(
                row, failure_id=failure_id, connector_id=self.connector_id, replay_id=self.replay_id
            )
            if decision.action == "skip":
                skipped.append({"failure_id": failure_id, "reason": decision.reason, "detail": decision.detail})
            elif decision.action == "resume" and row is not None:
                resumed.append(row)
            elif decision.action == "replay" and row is not None:
                updates, entry = claim_fields(row, replay_id=self.replay_id, actor=self.actor, now=now)
                change = RowChange(
                    failure_id, int(row["version"]), updates, history=[entry], expected_statuses=("dead", "patched")
                )
                claims.append((change, {**row, **updates}))
        lost = (
            self.store.claim([change for change, _ in claims], replay_id=self.replay_id, owner=self.owner)
            if claims
            else set()
        )
        for failure_id in sorted(lost):
            detail = "the row changed while this replay claimed it; select it again"
            skipped.append({"failure_id": failure_id, "reason": "changed_concurrently", "detail": detail})
        to_publish = resumed + [row for change, row in claims if change.failure_id not in lost]
        sent, refused = self._publish(to_publish, publisher)
        self.summary.batches += 1
        self.summary.publish_failures += len(refused)
        published = [row for row in to_publish if row["failure_id"] in sent]
        committed = self._snapshot()
        try:
            self._advance(batch, published, skipped, complete=not refused)
            self._record(published, now)
        except BaseException:
            # Progress counts only once it is saved with the rows it describes (a resumed run redoes the batch).
            self._restore(committed)
            raise
        self.summary.published += len(published)
        if not refused:
            self.summary.skipped += len(skipped)
        return refused

    def _advance(self, batch: _Batch, published: list[Item], skipped: list[dict[str, Any]], *, complete: bool) -> None:
        if self.phase == "canary":
            self.canary_keys += [
                {"failure_id": row["failure_id"], "replay_key": row["replay_key"]} for row in published
            ]
        if complete:
            self.position = batch.position
            self.counts["examined_count"] += len(batch.failure_ids)
            self.counts["skipped_count"] += len(skipped)
            room = MAX_SKIPPED_SAMPLES - len(self.skipped_samples)
            self.skipped_samples += [{k: v for k, v in item.items() if v is not None} for item in skipped[:room]]
        self.counts["published_count"] += len(published)
        self.counts["batches"] += 1

    def _snapshot(self) -> dict[str, Any]:
        return {
            "position": dict(self.position),
            "counts": dict(self.counts),
            "skipped_samples": list(self.skipped_samples),
            "canary_keys": list(self.canary_keys),
        }

    def _restore(self, snapshot: Mapping[str, Any]) -> None:
        self.position = snapshot["position"]
        self.counts = snapshot["counts"]
        self.skipped_samples = snapshot["skipped_samples"]
        self.canary_keys = snapshot["canary_keys"]

    def _publish(
        self, rows: list[Item], publisher: EventBridgePublisher | SqsPublisher
    ) -> tuple[set[str], dict[str, str]]:
        messages = [
            OutgoingMessage(
                entry_id=row["failure_id"],
                replay_key=row["replay_key"],
                group=self.connector_id,
                body=replay_message_body(row, replay_id=self.replay_id),
            )
            for row in rows
        ]
        sent: set[str] = set()
        refused: dict[str, str] = {}
        pending = messages
        for attempt in range(self.tuning.publish_attempts):
            if not pending:
                break
            if attempt:
                self.worker.sleep(self.tuning.backoff_seconds * 2 ** (attempt - 1))
            result = publisher.publish(pending)
            sent |= set(result.sent)
            refused = result.failed
            pending = [message for message in pending if message.entry_id in refused]
            if pending:
                logger.warning("replay entries refused", refused=len(pending), attempt=attempt + 1)
        return sent, {message.entry_id: refused[message.entry_id] for message in pending}

    def _record(self, published: list[Item], now: datetime) -> None:
        assert self.target is not None
        changes = []
        for row in published:
            updates, entry = replayed_fields(row, target_arn=self.target.arn, actor=self.actor, now=now)
            changes.append(
                RowChange(
                    row["failure_id"],
                    int(row["version"]),
                    updates,
                    history=[entry],
                    remove=("status_before_replay",),
                    expected_statuses=("replaying",),
                )
            )

        def progress(recorded: int) -> dict[str, Any]:
            return self._progress(now, replayed=self.counts["replayed_count"] + recorded)

        if not changes:
            self.worker.jobs.save(self.replay_id, owner=self.owner, values=progress(0))
            return
        lost = self.store.record_replayed(
            self.connector_id,
            changes,
            replay_id=self.replay_id,
            owner=self.owner,
            job_values=progress,
            now=now,
        )
        if lost:
            logger.info("replayed rows failed again before recording", rows=len(lost))
        self.counts["replayed_count"] += len(changes) - len(lost)
        self.summary.replayed += len(changes) - len(lost)

    # ---------------------------------------------------------------------------------------- canary

    def _start_canary_wait(self) -> None:
        now = self.worker.now()
        self.phase = "canary_wait"
        # One millisecond more: the stored time has millisecond precision and the wait must not come up short.
        until = now + timedelta(seconds=int(self.job.get("canary_wait_seconds") or 0), milliseconds=1)
        self.job["canary_until"] = to_iso(until)
        values = {**self._progress(now), "canary_until": to_iso(until), "canary_outcome": "waiting"}
        self.worker.jobs.save(self.replay_id, owner=self.owner, values=values)
        logger.info("replay canary published", rows=len(self.canary_keys), until=to_iso(until))

    def _canary_step(self) -> bool:
        """One look at the canary rows; ``True`` when the job is over (a canary row failed again)."""
        now = self.worker.now()
        failed = self._canary_failures()
        if failed:
            values = {"canary_outcome": "failed", "canary_failed_ids": failed}
            logger.warning("replay canary failed", failed=len(failed))
            self._finish("canary_failed", extra=values)
            return True
        until = parse_iso(str(self.job["canary_until"]))
        if now >= until:
            self.phase = "main"
            values = {**self._progress(now), "canary_outcome": "passed"}
            self.worker.jobs.save(self.replay_id, owner=self.owner, values=values)
            logger.info("replay canary passed")
            return False
        self.worker.sleep(min(self.tuning.canary_poll_seconds, (until - now).total_seconds()))
        return False

    def _canary_failures(self) -> list[str]:
        keys = {item["failure_id"]: item["replay_key"] for item in self.canary_keys}
        rows = self.store.get_many(list(keys))
        return [
            failure_id
            for failure_id, key in keys.items()
            if (row := rows.get(failure_id)) is None or row.get("status") != "replayed" or row.get("replay_key") != key
        ]

    # ---------------------------------------------------------------------------------------- endings

    def _progress(self, now: datetime, *, replayed: int | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {
            "phase": self.phase,
            "position": self.position,
            "examined_count": self.counts["examined_count"],
            "published_count": self.counts["published_count"],
            "replayed_count": self.counts["replayed_count"] if replayed is None else replayed,
            "skipped_count": self.counts["skipped_count"],
            "batches": self.counts["batches"],
            "skipped_samples": self.skipped_samples,
            "updated_at": to_iso(now),
        }
        if self.job.get("canary_rows"):
            values["canary_keys"] = self.canary_keys
        return values

    def _finish(self, status: str, *, extra: Mapping[str, Any] | None = None) -> RunSummary:
        now = self.worker.now()
        self.phase = "done"
        values = {**self._progress(now), **(extra or {}), "status": status, "finished_at": to_iso(now)}
        self.worker.jobs.save(self.replay_id, owner=self.owner, values=values, release=True)
        logger.info("replay finished", status=status, replayed=self.counts["replayed_count"])
        self.summary.status = status
        return self.summary

    def _stop(self, reason: str, message: str, *, go_on: bool) -> RunSummary:
        now = self.worker.now()
        values = {**self._progress(now), "status": "interrupted", "interrupted_reason": reason, "last_error": message}
        try:
            self.worker.jobs.save(self.replay_id, owner=self.owner, values=values, release=True)
        except LeaseLost:
            logger.warning("replay job lease lost", replay_id=self.replay_id)
            return self.summary
        logger.warning("replay interrupted", reason=reason, detail=message)
        self.summary.status = "interrupted"
        self.summary.interrupted_reason = reason
        if go_on:
            try:
                self.worker.launcher_for(self.context.invoked_function_arn).launch(self.replay_id)
            except (ClientError, BotoCoreError):
                logger.exception("replay continuation not started", replay_id=self.replay_id)
        return self.summary
