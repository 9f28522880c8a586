"""Storage adapters of the replay workbench: the only replay code that talks to AWS.

- :class:`FailureStore`: dead-letter rows (FailuresTable) and the per-connector ``COUNTERS`` row, changed together
  in one TransactWriteItems, so the counters are exact without a counting scan.
- :class:`ConnectorConfigs`: reads a connector's ``CONFIG`` row (sources, replay target, payload schema).
- :class:`ReplayJobs`: replay job records (JobsTable, ``sk = REPLAY``) and the lease that lets one worker run a job.
- :class:`EventBridgePublisher`, :class:`SqsPublisher`: publish replayed rows in batches.
- :class:`WorkerLauncher`: starts the replay worker asynchronously.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector_sla.replay.payloads import chunk_by_size
from connector_sla.replay.rules import ConnectorConfig, CounterDelta, ListPlan, ReplayTarget
from connector_sla.storage.dynamo import (
    ConditionFailed,
    Expression,
    Item,
    Table,
    TransactionCanceled,
    to_item,
    transact,
)
from connector_sla.timeutil import to_iso

CONFIG_SK = "CONFIG"
COUNTERS_SK = "COUNTERS"
REPLAY_SK = "REPLAY"
_CONFLICT_RETRIES = 3
_Actions = Callable[[int], list[dict[str, Any]]]
_LIST_REQUEST_BUDGET = 20


class UnknownConnector(Exception):
    """The connector has no CONFIG row."""


class DuplicateReport(Exception):
    """A failure with this dedup key was recorded before; ``failure_id`` is that row."""

    def __init__(self, failure_id: str) -> None:
        super().__init__(failure_id)
        self.failure_id = failure_id


class RowChanged(Exception):
    """The row is no longer in the version that was read: read it again and decide again."""


class LeaseLost(Exception):
    """Another worker holds the replay job now: this worker must stop without writing anything more."""


# ------------------------------------------------------------------------------------------------ connector config


class ConnectorConfigs:
    """Reads a connector's CONFIG row (written by the registry API)."""

    def __init__(self, connectors: Table) -> None:
        self.connectors = connectors

    def get(self, connector_id: str) -> ConnectorConfig | None:
        """The connector's configuration, or ``None`` when it is not registered."""
        item = self.connectors.get({"pk": connector_id, "sk": CONFIG_SK})
        if item is None:
            return None
        target = item.get("replay_target") or None
        schema = item.get("payload_schema")
        return ConnectorConfig(
            connector_id=connector_id,
            name=str(item.get("name") or connector_id),
            source_ids=tuple(str(source.get("source_id")) for source in item.get("sources") or []),
            replay_target=ReplayTarget(str(target.get("kind")), str(target.get("arn"))) if target else None,
            payload_schema=schema if isinstance(schema, dict) else None,
        )


# ------------------------------------------------------------------------------------------------ update actions


@dataclass
class RowChange:
    """One row update: attributes to set, history (and patch log) entries to append, the version it expects."""

    failure_id: str
    expected_version: int
    set_values: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    set_if_missing: dict[str, Any] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    expected_statuses: tuple[str, ...] = ()


def _update_action(
    table: str, key: Mapping[str, Any], expr: Expression, clauses: list[str], condition: str | None
) -> dict[str, Any]:
    action: dict[str, Any] = {"TableName": table, "Key": to_item(key), "UpdateExpression": " ".join(clauses)}
    if condition:
        action["ConditionExpression"] = condition
    action.update(expr.params())
    return {"Update": action}


def _row_action(table: str, change: RowChange) -> dict[str, Any]:
    expr = Expression()
    sets = [
        f"{expr.name(name)} = {expr.value(value)}" for name, value in change.set_values.items() if value is not None
    ]
    removed = list(change.remove) + [name for name, value in change.set_values.items() if value is None]
    for name, value in change.set_if_missing.items():
        placeholder = expr.name(name)
        sets.append(f"{placeholder} = if_not_exists({placeholder}, {expr.value(value)})")
    for name, entries in (("history", change.history), ("patches", change.patches)):
        if entries:
            placeholder = expr.name(name)
            existing = f"if_not_exists({placeholder}, {expr.value([])})"
            sets.append(f"{placeholder} = list_append({existing}, {expr.value(entries)})")
    clauses = ["SET " + ", ".join(sets)]
    if removed:
        clauses.append("REMOVE " + ", ".join(expr.name(name) for name in removed))
    condition = f"{expr.name('version')} = {expr.value(change.expected_version)}"
    if change.expected_statuses:
        options = ", ".join(expr.value(status) for status in change.expected_statuses)
        condition += f" AND {expr.name('status')} IN ({options})"
    return _update_action(table, {"failure_id": change.failure_id}, expr, clauses, condition)


def _counters_action(table: str, connector_id: str, delta: CounterDelta, now: datetime) -> dict[str, Any] | None:
    added = delta.nonzero()
    if not added:
        return None
    expr = Expression()
    stamp = f"{expr.name('updated_at')} = {expr.value(to_iso(now))}"
    owner = f"{expr.name('connector_id')} = {expr.value(connector_id)}"
    clauses = [
        f"SET {stamp}, {owner}",
        "ADD " + ", ".join(f"{expr.name(name)} {expr.value(value)}" for name, value in added.items()),
    ]
    return _update_action(table, {"pk": connector_id, "sk": COUNTERS_SK}, expr, clauses, None)


def _job_action(table: str, replay_id: str, owner: str, values: Mapping[str, Any]) -> dict[str, Any]:
    expr = Expression()
    clauses = ["SET " + ", ".join(f"{expr.name(name)} = {expr.value(value)}" for name, value in values.items())]
    condition = f"{expr.name('lease_owner')} = {expr.value(owner)}"
    return _update_action(table, {"pk": replay_id, "sk": REPLAY_SK}, expr, clauses, condition)


def _transact_with_retries(dynamodb: Any, actions: list[dict[str, Any]]) -> None:
    for attempt in range(_CONFLICT_RETRIES + 1):
        try:
            transact(dynamodb, actions)
        except TransactionCanceled as error:
            if "TransactionConflict" not in error.reasons or attempt == _CONFLICT_RETRIES:
                raise
        else:
            return


# ------------------------------------------------------------------------------------------------ failures


class FailureStore:
    """Dead-letter rows and the counters of their connectors."""

    def __init__(self, failures: Table, connectors: Table, jobs: Table) -> None:
        self.failures = failures
        self.connectors = connectors
        self.jobs = jobs
        self.dynamodb = failures.dynamodb

    # -- reads

    def get(self, failure_id: str) -> Item | None:
        """The row (strongly consistent), or ``None``."""
        return self.failures.get({"failure_id": failure_id}, consistent=True)

    def get_many(self, failure_ids: Sequence[str]) -> dict[str, Item]:
        """The rows found among ``failure_ids`` (strongly consistent), by id."""
        found: dict[str, Item] = {}
        for start in range(0, len(failure_ids), 100):
            keys = [{"failure_id": failure_id} for failure_id in failure_ids[start : start + 100]]
            for item in self.failures.batch_get(keys, consistent=True):
                found[item["failure_id"]] = item
        return found

    def dedup_target(self, marker_id: str) -> str | None:
        """The failure a dedup marker points to."""
        item = self.failures.get({"failure_id": marker_id}, consistent=True)
        return str(item["points_to"]) if item else None

    def counters(self, connector_id: str) -> Item:
        """The connector's COUNTERS row (zeros before its first failure)."""
        item = self.connectors.get({"pk": connector_id, "sk": COUNTERS_SK}, consistent=True) or {}
        return {name: int(item.get(name) or 0) for name in ("dead_letter_total", "pending_replay", "replayed_total")}

    def list_page(
        self,
        plan: ListPlan,
        *,
        day_index: int,
        after: Mapping[str, str] | None,
        status: str | None,
        error_kind: str | None,
        limit: int,
    ) -> tuple[list[Item], dict[str, Any] | None]:
        """Up to ``limit`` rows, newest first, and the cursor of the next page (``None`` at the end).

        Stops after a bounded number of requests (a filter that matches little in a long history): the cursor
        then points just after what was read, so the next page goes on from there.
        """
        found: list[Item] = []
        requests = 0
        if plan.index == "ByDay" and not plan.days:
            return found, None
        while True:
            partition = plan.connector_id if plan.index == "ByConnector" else plan.days[day_index]
            expr, key_condition, filter_expression = _list_query(plan, partition, status, error_kind)
            items, last = self.failures.query_page(
                expr,
                key_condition,
                index=plan.index,
                filter_expression=filter_expression,
                limit=max(limit, 50),
                start_key=after,
                newest_first=True,
            )
            requests += 1
            more_days = plan.index == "ByDay" and day_index + 1 < len(plan.days)
            for position, item in enumerate(items):
                found.append(item)
                if len(found) == limit:
                    at_the_end = position == len(items) - 1 and last is None and not more_days
                    return found, None if at_the_end else _cursor(plan, day_index, item)
            if last is not None:
                after = {name: str(last[name]) for name in plan.key_names()}
            elif more_days:
                day_index, after = day_index + 1, None
            else:
                return found, None
            if requests >= _LIST_REQUEST_BUDGET:
                return found, {"day": _day(plan, day_index), "after": after}

    def replay_page(
        self,
        connector_id: str,
        *,
        since: str | None,
        until: str,
        status: str | None,
        error_kind: str | None,
        replay_id: str | None,
        after: Mapping[str, str] | None,
        limit: int,
    ) -> tuple[list[Item], dict[str, str] | None]:
        """One page of a connector's rows a filter replay selects, oldest first, and where the next page starts.

        Selected: dead or patched rows (or only ``status``), and the rows this replay claimed and has not recorded.
        """
        expr = Expression()
        key_condition = f"{expr.name('connector_id')} = {expr.value(connector_id)} AND {expr.name('failed_at')} "
        key_condition += f"BETWEEN {expr.value(since)} AND {expr.value(until)}" if since else f"<= {expr.value(until)}"
        statuses = [status] if status else ["dead", "patched"]
        selected = f"{expr.name('status')} IN ({', '.join(expr.value(value) for value in statuses)})"
        if replay_id:
            claimed = f"{expr.name('status')} = {expr.value('replaying')}"
            mine = f"{claimed} AND {expr.name('replay_id')} = {expr.value(replay_id)}"
            selected = f"({selected} OR ({mine}))"
        if error_kind:
            selected += f" AND {expr.name('error_kind')} = {expr.value(error_kind)}"
        items, last = self.failures.query_page(
            expr, key_condition, index="ByConnector", filter_expression=selected, limit=limit, start_key=after
        )
        next_key = {name: str(last[name]) for name in ("connector_id", "failed_at", "failure_id")} if last else None
        return items, next_key

    # -- writes

    def insert(self, row: Mapping[str, Any], *, marker_id: str | None, now: datetime) -> None:
        """Store a new row and count it, if its connector is registered and its dedup key is new."""
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.failures.name,
                    "Item": to_item(row),
                    "ConditionExpression": "attribute_not_exists(failure_id)",
                }
            }
        ]
        if marker_id:
            marker = {"failure_id": marker_id, "points_to": row["failure_id"], "created_at": to_iso(now)}
            actions.append(
                {
                    "Put": {
                        "TableName": self.failures.name,
                        "Item": to_item(marker),
                        "ConditionExpression": "attribute_not_exists(failure_id)",
                    }
                }
            )
        actions.append(
            {
                "ConditionCheck": {
                    "TableName": self.connectors.name,
                    "Key": to_item({"pk": row["connector_id"], "sk": CONFIG_SK}),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            }
        )
        counters = _counters_action(self.connectors.name, row["connector_id"], CounterDelta(1, 1, 0), now)
        assert counters is not None
        actions.append(counters)
        try:
            _transact_with_retries(self.dynamodb, actions)
        except TransactionCanceled as error:
            if marker_id and error.reasons[1] == "ConditionalCheckFailed":
                target = self.dedup_target(marker_id)
                if target:
                    raise DuplicateReport(target) from error
            if error.reasons[-2] == "ConditionalCheckFailed":
                raise UnknownConnector(row["connector_id"]) from error
            raise

    def change_row(
        self, connector_id: str, change: RowChange, delta: CounterDelta, *, now: datetime, job_id: str | None = None
    ) -> None:
        """Apply one row change and its counter delta together; ``job_id`` also counts a failed-again row on the
        replay job that published it (when that job record still exists). Raises :class:`RowChanged`."""
        actions = [_row_action(self.failures.name, change)]
        counters = _counters_action(self.connectors.name, connector_id, delta, now)
        if counters:
            actions.append(counters)
        if job_id:
            expr = Expression()
            clause = f"ADD {expr.name('failed_again_count')} {expr.value(1)}"
            actions.append(
                _update_action(self.jobs.name, {"pk": job_id, "sk": REPLAY_SK}, expr, [clause], "attribute_exists(pk)")
            )
        try:
            _transact_with_retries(self.dynamodb, actions)
        except TransactionCanceled as error:
            if error.reasons[0] == "ConditionalCheckFailed":
                raise RowChanged(change.failure_id) from error
            if job_id and error.reasons[-1] == "ConditionalCheckFailed":
                self.change_row(connector_id, change, delta, now=now)
                return
            raise

    def claim(self, changes: list[RowChange], *, replay_id: str, owner: str) -> set[str]:
        """Claim rows for a replay, all at once, as long as this worker holds the job; returns the ids that
        changed meanwhile (not claimed). Raises :class:`LeaseLost`."""
        lease = Expression()
        check = {
            "ConditionCheck": {
                "TableName": self.jobs.name,
                "Key": to_item({"pk": replay_id, "sk": REPLAY_SK}),
                "ConditionExpression": f"{lease.name('lease_owner')} = {lease.value(owner)}",
                **lease.params(),
            }
        }
        return self._apply_rows(changes, head=lambda _: [check], tail=lambda _: [])

    def record_replayed(
        self,
        connector_id: str,
        changes: list[RowChange],
        *,
        replay_id: str,
        owner: str,
        job_values: Callable[[int], Mapping[str, Any]],
        now: datetime,
    ) -> set[str]:
        """Mark published rows replayed, adjust the counters and save the job's progress in one transaction.

        ``job_values`` gives the job's progress for the number of rows actually recorded. Returns the ids that
        changed meanwhile (they failed again before being recorded) and are not counted. Raises :class:`LeaseLost`.
        """

        def job_for(count: int) -> list[dict[str, Any]]:
            return [_job_action(self.jobs.name, replay_id, owner, job_values(count))]

        def counters_for(count: int) -> list[dict[str, Any]]:
            action = _counters_action(self.connectors.name, connector_id, CounterDelta(0, -count, count), now)
            return [action] if action else []

        return self._apply_rows(changes, head=job_for, tail=counters_for)

    def _apply_rows(self, changes: list[RowChange], *, head: _Actions, tail: _Actions) -> set[str]:
        lost: set[str] = set()
        remaining = list(changes)
        while True:
            rows = [_row_action(self.failures.name, change) for change in remaining]
            first = head(len(remaining))
            if not rows and not first:
                return lost
            try:
                _transact_with_retries(self.dynamodb, first + rows + tail(len(remaining)))
            except TransactionCanceled as error:
                if any(reason == "ConditionalCheckFailed" for reason in error.reasons[: len(first)]):
                    raise LeaseLost() from error
                failed = {
                    remaining[index - len(first)].failure_id
                    for index, reason in enumerate(error.reasons)
                    if reason == "ConditionalCheckFailed" and len(first) <= index < len(first) + len(rows)
                }
                if not failed:
                    raise
                lost |= failed
                remaining = [change for change in remaining if change.failure_id not in failed]
            else:
                return lost


def _list_query(
    plan: ListPlan, partition: str | None, status: str | None, error_kind: str | None
) -> tuple[Expression, str, str | None]:
    expr = Expression()
    partition_name = "connector_id" if plan.index == "ByConnector" else "day"
    key_condition = f"{expr.name(partition_name)} = {expr.value(partition)}"
    if plan.since and plan.until:
        between = f"BETWEEN {expr.value(plan.since)} AND {expr.value(plan.until)}"
        key_condition += f" AND {expr.name('failed_at')} {between}"
    elif plan.since:
        key_condition += f" AND {expr.name('failed_at')} >= {expr.value(plan.since)}"
    elif plan.until:
        key_condition += f" AND {expr.name('failed_at')} <= {expr.value(plan.until)}"
    filters = []
    if status:
        filters.append(f"{expr.name('status')} = {expr.value(status)}")
    if error_kind:
        filters.append(f"{expr.name('error_kind')} = {expr.value(error_kind)}")
    return expr, key_condition, " AND ".join(filters) or None


def _day(plan: ListPlan, day_index: int) -> str:
    return plan.days[day_index] if plan.index == "ByDay" else ""


def _cursor(plan: ListPlan, day_index: int, item: Mapping[str, Any]) -> dict[str, Any]:
    return {"day": _day(plan, day_index), "after": {name: str(item[name]) for name in plan.key_names()}}


# ------------------------------------------------------------------------------------------------ replay jobs


class ReplayJobs:
    """Replay job records (JobsTable, ``pk = replay_id``, ``sk = REPLAY``, ``kind = replay``)."""

    def __init__(self, jobs: Table) -> None:
        self.jobs = jobs

    def create(self, job: Mapping[str, Any]) -> None:
        self.jobs.put({**job, "sk": REPLAY_SK}, condition="attribute_not_exists(pk)")

    def get(self, replay_id: str) -> Item | None:
        return self.jobs.get({"pk": replay_id, "sk": REPLAY_SK}, consistent=True)

    def acquire(self, replay_id: str, *, owner: str, lease_until: datetime, now: datetime) -> Item | None:
        """Take the job for this worker until ``lease_until``; ``None`` when another live worker holds it or it
        has finished."""
        expr = Expression()
        status = expr.name("status")
        lease = expr.name("lease_until")
        started = expr.name("started_at")
        clauses = [
            f"SET {status} = {expr.value('running')}, {expr.name('lease_owner')} = {expr.value(owner)}, "
            f"{lease} = {expr.value(to_iso(lease_until))}, {expr.name('updated_at')} = {expr.value(to_iso(now))}, "
            f"{started} = if_not_exists({started}, {expr.value(to_iso(now))})",
            f"ADD {expr.name('invocations')} {expr.value(1)}",
        ]
        condition = (
            f"{status} IN ({expr.value('queued')}, {expr.value('interrupted')}) OR "
            f"({status} = {expr.value('running')} AND {lease} < {expr.value(to_iso(now))})"
        )
        try:
            return self.jobs.update(
                {"pk": replay_id, "sk": REPLAY_SK},
                expr,
                " ".join(clauses),
                condition=condition,
                return_values="ALL_NEW",
            )
        except ConditionFailed:
            return None

    def save(self, replay_id: str, *, owner: str, values: Mapping[str, Any], release: bool = False) -> None:
        """Save progress (and with ``release``, give the job up) while this worker holds it; else
        :class:`LeaseLost`."""
        expr = Expression()
        sets = ", ".join(f"{expr.name(name)} = {expr.value(value)}" for name, value in values.items())
        update = f"SET {sets}"
        if release:
            update += f" REMOVE {expr.name('lease_owner')}, {expr.name('lease_until')}"
        try:
            self.jobs.update(
                {"pk": replay_id, "sk": REPLAY_SK},
                expr,
                update,
                condition=f"{expr.name('lease_owner')} = {expr.value(owner)}",
            )
        except ConditionFailed as error:
            raise LeaseLost() from error

    def requeue(self, replay_id: str, *, expected_status: str, values: Mapping[str, Any]) -> None:
        """Put a stopped job back in the queue, if it is still as it was read; else :class:`RowChanged`."""
        expr = Expression()
        sets = ", ".join(f"{expr.name(name)} = {expr.value(value)}" for name, value in values.items())
        try:
            self.jobs.update(
                {"pk": replay_id, "sk": REPLAY_SK},
                expr,
                f"SET {sets}",
                condition=f"{expr.name('status')} = {expr.value(expected_status)}",
            )
        except ConditionFailed as error:
            raise RowChanged(replay_id) from error


# ------------------------------------------------------------------------------------------------ publishing


@dataclass(frozen=True)
class OutgoingMessage:
    """One replayed row as published: ``entry_id`` is its failure id, ``body`` the JSON document."""

    entry_id: str
    replay_key: str
    group: str
    body: str


@dataclass
class PublishResult:
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


# Both services refuse a request over 256 KiB; a little room for the envelope each entry gets.
_MAX_BATCH_BYTES = 250 * 1024
_ENTRY_OVERHEAD = 512


class EventBridgePublisher:
    """Publishes to an EventBridge bus: source ``connector-sla.replay``, detail-type ``connector_failure_replay``."""

    source = "connector-sla.replay"
    detail_type = "connector_failure_replay"

    def __init__(self, events: Any, bus_arn: str) -> None:
        self.events = events
        self.bus_arn = bus_arn

    def publish(self, messages: Sequence[OutgoingMessage]) -> PublishResult:
        """Publish in batches of 10; entries the service refused are returned in ``failed`` (code: message)."""
        result = PublishResult()
        sizes = [len(message.body.encode()) + _ENTRY_OVERHEAD for message in messages]
        for batch in chunk_by_size(sizes, max_count=10, max_bytes=_MAX_BATCH_BYTES):
            chosen = [messages[index] for index in batch]
            entries = [
                {
                    "Source": self.source,
                    "DetailType": self.detail_type,
                    "Detail": message.body,
                    "EventBusName": self.bus_arn,
                    "Resources": [],
                }
                for message in chosen
            ]
            try:
                response = self.events.put_events(Entries=entries)
            except (ClientError, BotoCoreError) as error:
                _fail_all(result, chosen, error)
                continue
            for message, entry in zip(chosen, response.get("Entries", []), strict=False):
                if entry.get("ErrorCode"):
                    result.failed[message.entry_id] = f"{entry['ErrorCode']}: {entry.get('ErrorMessage', '')}"
                else:
                    result.sent.append(message.entry_id)
        return result


class SqsPublisher:
    """Publishes to an SQS queue (a FIFO queue gets the replay key as deduplication id)."""

    def __init__(self, sqs: Any, queue_arn: str) -> None:
        self.sqs = sqs
        self.queue_arn = queue_arn
        self.fifo = queue_arn.endswith(".fifo")

    @property
    def queue_url(self) -> str:
        return _queue_url(self.sqs, self.queue_arn)

    def publish(self, messages: Sequence[OutgoingMessage]) -> PublishResult:
        """Publish in batches of 10 (and under 256 KiB); refused entries are returned in ``failed``."""
        result = PublishResult()
        sizes = [len(message.body.encode()) + _ENTRY_OVERHEAD for message in messages]
        for batch in chunk_by_size(sizes, max_count=10, max_bytes=_MAX_BATCH_BYTES):
            chosen = [messages[index] for index in batch]
            entries = []
            for message in chosen:
                entry: dict[str, Any] = {
                    "Id": message.entry_id,
                    "MessageBody": message.body,
                    "MessageAttributes": {"replay_key": {"DataType": "String", "StringValue": message.replay_key}},
                }
                if self.fifo:
                    entry["MessageDeduplicationId"] = message.replay_key.replace(":", "-")
                    entry["MessageGroupId"] = message.group
                entries.append(entry)
            try:
                response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                _fail_all(result, chosen, error)
                continue
            result.sent.extend(entry["Id"] for entry in response.get("Successful", []))
            for entry in response.get("Failed", []):
                result.failed[entry["Id"]] = f"{entry.get('Code', 'Failed')}: {entry.get('Message', '')}"
        return result


@cache
def _queue_url_cached(sqs: Any, name: str, account: str) -> str:
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def _queue_url(sqs: Any, queue_arn: str) -> str:
    parts = queue_arn.split(":")
    return _queue_url_cached(sqs, parts[5], parts[4])


def _fail_all(result: PublishResult, messages: Iterable[OutgoingMessage], error: Exception) -> None:
    code = error.response.get("Error", {}).get("Code", "Error") if isinstance(error, ClientError) else "Error"
    for message in messages:
        result.failed[message.entry_id] = f"{code}: {error}"


class Publishers:
    """One publisher per replay target, created on first use."""

    def __init__(self, events: Any, sqs: Any) -> None:
        self.events = events
        self.sqs = sqs

    def for_target(self, target: ReplayTarget) -> EventBridgePublisher | SqsPublisher:
        if target.kind == "sqs":
            return SqsPublisher(self.sqs, target.arn)
        return EventBridgePublisher(self.events, target.arn)


class WorkerLauncher:
    """Starts the replay worker for a job (``InvocationType=Event``: the caller does not wait)."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name

    def launch(self, replay_id: str) -> None:
        payload = json.dumps({"replay_id": replay_id}).encode()
        self.lambda_client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=payload)
