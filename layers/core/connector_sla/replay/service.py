"""Use cases of the failure routes: report, list, read, patch, plan and start replays, follow and resume them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from connector_sla.config import settings
from connector_sla.errors import Conflict, NotFound, ValidationFailed
from connector_sla.ids import new_id, stable_id
from connector_sla.replay.models import (
    CanaryView,
    FailurePage,
    FailureQuery,
    FailureReport,
    FailureSummary,
    FailureView,
    PatchOutcome,
    PatchRequest,
    ReplayCandidate,
    ReplayJobView,
    ReplayPlan,
    ReplayRequest,
    ReportOutcome,
    SkippedRow,
)
from connector_sla.replay.payloads import (
    apply_json_patch,
    check_against_schema,
    patch_text,
    payload_sha256,
    payload_text,
    read_payload,
)
from connector_sla.replay.rules import (
    FAILURE_ID_PATTERN,
    REPLAY_ID_PATTERN,
    ConnectorConfig,
    ReplayDecision,
    ReplayTarget,
    check_patchable,
    check_resumable,
    check_row_size,
    counter_delta,
    cursor_position,
    failed_again_fields,
    failed_again_outcome,
    list_plan,
    new_failure_row,
    parse_replay_key,
    patch_fields,
    replay_decision,
    replay_key,
    resolve_target,
)
from connector_sla.replay.store import (
    ConnectorConfigs,
    DuplicateReport,
    FailureStore,
    ReplayJobs,
    RowChange,
    RowChanged,
    UnknownConnector,
    WorkerLauncher,
)
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table, decode_cursor, encode_cursor
from connector_sla.timeutil import day_of, epoch_seconds, to_iso

logger = Logger(child=True)

MAX_CLOCK_SKEW = timedelta(minutes=5)
JOB_RETENTION = timedelta(days=90)
DRY_RUN_EXAMINE_LIMIT = 10_000
# A page is at most 1 MB: with large payloads 10,000 rows are hundreds of pages; this keeps a dry run well inside
# the API's 29 seconds.
DRY_RUN_PAGE_BUDGET = 40
DRY_RUN_PAGE_SIZE = 1000
_FAILED_AGAIN_ATTEMPTS = 3


def failure_summary(row: Mapping[str, Any]) -> FailureSummary:
    return FailureSummary.model_validate({**_common(row)})


def failure_view(row: Mapping[str, Any]) -> FailureView:
    """The full row as the API shows it: payloads as JSON values, the patch log and the history."""
    patches = [
        {
            **{key: value for key, value in patch.items() if key != "operations"},
            "operations": read_payload(patch["operations"]),
        }
        for patch in row.get("patches") or []
    ]
    original = row.get("original_payload_json")
    return FailureView.model_validate(
        {
            **_common(row),
            "error_message_truncated": bool(row.get("error_message_truncated")),
            "occurred_at": row.get("occurred_at"),
            "reported_by": row.get("reported_by"),
            "dedup_key": row.get("dedup_key"),
            "original_payload": read_payload(original) if original else read_payload(row["payload_json"]),
            "original_payload_sha256": row.get("original_payload_sha256") or row["payload_sha256"],
            "replay_target": row.get("replay_target"),
            "last_failed_replay_key": row.get("last_failed_replay_key"),
            "updated_at": row["updated_at"],
            "version": row["version"],
            "patches": patches,
            "history": row.get("history") or [],
        }
    )


def _common(row: Mapping[str, Any]) -> dict[str, Any]:
    names = (
        "failure_id",
        "connector_id",
        "source_id",
        "error_kind",
        "error_message",
        "retry_count",
        "status",
        "payload_sha256",
        "failed_at",
        "first_failed_at",
        "patch_count",
        "replay_attempts",
        "replay_id",
        "replay_key",
        "replayed_at",
    )
    values = {name: row.get(name) for name in names}
    values["payload"] = read_payload(row["payload_json"])
    return {name: value for name, value in values.items() if value is not None or name == "payload"}


def job_view(job: Mapping[str, Any], now: datetime) -> ReplayJobView:
    """A replay job as ``GET /events/connectors/replays/{replay_id}`` shows it."""
    total = job.get("total")
    examined = int(job.get("examined_count") or 0)
    percent = None
    if total:
        percent = 100 if job.get("status") == "succeeded" else min(99, examined * 100 // int(total))
    canary = None
    if job.get("canary_rows"):
        canary = CanaryView(
            rows=int(job["canary_rows"]),
            wait_seconds=int(job.get("canary_wait_seconds") or 0),
            published=len(job.get("canary_keys") or []),
            until=job.get("canary_until"),
            outcome=job.get("canary_outcome") or "pending",
            failed_ids=job.get("canary_failed_ids") or [],
        )
    try:
        check_resumable(job, now)
        resumable = job.get("status") != "queued"
    except Conflict:
        resumable = False
    return ReplayJobView.model_validate(
        {
            "replay_id": job["pk"],
            "connector_id": job["connector_id"],
            "status": job["status"],
            "phase": job.get("phase") or "main",
            "resumable": resumable,
            "requested_by": job.get("requested_by") or "anonymous",
            "created_at": job["created_at"],
            "started_at": job.get("started_at"),
            "updated_at": job.get("updated_at") or job["created_at"],
            "finished_at": job.get("finished_at"),
            "mode": job["mode"],
            "filter": job.get("filter"),
            "target": {"kind": job["target_kind"], "arn": job["target_arn"]},
            "progress": {
                "examined": examined,
                "published": int(job.get("published_count") or 0),
                "replayed": int(job.get("replayed_count") or 0),
                "skipped": int(job.get("skipped_count") or 0),
                "failed_again": int(job.get("failed_again_count") or 0),
                "total": total,
                "percent": percent,
            },
            "canary": canary,
            "skipped": job.get("skipped_samples") or [],
            "interrupted_reason": job.get("interrupted_reason"),
            "last_error": job.get("last_error"),
            "invocations": int(job.get("invocations") or 0),
            "status_url": f"/events/connectors/replays/{job['pk']}",
        }
    )


class FailuresService:
    """The failure and replay routes, over the stores and the worker launcher handed in."""

    def __init__(
        self,
        store: FailureStore,
        configs: ConnectorConfigs,
        jobs: ReplayJobs,
        launcher: WorkerLauncher,
        allowed_targets: tuple[str, ...],
    ) -> None:
        self.store = store
        self.configs = configs
        self.jobs = jobs
        self.launcher = launcher
        self.allowed_targets = allowed_targets
        self.dry_run_examine_limit = DRY_RUN_EXAMINE_LIMIT
        self.dry_run_page_budget = DRY_RUN_PAGE_BUDGET
        self.dry_run_page_size = DRY_RUN_PAGE_SIZE

    @classmethod
    def from_settings(cls) -> FailuresService:
        """The service over the deployment's tables (clients created once, reused while warm)."""
        config = settings()
        dynamodb = client("dynamodb")
        failures = Table(config.failures_table, dynamodb)
        connectors = Table(config.connectors_table, dynamodb)
        jobs = Table(config.jobs_table, dynamodb)
        return cls(
            FailureStore(failures, connectors, jobs),
            ConnectorConfigs(connectors),
            ReplayJobs(jobs),
            WorkerLauncher(client("lambda"), config.replay_worker_function),
            config.replay_target_arns,
        )

    # ---------------------------------------------------------------------------------------- failures

    def report(self, report: FailureReport, *, actor: str, now: datetime) -> ReportOutcome:
        """Record a failed row (status dead, counted), or return a replayed row that failed again to dead.

        A retried report is recognized (same ``dedup_key``, or same ``replay_key``) and returns the row already
        recorded with outcome ``duplicate``; nothing is counted twice.
        """
        config = self._config(report.connector_id)
        if report.source_id not in config.source_ids:
            raise ValidationFailed(
                f"source_id {report.source_id} is not a source of connector {report.connector_id}; "
                f"expected one of: {', '.join(config.source_ids) or 'none registered'}",
                details=[{"field": "body.source_id", "problem": "unknown source of this connector"}],
            )
        if report.occurred_at and report.occurred_at > now + MAX_CLOCK_SKEW:
            raise ValidationFailed(
                f"occurred_at {to_iso(report.occurred_at)} is in the future; expected a time up to {to_iso(now)}",
                details=[{"field": "body.occurred_at", "problem": "in the future"}],
            )
        if report.failed_again:
            return self._failed_again(report, actor=actor, now=now)
        text = payload_text(report.payload)
        failure_id = new_id("flr")
        row = new_failure_row(
            failure_id=failure_id,
            connector_id=report.connector_id,
            source_id=report.source_id,
            error_kind=report.error_kind,
            error_message=report.error_message,
            retry_count=int(report.retry_count or 0),
            payload_json=text,
            payload_hash=payload_sha256(report.payload),
            now=now,
            actor=actor,
            occurred_at=report.occurred_at,
            dedup_key=report.dedup_key,
        )
        marker = stable_id("dedup", report.connector_id, report.dedup_key) if report.dedup_key else None
        try:
            self.store.insert(row, marker_id=marker, now=now)
        except DuplicateReport as duplicate:
            existing = self.store.get(duplicate.failure_id)
            if existing is None:
                raise Conflict("the failure this dedup_key names is being recorded; retry the report") from None
            logger.info("failure report repeated", failure_id=duplicate.failure_id)
            return ReportOutcome(outcome="duplicate", failure=failure_view(existing))
        except UnknownConnector:
            raise NotFound(f"connector {report.connector_id} is not registered") from None
        logger.info("failure reported", failure_id=failure_id, error_kind=report.error_kind)
        return ReportOutcome(outcome="recorded", failure=failure_view(row))

    def _failed_again(self, report: FailureReport, *, actor: str, now: datetime) -> ReportOutcome:
        failure_id = report.failure_id or parse_replay_key(str(report.replay_key))[0]
        for _ in range(_FAILED_AGAIN_ATTEMPTS):
            row = self.store.get(failure_id)
            if row is None:
                raise NotFound(f"failure {failure_id} does not exist; report a new failure without failure_id")
            if row["connector_id"] != report.connector_id:
                raise ValidationFailed(
                    f"failure {failure_id} belongs to connector {row['connector_id']}, not {report.connector_id}"
                )
            if failed_again_outcome(row, reported_key=report.replay_key) == "duplicate":
                return ReportOutcome(outcome="duplicate", failure=failure_view(row))
            updates, entry = failed_again_fields(
                row,
                source_id=report.source_id,
                error_kind=report.error_kind,
                error_message=report.error_message,
                reported_retry_count=report.retry_count,
                actor=actor,
                now=now,
            )
            changed = {**row, **updates, "history": [*(row.get("history") or []), entry]}
            check_row_size(changed)
            change = RowChange(
                failure_id,
                int(row["version"]),
                updates,
                history=[entry],
                remove=("status_before_replay",),
            )
            try:
                delta = counter_delta("failed_again", row["status"])
                self.store.change_row(row["connector_id"], change, delta, now=now, job_id=row.get("replay_id"))
            except RowChanged:
                continue
            logger.info("failure failed again", failure_id=failure_id, replay_key=row.get("replay_key"))
            changed.pop("status_before_replay", None)
            return ReportOutcome(outcome="failed_again", failure=failure_view(changed))
        raise Conflict(f"failure {failure_id} keeps changing while this report is recorded; retry the report")

    def list(self, query: FailureQuery, *, now: datetime) -> FailurePage:
        """A page of rows, newest failure first, with payload and retry count; filters are ANDed."""
        if query.connector_id:
            self._config(query.connector_id)
        plan = list_plan(connector_id=query.connector_id, since=query.since, until=query.until, now=now)
        cursor = decode_cursor(query.cursor, expected_keys={"day", "after"})
        day_index, after = cursor_position(plan, cursor)
        rows, next_cursor = self.store.list_page(
            plan, day_index=day_index, after=after, status=query.status, error_kind=query.error_kind, limit=query.limit
        )
        return FailurePage(items=[failure_summary(row) for row in rows], next_cursor=encode_cursor(next_cursor))

    def get(self, failure_id: str) -> FailureView:
        return failure_view(self._row(failure_id))

    def patch(self, failure_id: str, request: PatchRequest, *, actor: str, now: datetime) -> PatchOutcome:
        """Apply a JSON Patch to a dead or patched row's payload, check it against the connector's schema, and
        save it with who, when and the hashes before and after (or, with ``preview``, only show the result)."""
        row = self._row(failure_id)
        check_patchable(row)
        before = row["payload_sha256"]
        if request.expected_payload_sha256 and request.expected_payload_sha256 != before:
            raise Conflict(
                f"failure {failure_id} has payload {before} now, not {request.expected_payload_sha256}: "
                "it changed since it was read; read it again and rebuild the patch"
            )
        operations_json = patch_text(request.patch)
        patched = apply_json_patch(read_payload(row["payload_json"]), request.patch)
        patched_text = payload_text(patched, what="patched payload")
        after = payload_sha256(patched)
        if after == before:
            raise ValidationFailed("the patch leaves the payload unchanged; nothing was changed")
        config = self.configs.get(row["connector_id"])
        if config is None:
            raise Conflict(f"connector {row['connector_id']} of failure {failure_id} is no longer registered")
        check_against_schema(patched, config.payload_schema, connector_id=config.connector_id)
        if request.preview:
            return PatchOutcome(
                failure_id=failure_id, preview=True, payload=patched, before_sha256=before, after_sha256=after
            )
        updates, patch, entry = patch_fields(
            row,
            new_payload_json=patched_text,
            new_hash=after,
            operations_json=operations_json,
            comment=request.comment,
            actor=actor,
            now=now,
        )
        first_patch = {"original_payload_json": row["payload_json"]}
        changed = {
            **first_patch,
            **row,
            **updates,
            "patches": [*(row.get("patches") or []), patch],
            "history": [*(row.get("history") or []), entry],
        }
        check_row_size(changed)
        change = RowChange(
            failure_id,
            int(row["version"]),
            updates,
            history=[entry],
            patches=[patch],
            set_if_missing=first_patch,
            expected_statuses=("dead", "patched"),
        )
        try:
            self.store.change_row(row["connector_id"], change, counter_delta("patched", row["status"]), now=now)
        except RowChanged:
            raise Conflict(f"failure {failure_id} changed while it was patched; read it again and retry") from None
        logger.info("failure patched", failure_id=failure_id, patch_no=patch["patch_no"], after_sha256=after)
        return PatchOutcome(
            failure_id=failure_id,
            preview=False,
            payload=patched,
            before_sha256=before,
            after_sha256=after,
            failure=failure_view(changed),
        )

    # ---------------------------------------------------------------------------------------- replays

    def replay(self, request: ReplayRequest, *, actor: str, now: datetime) -> ReplayPlan | ReplayJobView:
        """A dry run's plan, or a new replay job handed to the worker (its view, status ``queued``)."""
        config = self._config(request.connector_id)
        target = resolve_target(config, self.allowed_targets)
        if request.dry_run:
            return self._plan(request, target, now=now)
        replay_id = new_id("rpl")
        job: dict[str, Any] = {
            "pk": replay_id,
            "kind": "replay",
            "created_at": to_iso(now),
            "updated_at": to_iso(now),
            "day": day_of(now),
            "connector_id": request.connector_id,
            "requested_by": actor,
            "status": "queued",
            "phase": "canary" if request.canary else "main",
            "target_kind": target.kind,
            "target_arn": target.arn,
            "examined_count": 0,
            "published_count": 0,
            "replayed_count": 0,
            "skipped_count": 0,
            "failed_again_count": 0,
            "skipped_samples": [],
            "batches": 0,
            "invocations": 0,
            "expires_at": epoch_seconds(now + JOB_RETENTION),
        }
        if request.failure_ids is not None:
            selected = request.selected_ids()
            job.update(mode="failure_ids", failure_ids=selected, total=len(selected), position={"next_index": 0})
        else:
            job.update(mode="filter", filter=_filter_record(request, now), position={"after": None, "done": False})
        if request.canary:
            job.update(canary_rows=request.canary.rows, canary_wait_seconds=request.canary.wait_seconds, canary_keys=[])
        self.jobs.create(job)
        logger.info("replay requested", replay_id=replay_id, mode=job["mode"], total=job.get("total"))
        try:
            self.launcher.launch(replay_id)
        except (ClientError, BotoCoreError) as error:
            logger.exception("replay worker not started", replay_id=replay_id)
            self.jobs.requeue(
                replay_id,
                expected_status="queued",
                values={"status": "interrupted", "interrupted_reason": "start_failed", "last_error": str(error)},
            )
            job.update(status="interrupted", interrupted_reason="start_failed", last_error=str(error))
        return job_view(job, now)

    def _plan(self, request: ReplayRequest, target: ReplayTarget, *, now: datetime) -> ReplayPlan:
        """The plan of a dry run. Only what the plan shows is kept of each row (never its payload), and a filter
        stops after ``dry_run_examine_limit`` rows or ``dry_run_page_budget`` pages, so one request stays short
        and small whatever the backlog (``complete`` then says so)."""
        chosen: list[ReplayCandidate] = []
        skipped: list[ReplayDecision] = []
        examined = 0
        complete = True

        def examine(decision: ReplayDecision, row: Mapping[str, Any] | None) -> None:
            nonlocal examined
            examined += 1
            if decision.action == "replay" and row is not None:
                chosen.append(_candidate(row))
            elif decision.action == "skip":
                skipped.append(decision)

        if request.failure_ids is not None:
            selected = request.selected_ids()
            rows = self.store.get_many(selected)
            for failure_id in selected:
                row = rows.get(failure_id)
                examine(replay_decision(row, failure_id=failure_id, connector_id=request.connector_id), row)
        else:
            record = _filter_record(request, now)
            after = None
            pages = 0
            while True:
                items, after = self.store.replay_page(
                    request.connector_id,
                    since=record.get("since"),
                    until=record["until"],
                    status=record.get("status"),
                    error_kind=record.get("error_kind"),
                    replay_id=None,
                    after=after,
                    limit=self.dry_run_page_size,
                )
                pages += 1
                for item in items:
                    decision = replay_decision(item, failure_id=item["failure_id"], connector_id=request.connector_id)
                    examine(decision, item)
                if after is None:
                    break
                if examined >= self.dry_run_examine_limit or pages >= self.dry_run_page_budget:
                    complete = False
                    break
        limit = request.list_limit
        canary_rows = [candidate.failure_id for candidate in chosen[: request.canary.rows]] if request.canary else []
        return ReplayPlan.model_validate(
            {
                "connector_id": request.connector_id,
                "target": {"kind": target.kind, "arn": target.arn},
                "would_replay": chosen[:limit],
                "skipped": [
                    SkippedRow(failure_id=item.failure_id, reason=str(item.reason), detail=item.detail)
                    for item in skipped[:limit]
                ],
                "counts": {"examined": examined, "would_replay": len(chosen), "skipped": len(skipped)},
                "canary_rows": canary_rows,
                "truncated": len(chosen) > limit or len(skipped) > limit or not complete,
                "complete": complete,
            }
        )

    def get_replay(self, replay_id: str, *, now: datetime) -> ReplayJobView:
        return job_view(self._job(replay_id), now)

    def resume(self, replay_id: str, *, actor: str, now: datetime) -> ReplayJobView:
        """Hand an interrupted (or abandoned) replay back to the worker; it goes on where it stopped."""
        job = self._job(replay_id)
        check_resumable(job, now)
        values = {"status": "queued", "updated_at": to_iso(now), "resumed_by": actor, "resumed_at": to_iso(now)}
        try:
            self.jobs.requeue(replay_id, expected_status=str(job["status"]), values=values)
        except RowChanged:
            raise Conflict(f"replay {replay_id} changed while it was resumed; read it again") from None
        self.launcher.launch(replay_id)
        logger.info("replay resumed", replay_id=replay_id)
        return job_view({**job, **values}, now)

    # ---------------------------------------------------------------------------------------- helpers

    def _config(self, connector_id: str) -> ConnectorConfig:
        config = self.configs.get(connector_id)
        if config is None:
            raise NotFound(
                f"connector {connector_id} is not registered; register it with PUT /events/connectors/{connector_id}"
            )
        return config

    def _row(self, failure_id: str) -> dict[str, Any]:
        row = self.store.get(failure_id) if re.fullmatch(FAILURE_ID_PATTERN, failure_id) else None
        if row is None:
            raise NotFound(f"failure {failure_id} does not exist")
        return row

    def _job(self, replay_id: str) -> dict[str, Any]:
        job = self.jobs.get(replay_id) if re.fullmatch(REPLAY_ID_PATTERN, replay_id) else None
        if job is None:
            raise NotFound(f"replay {replay_id} does not exist")
        return job


def _candidate(row: Mapping[str, Any]) -> ReplayCandidate:
    return ReplayCandidate(
        failure_id=row["failure_id"],
        status=row["status"],
        error_kind=row["error_kind"],
        retry_count=int(row["retry_count"]),
        payload_sha256=row["payload_sha256"],
        replay_key=replay_key(row["failure_id"], int(row.get("replay_attempts") or 0) + 1),
    )


def _filter_record(request: ReplayRequest, now: datetime) -> dict[str, Any]:
    """The filter as a replay stores it: bounded by the time of the request, so rows that fail later (including
    rows of this replay that fail again) are never selected by it."""
    selection = request.filter
    assert selection is not None
    until = min(selection.until, now) if selection.until else now
    record = {
        "error_kind": selection.error_kind,
        "status": selection.status,
        "since": to_iso(selection.since) if selection.since else None,
        "until": to_iso(until),
    }
    return {key: value for key, value in record.items() if value is not None}
