"""Storage adapters of the dashboard: the recent rows of every table, and the operator sign-in settings (SSM)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from connector_sla.dashboard.data import DELIVERIES_SHOWN, EXPORTS_SHOWN, TIMELINE_LIMIT, DashboardInputs
from connector_sla.storage.dynamo import Expression, Item, Table
from connector_sla.timeutil import days_between, to_iso

logger = Logger(child=True)

MAX_CONNECTOR_ROWS = 20_000  # about 5,000 connectors (CONFIG, PROGRESS, COUNTERS and STATE rows each)
CALLBACKS_READ = 200
JOB_RUNS_READ = 50


class DashboardReader:
    """Reads what one dashboard refresh needs: a scan of the connector rows and newest-first pages elsewhere."""

    def __init__(
        self,
        *,
        connectors: Table,
        transitions: Table,
        notifications: Table,
        deliveries: Table,
        callbacks: Table,
        jobs: Table,
    ) -> None:
        self.connectors = connectors
        self.transitions = transitions
        self.notifications = notifications
        self.deliveries = deliveries
        self.callbacks = callbacks
        self.jobs = jobs

    def inputs(self, *, now: datetime, window_hours: int) -> DashboardInputs:
        """Every row the panels show: connector rows, and the window's recent records (bounded per panel)."""
        since = now - timedelta(hours=window_hours)
        rows, notes = self.connector_rows()
        return DashboardInputs(
            connector_rows=rows,
            transitions=self.recent(self.transitions, "at", since=since, now=now, limit=TIMELINE_LIMIT),
            notifications=self.recent(self.notifications, "created_at", since=since, now=now, limit=TIMELINE_LIMIT),
            deliveries=self.recent(self.deliveries, "at", since=since, now=now, limit=DELIVERIES_SHOWN),
            callbacks=self.recent(self.callbacks, "received_at", since=since, now=now, limit=CALLBACKS_READ),
            job_runs=self.newest_of_kind("job_run", limit=JOB_RUNS_READ),
            exports=self.newest_of_kind("export", limit=EXPORTS_SHOWN),
            notes=notes,
        )

    def connector_rows(self) -> tuple[list[Item], list[str]]:
        """The CONFIG and STATE rows of every connector (a scan: the table holds a few rows per connector)."""
        rows: list[Item] = []
        scanned = 0
        for page in self.connectors.scan_pages():
            scanned += len(page)
            rows.extend(row for row in page if row.get("sk") in ("CONFIG", "STATE"))
            if scanned >= MAX_CONNECTOR_ROWS:
                return rows, [f"only the first {scanned} connector rows were read; some connectors are not shown"]
        return rows, []

    def recent(self, table: Table, time_field: str, *, since: datetime, now: datetime, limit: int) -> list[Item]:
        """Rows of ``table`` whose ``time_field`` is within ``[since, now]``, newest first, at most ``limit``."""
        found: list[Item] = []
        for day in reversed(days_between(since, now)):
            expr = Expression()
            condition = (
                f"{expr.name('day')} = {expr.value(day)} AND "
                f"{expr.name(time_field)} BETWEEN {expr.value(to_iso(since))} AND {expr.value(to_iso(now))}"
            )
            start_key = None
            while len(found) < limit:
                items, start_key = table.query_page(
                    expr, condition, index="ByDay", limit=limit - len(found), start_key=start_key, newest_first=True
                )
                found.extend(items)
                if start_key is None:
                    break
            if len(found) >= limit:
                break
        return found

    def newest_of_kind(self, kind: str, *, limit: int) -> list[Item]:
        """The newest JobsTable rows of one kind (``job_run``, ``export``) from the ByKind index."""
        expr = Expression()
        items, _ = self.jobs.query_page(
            expr, f"{expr.name('kind')} = {expr.value(kind)}", index="ByKind", limit=limit, newest_first=True
        )
        return items


class SignInSettings:
    """The operator sign-in settings document (SSM String parameter ``{"mode", "domain", "client_id"}``)."""

    def __init__(self, ssm: Any, parameter_name: str) -> None:
        self.ssm = ssm
        self.parameter_name = parameter_name

    def read(self) -> str | None:
        """The parameter's raw value, or ``None`` when it is not configured or cannot be read.

        Read on every page load (not cached): the page is loaded once per session, and a changed setting shows at
        once.
        """
        if not self.parameter_name:
            return None
        try:
            return str(self.ssm.get_parameter(Name=self.parameter_name)["Parameter"]["Value"])
        except (ClientError, BotoCoreError) as error:
            logger.warning("sign-in settings unreadable", parameter=self.parameter_name, reason=str(error))
            return None
