"""Running one job: claim the run, hold the job's lease, reconcile page by page, and record what happened.

A run is recorded from its first moment (``running``) and its progress is written after every page, so a run
that fails halfway, or is stopped by the function's timeout, still shows what it read, what it changed and what
failed. Only one run of a job holds the job's lease at a time; a run whose lease expired without an end is
closed as ``failed`` by the next run, which simply starts again from the provider's current list: changes only
move ACK states forward, so what was already applied is found in line and left alone.

A dry run only lists the changes. A real run applies each one through the callback recorder (the same ACK rules
and callback history as a provider's webhook), with the run as its source.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from connector_sla.ids import new_id
from connector_sla.jobs.endpoints import Endpoint, EndpointRefused, check_endpoint
from connector_sla.jobs.fetch import FetchFailed, FetchRefused, IncidentSource, Paginator, auth_header
from connector_sla.jobs.mapping import CompiledMapping, MappingError, compile_mapping
from connector_sla.jobs.reconcile import Change, RunReport, plan_page, wanted_notification_ids
from connector_sla.jobs.store import JobStore, NotificationStates, run_sk
from connector_sla.secrets import SecretUnavailable
from connector_sla.timeutil import epoch_seconds, to_iso

logger = Logger(child=True)

RECONCILE_JOB = "alert_oncall_reconcile"
LEASE_SECONDS = 330  # the runner's timeout (300 s) and a margin
STOP_MARGIN_MS = 20_000  # stop reading and applying this long before the function's timeout
RUN_RETENTION_DAYS = 400
TRIGGERS = ("schedule", "manual")


class RunRequestInvalid(ValueError):
    """The invocation payload is not a job run request."""


@dataclass(frozen=True)
class RunRequest:
    job_id: str
    trigger: str
    run_id: str | None = None


def parse_request(event: Any) -> RunRequest:
    """Read ``{"job_id", "trigger": "schedule"|"manual", "run_id"}``; raises :class:`RunRequestInvalid`."""
    if not isinstance(event, Mapping) or not isinstance(event.get("job_id"), str) or not event["job_id"]:
        raise RunRequestInvalid("expected {'job_id': 'job_...', 'trigger': 'schedule' or 'manual'}")
    trigger = event.get("trigger", "schedule")
    if trigger not in TRIGGERS:
        raise RunRequestInvalid(f"trigger {trigger!r} is not one of {', '.join(TRIGGERS)}")
    run_id = event.get("run_id")
    if trigger == "manual" and not isinstance(run_id, str):
        raise RunRequestInvalid("a manual run needs its run_id")
    return RunRequest(event["job_id"], trigger, run_id if isinstance(run_id, str) else None)


@dataclass(frozen=True)
class ApplyResult:
    """What the callback recorder did with one change."""

    applied: bool
    callback_id: str | None = None
    duplicate: bool = False
    ack_state_after: str | None = None


class ChangeApplier(Protocol):
    def apply(
        self, change: Change, *, provider: str, job_id: str, run_id: str, received_at: datetime
    ) -> ApplyResult: ...


class JobRunner:
    """Runs jobs; every collaborator that touches AWS or the network is handed in."""

    def __init__(
        self,
        store: JobStore,
        notifications: NotificationStates,
        source: IncidentSource,
        applier: ChangeApplier,
        secret_header: Callable[[str], str | None],
        *,
        base_dir: str,
        allowed_local: tuple[str, ...],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.notifications = notifications
        self.source = source
        self.applier = applier
        self.secret_header = secret_header
        self.base_dir = base_dir
        self.allowed_local = allowed_local
        self.clock = clock

    def run(self, request: RunRequest, *, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """Run the job once and record the run; returns the run's summary (``status``, ``counts``...)."""
        job = self.store.get_job(request.job_id)
        if job is None:
            logger.warning("job run skipped", job_id=request.job_id, reason="job_not_found")
            return {"status": "skipped", "reason": "job_not_found"}
        if request.trigger == "schedule" and job.get("state") == "paused":
            logger.info("job run skipped", job_id=request.job_id, reason="job_paused")
            return {"status": "skipped", "reason": "job_paused"}
        run = self._open_run(job, request)
        if run is None:
            return {"status": "skipped", "reason": "run_already_started", "run_id": request.run_id}
        started = time.monotonic()
        now = self.clock()
        previous = self.store.acquire_lease(
            job["job_id"],
            run["run_id"],
            run["sk"],
            now=to_iso(now),
            until=to_iso(now + timedelta(seconds=LEASE_SECONDS)),
        )
        if previous is None:
            return self._skip_busy(job, run)
        self._close_abandoned(previous, run["run_id"])
        report = RunReport(dry_run=bool(run["dry_run"]))
        try:
            self._reconcile(job, run, report, remaining_ms)
        except Exception as error:  # the run row must always be closed
            logger.exception("job run crashed", job_id=job["job_id"], run_id=run["run_id"])
            report.add_error("run", f"unexpected {type(error).__name__}; see the runner's logs")
        return self._finish(job, run, report, started)

    # -------------------------------------------------------------------------------------------- run rows

    def _open_run(self, job: Mapping[str, Any], request: RunRequest) -> dict[str, Any] | None:
        now = to_iso(self.clock())
        if request.run_id is not None:
            queued = self.store.find_run(job["job_id"], request.run_id)
            if queued is not None:
                claimed = self.store.update_run(
                    job["job_id"], queued["sk"], {"status": "running", "running_at": now}, expected_status="queued"
                )
                if not claimed:
                    logger.info("job run skipped", run_id=request.run_id, reason="run_already_started")
                    return None
                return {**queued, "status": "running"}
        run_id = request.run_id or new_id("run")
        run = {
            "pk": job["job_id"],
            "sk": run_sk(now, run_id),
            "run_id": run_id,
            "job_id": job["job_id"],
            "job_type": job["job_type"],
            "trigger": request.trigger,
            "status": "running",
            "dry_run": bool(job["payload"].get("dry_run", True)),
            "provider": job["payload"].get("provider"),
            "endpoint": job["payload"].get("endpoint"),
            "started_at": now,
            "running_at": now,
            "created_at": now,
            "expires_at": epoch_seconds(self.clock()) + RUN_RETENTION_DAYS * 86400,
        }
        self.store.create_run(run)
        return run

    def _skip_busy(self, job: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
        holder = (self.store.get_job(job["job_id"]) or {}).get("running_run_id")
        message = f"another run of this job is in progress ({holder})" if holder else "the job was deleted"
        self.store.update_run(
            job["job_id"], run["sk"], {"status": "skipped", "ended_at": to_iso(self.clock()), "message": message}
        )
        logger.info("job run skipped", job_id=job["job_id"], run_id=run["run_id"], reason=message)
        return {"status": "skipped", "reason": message, "run_id": run["run_id"]}

    def _close_abandoned(self, previous: Mapping[str, Any], run_id: str) -> None:
        holder, sk = previous.get("running_run_id"), previous.get("running_run_sk")
        if not holder or holder == run_id or not sk:
            return
        closed = self.store.update_run(
            previous["job_id"],
            sk,
            {
                "status": "failed",
                "ended_at": to_iso(self.clock()),
                "message": f"stopped before it finished (lease expired); run {run_id} started over",
            },
            expected_status="running",
        )
        if closed:
            logger.warning("abandoned job run closed", job_id=previous["job_id"], run_id=holder)

    def _finish(
        self, job: Mapping[str, Any], run: Mapping[str, Any], report: RunReport, started: float
    ) -> dict[str, Any]:
        status = report.status()
        ended_at = to_iso(self.clock())
        record = {
            **report.as_record(),
            "status": status,
            "ended_at": ended_at,
            "duration_ms": int((time.monotonic() - started) * 1000),
            "message": _summary(report),
        }
        self.store.update_run(job["job_id"], run["sk"], record)
        last_run = {
            "run_id": run["run_id"],
            "status": status,
            "trigger": run["trigger"],
            "dry_run": bool(run["dry_run"]),
            "started_at": run["started_at"],
            "ended_at": ended_at,
            "counts": report.counts(),
        }
        self.store.release_lease(job["job_id"], run["run_id"], last_run)
        fields: dict[str, Any] = {"job_id": job["job_id"], "run_id": run["run_id"], "status": status}
        if status == "succeeded":
            logger.info("job run finished", **fields, counts=report.counts())
        else:
            logger.warning("job run finished", **fields, counts=report.counts(), errors=report.error_details[:5])
        return {**last_run, "job_id": job["job_id"], "job_type": job["job_type"]}

    # -------------------------------------------------------------------------------------------- reconcile

    def _reconcile(
        self, job: Mapping[str, Any], run: Mapping[str, Any], report: RunReport, remaining_ms: Callable[[], int]
    ) -> None:
        if job["job_type"] != RECONCILE_JOB:
            report.add_error("config", f"job type {job['job_type']!r} has no runner")
            return
        payload = job["payload"]
        try:
            mapping = compile_mapping(payload.get("mapping_template") or {})
            endpoint = check_endpoint(payload["endpoint"], base_dir=self.base_dir, allowed_local=self.allowed_local)
            auth = self._auth(endpoint, payload["provider"])
        except (MappingError, EndpointRefused, SecretUnavailable) as error:
            report.add_error("config", str(error))
            return
        limit = int(payload.get("limit", 500))
        paginator = Paginator(endpoint.url, mapping.next_page)
        url: str | None = paginator.first(limit)
        ack_view: dict[str, str] = {}
        while url is not None and report.fetched < limit:
            if remaining_ms() < STOP_MARGIN_MS:
                report.stopped_early = "stopped before the function's timeout; the next run goes on from here"
                return
            try:
                document = self.source.read(
                    endpoint, url, auth=auth, read_timeout=float(payload.get("timeout_seconds", 10))
                )
                incidents = mapping.incidents_of(document)
            except (FetchFailed, FetchRefused, MappingError) as error:
                report.add_error("fetch", str(error), page=report.pages + 1)
                return
            ack_view = self._page(
                job, run, mapping, incidents[: limit - report.fetched], ack_view, report, remaining_ms
            )
            self.store.update_run(job["job_id"], run["sk"], {**report.as_record(), "status": "running"})
            if report.stopped_early:
                return
            url = self._next_url(endpoint, paginator, url, document, len(incidents), limit - report.fetched, report)

    def _auth(self, endpoint: Endpoint, provider: str) -> tuple[str, str] | None:
        if endpoint.kind != "http":
            return None
        return auth_header(self.secret_header(provider))

    def _next_url(
        self,
        endpoint: Endpoint,
        paginator: Paginator,
        url: str,
        document: Any,
        received: int,
        wanted: int,
        report: RunReport,
    ) -> str | None:
        if endpoint.kind == "file" or wanted <= 0:
            return None
        try:
            return paginator.next(url, document, received, wanted)
        except (FetchFailed, FetchRefused) as error:
            report.add_error("fetch", str(error), page=report.pages + 1)
            return None

    def _page(
        self,
        job: Mapping[str, Any],
        run: Mapping[str, Any],
        mapping: CompiledMapping,
        incidents: list[Any],
        ack_view: dict[str, str],
        report: RunReport,
        remaining_ms: Callable[[], int],
    ) -> dict[str, str]:
        items = [mapping.read(incident, report.fetched + offset) for offset, incident in enumerate(incidents)]
        notifications = self.notifications.get_many(wanted_notification_ids(items))
        plan = plan_page(items, notifications, ack_view)
        report.add_plan(plan, len(incidents))
        view = dict(plan.ack_view)
        for index, change in enumerate(plan.changes):
            if run["dry_run"]:
                report.add_change(change, "would_update")
                continue
            if remaining_ms() < STOP_MARGIN_MS:
                report.stopped_early = (
                    f"stopped before the function's timeout with {len(plan.changes) - index} change(s) of this "
                    "page not applied; the next run applies them"
                )
                break
            view[change.notification_id] = self._apply(job, run, change, report)
        return view

    def _apply(self, job: Mapping[str, Any], run: Mapping[str, Any], change: Change, report: RunReport) -> str:
        try:
            result = self.applier.apply(
                change,
                provider=job["payload"]["provider"],
                job_id=job["job_id"],
                run_id=run["run_id"],
                received_at=self.clock(),
            )
        except Exception as error:  # one failed change must not stop the others
            logger.exception("reconcile change failed", notification_id=change.notification_id)
            message = f"{type(error).__name__}: {error}"[:300]
            report.add_change(change, "failed", error=message)
            report.add_error("apply", message, notification_id=change.notification_id)
            return change.ack_state_before
        if result.applied:
            report.add_change(change, "updated", callback_id=result.callback_id)
            return change.ack_state_after
        report.add_change(change, "already_applied", callback_id=result.callback_id)
        return result.ack_state_after or change.ack_state_before


def _summary(report: RunReport) -> str:
    counts = report.counts()
    verb = "would update" if report.dry_run else "updated"
    changed = counts.get("would_update", counts.get("updated", 0))
    text = (
        f"fetched {counts['fetched']}, matched {counts['matched']}, {verb} {changed}, "
        f"unmatched {counts['unmatched']}, errors {counts['errors']}"
    )
    if report.stopped_early:
        text += f"; {report.stopped_early}"
    return text
