"""Storage adapters of the jobs: job and run rows in JobsTable, and the ACK state of notifications.

JobsTable rows (see docs/design.md, "Jobs and runs"):

- job: ``pk = <job_id>``, ``sk = "JOB"``, ``kind = "job"``, ``created_at``; changed under an optimistic lock on
  ``version``. A running run holds a lease on it (``running_run_id``, ``running_run_sk``, ``lease_expires_at``)
  so two runs of one job never overlap.
- run: ``pk = <job_id>``, ``sk = "RUN#<started_at>#<run_id>"``, ``kind = "job_run"``, ``created_at``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector_sla.errors import ValidationFailed
from connector_sla.storage.dynamo import ConditionFailed, Expression, Item, Table, decode_cursor, encode_cursor

JOB_SK = "JOB"
RUN_PREFIX = "RUN#"
JOB_KIND = "job"
RUN_KIND = "job_run"
_FIND_RUN_PAGES = 8


class StaleJob(Exception):
    """The job changed (or was deleted) since it was read."""


def run_sk(started_at: str, run_id: str) -> str:
    return f"{RUN_PREFIX}{started_at}#{run_id}"


class JobStore:
    """Job and run rows of JobsTable."""

    def __init__(self, table: Table) -> None:
        self.table = table

    # -------------------------------------------------------------------------------------------- jobs

    def create_job(self, job: Mapping[str, Any]) -> None:
        """Write a new job row; the id is fresh, so an existing row means a bug, not a race."""
        expr = Expression()
        self.table.put(
            {**job, "sk": JOB_SK, "kind": JOB_KIND}, condition=f"attribute_not_exists({expr.name('pk')})", expr=expr
        )

    def get_job(self, job_id: str) -> Item | None:
        return self.table.get({"pk": job_id, "sk": JOB_SK}, consistent=True)

    def update_job(self, job_id: str, changes: Mapping[str, Any], *, expected_version: int) -> Item:
        """Set ``changes`` and bump ``version`` if the row is still at ``expected_version``; raises StaleJob."""
        expr = Expression()
        update = expr.update(set_={**changes, "version": expected_version + 1})
        condition = f"{expr.name('version')} = {expr.value(expected_version)}"
        try:
            item = self.table.update(
                {"pk": job_id, "sk": JOB_SK}, expr, update, condition=condition, return_values="ALL_NEW"
            )
        except ConditionFailed as error:
            raise StaleJob(job_id) from error
        assert item is not None
        return item

    def delete_job(self, job_id: str) -> None:
        self.table.delete({"pk": job_id, "sk": JOB_SK})

    def list_jobs(
        self, *, limit: int, cursor: str | None, job_type: str | None = None, state: str | None = None
    ) -> tuple[list[Item], str | None]:
        """Jobs newest first (ByKind index), optionally filtered; returns the page and the next cursor."""
        expr = Expression()
        key = f"{expr.name('kind')} = {expr.value(JOB_KIND)}"
        filters = []
        if job_type:
            filters.append(f"{expr.name('job_type')} = {expr.value(job_type)}")
        if state:
            filters.append(f"{expr.name('state')} = {expr.value(state)}")
        start = decode_cursor(cursor, expected_keys={"pk", "sk", "kind", "created_at"})
        items, last = self.table.query_page(
            expr,
            key,
            index="ByKind",
            filter_expression=" AND ".join(filters) or None,
            limit=limit,
            start_key=start,
            newest_first=True,
        )
        return items, encode_cursor(last)

    # -------------------------------------------------------------------------------------------- lease

    def acquire_lease(self, job_id: str, run_id: str, sk: str, *, now: str, until: str) -> Item | None:
        """Make ``run_id`` the job's running run unless another run holds an unexpired lease.

        Returns the job row as it was before (so the caller sees an expired holder to close), or ``None`` when
        another run holds the lease or the job is gone.
        """
        expr = Expression()
        update = expr.update(set_={"running_run_id": run_id, "running_run_sk": sk, "lease_expires_at": until})
        free = (
            f"attribute_exists({expr.name('pk')}) AND (attribute_not_exists({expr.name('running_run_id')}) "
            f"OR {expr.name('lease_expires_at')} < {expr.value(now)})"
        )
        try:
            return self.table.update(
                {"pk": job_id, "sk": JOB_SK}, expr, update, condition=free, return_values="ALL_OLD"
            )
        except ConditionFailed:
            return None

    def release_lease(self, job_id: str, run_id: str, last_run: Mapping[str, Any]) -> None:
        """Clear the lease held by ``run_id`` and keep the run's summary on the job (no-op if the job is gone)."""
        expr = Expression()
        update = expr.update(
            set_={"last_run": dict(last_run)}, remove=["running_run_id", "running_run_sk", "lease_expires_at"]
        )
        condition = f"{expr.name('running_run_id')} = {expr.value(run_id)}"
        try:
            self.table.update({"pk": job_id, "sk": JOB_SK}, expr, update, condition=condition)
        except ConditionFailed:
            return

    # -------------------------------------------------------------------------------------------- runs

    def create_run(self, run: Mapping[str, Any]) -> None:
        expr = Expression()
        self.table.put({**run, "kind": RUN_KIND}, condition=f"attribute_not_exists({expr.name('pk')})", expr=expr)

    def find_run(self, job_id: str, run_id: str) -> Item | None:
        """A run of the job by id, searching newest first (a run being looked up is one of the newest)."""
        # Limitation: only the newest 400 runs are searched; a queued run that more than 400 newer runs overtook is
        # not found, and the runner then records the run under a new row with the same run id.
        expr = Expression()
        key = f"{expr.name('pk')} = {expr.value(job_id)} AND begins_with({expr.name('sk')}, {expr.value(RUN_PREFIX)})"
        start: Item | None = None
        for _ in range(_FIND_RUN_PAGES):
            items, start = self.table.query_page(
                expr, key, limit=50, start_key=start, newest_first=True, consistent=True
            )
            for item in items:
                if item.get("run_id") == run_id:
                    return item
            if start is None:
                return None
        return None

    def update_run(
        self,
        job_id: str,
        sk: str,
        changes: Mapping[str, Any],
        *,
        expected_status: str | Sequence[str] | None = None,
    ) -> bool:
        """Set ``changes`` on a run; with ``expected_status``, only if the run is in that status (else ``False``)."""
        expr = Expression()
        update = expr.update(set_=dict(changes))
        condition = f"attribute_exists({expr.name('pk')})"
        if expected_status is not None:
            statuses = [expected_status] if isinstance(expected_status, str) else list(expected_status)
            choices = ", ".join(expr.value(status) for status in statuses)
            condition += f" AND {expr.name('status')} IN ({choices})"
        try:
            self.table.update({"pk": job_id, "sk": sk}, expr, update, condition=condition)
        except ConditionFailed:
            return False
        return True

    def list_runs(
        self, job_id: str, *, limit: int, cursor: str | None, status: str | None = None
    ) -> tuple[list[Item], str | None]:
        """A job's runs newest first; returns the page and the next cursor."""
        expr = Expression()
        key = f"{expr.name('pk')} = {expr.value(job_id)} AND begins_with({expr.name('sk')}, {expr.value(RUN_PREFIX)})"
        start = decode_cursor(cursor, expected_keys={"pk", "sk"})
        if start is not None and start.get("pk") != job_id:
            raise ValidationFailed("cursor belongs to another job's runs: pass the next_cursor of this list unchanged")
        items, last = self.table.query_page(
            expr,
            key,
            filter_expression=f"{expr.name('status')} = {expr.value(status)}" if status else None,
            limit=limit,
            start_key=start,
            newest_first=True,
        )
        return items, encode_cursor(last)


class NotificationStates:
    """Reads the notifications a page of remote incidents names (their ACK state), 100 keys per request."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def get_many(self, notification_ids: Sequence[str]) -> dict[str, Item]:
        found: dict[str, Item] = {}
        for start in range(0, len(notification_ids), 100):
            keys = [{"notification_id": value} for value in notification_ids[start : start + 100]]
            for item in self.table.batch_get(keys, consistent=True):
                found[str(item["notification_id"])] = item
        return found
