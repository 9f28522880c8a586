"""The rules of a dead-letter row's life, as plain functions over plain values (no AWS, ``now`` is a parameter).

A row is always in one of four statuses and moves only along these events::

    reported      (new)              -> dead
    patched       dead | patched     -> patched
    replay_started dead | patched    -> replaying      (a replay job claimed it; replay_key = <failure_id>:<attempt>)
    replayed      replaying          -> replayed       (published to the connector's replay target and recorded)
    failed_again  replaying|replayed -> dead           (the consumer of the replay reported it failed again)

Every event appends one entry to the row's ``history`` (who, when, from and to which status), so the history
always shows how a row got where it is. The per-connector counters change by :func:`counter_delta` of the event,
in the same transaction as the row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from connector_sla.errors import Conflict, ValidationFailed
from connector_sla.timeutil import day_of, days_between, parse_iso, to_iso

STATUSES = ("dead", "patched", "replaying", "replayed")
PENDING_STATUSES = frozenset({"dead", "patched", "replaying"})
REPLAYABLE_STATUSES = frozenset({"dead", "patched"})
ERROR_KINDS = ("parse", "mapping", "upstream", "other")
EVENTS = ("reported", "patched", "replay_started", "replayed", "failed_again")

# A row that keeps failing is a problem for a person, not for another replay; this also bounds the row's history.
MAX_REPLAY_ATTEMPTS = 25
MAX_ERROR_MESSAGE_CHARS = 4000
# DynamoDB refuses items over 400 KB; leave room for the attribute names and the next history entries.
MAX_ROW_BYTES = 350_000

FAILURE_ID_PATTERN = r"^flr_[0-9A-Z]{26}$"
REPLAY_ID_PATTERN = r"^rpl_[0-9A-Z]{26}$"
REPLAY_KEY_PATTERN = r"^(flr_[0-9A-Z]{26}):([1-9][0-9]{0,5})$"
CONNECTOR_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,62}$"

_NEXT_STATUS: dict[tuple[str, str | None], str] = {
    ("reported", None): "dead",
    ("patched", "dead"): "patched",
    ("patched", "patched"): "patched",
    ("replay_started", "dead"): "replaying",
    ("replay_started", "patched"): "replaying",
    ("replayed", "replaying"): "replayed",
    ("failed_again", "replaying"): "dead",
    ("failed_again", "replayed"): "dead",
}


class IllegalTransition(ValueError):
    """An event that the row's current status does not allow."""


def next_status(event: str, current: str | None) -> str:
    """The status a row moves to on ``event``; raises :class:`IllegalTransition` when the event is not allowed."""
    try:
        return _NEXT_STATUS[(event, current)]
    except KeyError:
        raise IllegalTransition(f"{event} is not allowed for a row that is {current or 'new'}") from None


@dataclass(frozen=True)
class CounterDelta:
    """What one event adds to a connector's ``COUNTERS`` row."""

    dead_letter_total: int = 0
    pending_replay: int = 0
    replayed_total: int = 0

    def __add__(self, other: CounterDelta) -> CounterDelta:
        return CounterDelta(
            self.dead_letter_total + other.dead_letter_total,
            self.pending_replay + other.pending_replay,
            self.replayed_total + other.replayed_total,
        )

    def nonzero(self) -> dict[str, int]:
        values = {
            "dead_letter_total": self.dead_letter_total,
            "pending_replay": self.pending_replay,
            "replayed_total": self.replayed_total,
        }
        return {name: value for name, value in values.items() if value}


def counter_delta(event: str, current: str | None) -> CounterDelta:
    """The counter change of ``event`` on a row in status ``current``.

    ``dead_letter_total`` counts every landing in the dead-letter store (a report, a failure after a replay);
    ``pending_replay`` counts rows that are dead, patched or replaying; ``replayed_total`` counts recorded replays.
    """
    after = next_status(event, current)
    landed = 1 if event in ("reported", "failed_again") else 0
    pending = int(after in PENDING_STATUSES) - int(current in PENDING_STATUSES)
    return CounterDelta(dead_letter_total=landed, pending_replay=pending, replayed_total=int(event == "replayed"))


def history_entry(event: str, current: str | None, *, at: datetime, by: str, **fields: Any) -> dict[str, Any]:
    """One history entry: the event, the statuses before and after, who and when, and event-specific fields."""
    entry: dict[str, Any] = {
        "at": to_iso(at),
        "event": event,
        "from_status": current,
        "to_status": next_status(event, current),
        "by": by,
    }
    entry.update(fields)
    return {key: value for key, value in entry.items() if value is not None}


def truncate_error_message(message: str) -> tuple[str, bool]:
    """The error message as stored (at most 4000 characters) and whether it was cut: a report is never refused
    because a stack trace is long."""
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message, False
    return message[: MAX_ERROR_MESSAGE_CHARS - 1] + "\u2026", True


def new_failure_row(
    *,
    failure_id: str,
    connector_id: str,
    source_id: str,
    error_kind: str,
    error_message: str,
    retry_count: int,
    payload_json: str,
    payload_hash: str,
    now: datetime,
    actor: str,
    occurred_at: datetime | None = None,
    dedup_key: str | None = None,
) -> dict[str, Any]:
    """The row of a newly reported failure, status ``dead``, with its first history entry."""
    message, truncated = truncate_error_message(error_message)
    at = to_iso(now)
    row: dict[str, Any] = {
        "failure_id": failure_id,
        "connector_id": connector_id,
        "source_id": source_id,
        "error_kind": error_kind,
        "error_message": message,
        "error_message_truncated": truncated or None,
        "retry_count": retry_count,
        "status": next_status("reported", None),
        "payload_json": payload_json,
        "payload_sha256": payload_hash,
        "original_payload_sha256": payload_hash,
        "failed_at": at,
        "first_failed_at": at,
        "day": day_of(now),
        "occurred_at": to_iso(occurred_at) if occurred_at else None,
        "reported_by": actor,
        "dedup_key": dedup_key,
        "patch_count": 0,
        "replay_attempts": 0,
        "version": 1,
        "updated_at": at,
        "history": [
            history_entry(
                "reported",
                None,
                at=now,
                by=actor,
                source_id=source_id,
                error_kind=error_kind,
                retry_count=retry_count,
                payload_sha256=payload_hash,
            )
        ],
    }
    return {key: value for key, value in row.items() if value is not None}


def row_bytes(row: Mapping[str, Any]) -> int:
    """An upper estimate of a row's stored size (its JSON text is longer than DynamoDB's encoding)."""
    return len(json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def check_row_size(row: Mapping[str, Any]) -> None:
    """Refuse (409) a change that would make the row too large to store."""
    size = row_bytes(row)
    if size > MAX_ROW_BYTES:
        raise Conflict(
            f"failure {row.get('failure_id')} would grow to about {size} bytes with this change, above the "
            f"{MAX_ROW_BYTES} bytes a row may hold; send a smaller patch (e.g. one replace of the whole payload)"
        )


# ------------------------------------------------------------------------------------------------ connectors


@dataclass(frozen=True)
class ReplayTarget:
    kind: str
    arn: str


@dataclass(frozen=True)
class ConnectorConfig:
    """What the workbench reads of a connector's CONFIG row."""

    connector_id: str
    name: str
    source_ids: tuple[str, ...]
    replay_target: ReplayTarget | None
    payload_schema: dict[str, Any] | None


def resolve_target(config: ConnectorConfig, allowed: tuple[str, ...]) -> ReplayTarget:
    """The connector's replay target if this deployment allows it; a 400 that says what to fix otherwise."""
    target = config.replay_target
    connector_id = config.connector_id
    if target is None:
        raise ValidationFailed(
            f"connector {connector_id} has no replay_target: set one ({{kind: eventbridge|sqs, arn}}) with "
            f"PUT /events/connectors/{connector_id} before replaying its rows"
        )
    if target.arn not in allowed:
        raise ValidationFailed(
            f"replay target {target.arn} of connector {connector_id} is not an allowed replay target of this "
            f"deployment (allowed: {', '.join(allowed) or 'none'}); nothing was replayed"
        )
    service = target.arn.split(":")[2] if target.arn.count(":") >= 5 else ""
    if (target.kind, service) not in (("eventbridge", "events"), ("sqs", "sqs")):
        raise ValidationFailed(
            f"replay target of connector {connector_id} says kind {target.kind} but its ARN is {target.arn}"
        )
    return target


# ------------------------------------------------------------------------------------------------ patches


def check_patchable(row: Mapping[str, Any]) -> None:
    """A row can be patched while it is dead or patched; otherwise a 409 that says why."""
    status = row["status"]
    if status == "replaying":
        raise Conflict(
            f"failure {row['failure_id']} is being replayed by {row.get('replay_id')}; "
            "patch it after the replay finishes (and only if it fails again)"
        )
    if status == "replayed":
        raise Conflict(
            f"failure {row['failure_id']} was already replayed ({row.get('replay_key')}); a replayed row can be "
            "patched again only after it fails again and returns to dead"
        )


def patch_fields(
    row: Mapping[str, Any],
    *,
    new_payload_json: str,
    new_hash: str,
    operations_json: str,
    comment: str | None,
    actor: str,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What a saved patch changes: the attributes to set, the patch log entry and the history entry."""
    check_patchable(row)
    number = int(row.get("patch_count") or 0) + 1
    before = row["payload_sha256"]
    patch = {
        "patch_no": number,
        "at": to_iso(now),
        "by": actor,
        "before_sha256": before,
        "after_sha256": new_hash,
        "operations": operations_json,
        "comment": comment,
    }
    patch = {key: value for key, value in patch.items() if value is not None}
    entry = history_entry(
        "patched", row["status"], at=now, by=actor, patch_no=number, before_sha256=before, after_sha256=new_hash
    )
    updates = {
        "status": entry["to_status"],
        "payload_json": new_payload_json,
        "payload_sha256": new_hash,
        "patch_count": number,
        "updated_at": to_iso(now),
        "version": int(row["version"]) + 1,
    }
    return updates, patch, entry


# ------------------------------------------------------------------------------------------------ replay keys


def replay_key(failure_id: str, attempt: int) -> str:
    """The idempotency key a replayed message carries: the same for a re-publish of the same attempt."""
    return f"{failure_id}:{attempt}"


def parse_replay_key(key: str) -> tuple[str, int]:
    """The failure id and attempt of a replay key; :class:`ValueError` when it is not one."""
    match = re.fullmatch(REPLAY_KEY_PATTERN, key)
    if not match:
        raise ValueError(f"{key!r} is not a replay key (<failure_id>:<attempt>)")
    return match.group(1), int(match.group(2))


# ------------------------------------------------------------------------------------------------ replay selection

ReplayAction = Literal["replay", "resume", "done", "skip"]


@dataclass(frozen=True)
class ReplayDecision:
    """What a replay does with one selected row, and for a skipped row, why (``reason``) in words (``detail``)."""

    failure_id: str
    action: ReplayAction
    reason: str | None = None
    detail: str | None = None


def replay_decision(
    row: Mapping[str, Any] | None, *, failure_id: str, connector_id: str, replay_id: str | None = None
) -> ReplayDecision:
    """Whether a selected row is replayed by the replay ``replay_id`` (``None`` for a dry run).

    ``resume``: the row is claimed by this replay but not recorded (an interrupted run): publish it again with the
    same replay key. ``done``: this replay already recorded it. ``skip``: a reason that the caller can act on.
    """
    if row is None:
        return ReplayDecision(failure_id, "skip", "not_found", "no dead-letter row has this id")
    if row["connector_id"] != connector_id:
        return ReplayDecision(
            failure_id, "skip", "other_connector", f"the row belongs to connector {row['connector_id']}"
        )
    status = row["status"]
    mine = replay_id is not None and row.get("replay_id") == replay_id
    if status == "replaying":
        if mine:
            return ReplayDecision(failure_id, "resume")
        return ReplayDecision(
            failure_id, "skip", "replay_in_progress", f"replay {row.get('replay_id')} is replaying this row now"
        )
    if status == "replayed":
        if mine:
            return ReplayDecision(failure_id, "done")
        return ReplayDecision(
            failure_id,
            "skip",
            "already_replayed",
            f"replayed at {row.get('replayed_at')} by {row.get('replay_id')} ({row.get('replay_key')})",
        )
    if mine:
        return ReplayDecision(
            failure_id, "skip", "failed_again_in_this_replay", f"{row.get('replay_key')} failed again: see its history"
        )
    attempts = int(row.get("replay_attempts") or 0)
    if attempts >= MAX_REPLAY_ATTEMPTS:
        return ReplayDecision(
            failure_id,
            "skip",
            "attempt_limit_reached",
            f"replayed {attempts} times already (the limit); investigate the consumer before replaying it again",
        )
    return ReplayDecision(failure_id, "replay")


def claim_fields(
    row: Mapping[str, Any], *, replay_id: str, actor: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes a replay sets when it claims a dead or patched row, and the history entry."""
    attempt = int(row.get("replay_attempts") or 0) + 1
    key = replay_key(row["failure_id"], attempt)
    entry = history_entry(
        "replay_started",
        row["status"],
        at=now,
        by=actor,
        replay_id=replay_id,
        replay_key=key,
        payload_sha256=row["payload_sha256"],
    )
    updates = {
        "status": entry["to_status"],
        "status_before_replay": row["status"],
        "replay_id": replay_id,
        "replay_key": key,
        "replay_attempts": attempt,
        "updated_at": to_iso(now),
        "version": int(row["version"]) + 1,
    }
    return updates, entry


def replayed_fields(
    row: Mapping[str, Any], *, target_arn: str, actor: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes recorded when a claimed row was published, and the history entry."""
    entry = history_entry(
        "replayed",
        row["status"],
        at=now,
        by=actor,
        replay_id=row.get("replay_id"),
        replay_key=row.get("replay_key"),
        target=target_arn,
    )
    updates = {
        "status": entry["to_status"],
        "replayed_at": to_iso(now),
        "replay_target": target_arn,
        "updated_at": to_iso(now),
        "version": int(row["version"]) + 1,
    }
    return updates, entry


def replay_message_body(row: Mapping[str, Any], *, replay_id: str) -> str:
    """The JSON document published for a claimed row: the replay key (the consumer's idempotency key), where
    the row came from, and the payload exactly as stored."""
    envelope = {
        "replay_key": row["replay_key"],
        "failure_id": row["failure_id"],
        "replay_id": replay_id,
        "attempt": int(row["replay_attempts"]),
        "connector_id": row["connector_id"],
        "source_id": row["source_id"],
        "error_kind": row["error_kind"],
        "retry_count": int(row.get("retry_count") or 0),
        "payload_sha256": row["payload_sha256"],
    }
    head = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    return head[:-1] + ',"payload":' + str(row["payload_json"]) + "}"


# ------------------------------------------------------------------------------------------------ failing again

FailedAgainOutcome = Literal["apply", "duplicate"]


def failed_again_outcome(row: Mapping[str, Any], *, reported_key: str | None) -> FailedAgainOutcome:
    """Whether a "failed again" report returns the row to dead (``apply``) or repeats one already recorded.

    A report names the replay key it failed on (preferred: a retried report is then recognized) or only the
    failure id (it then applies to the latest replay). Anything else is a 409 that says why.
    """
    failure_id = row["failure_id"]
    status = row["status"]
    current_key = row.get("replay_key")
    if reported_key is not None and reported_key == row.get("last_failed_replay_key"):
        return "duplicate"
    if status not in ("replaying", "replayed"):
        raise Conflict(
            f"failure {failure_id} is {status}, not replayed: only a replayed row can fail again "
            "(report a new failure without failure_id and replay_key)"
        )
    if reported_key is not None and reported_key != current_key:
        raise Conflict(
            f"replay_key {reported_key} is not the latest replay of failure {failure_id} ({current_key}); "
            "report the failure of the latest replay"
        )
    return "apply"


def failed_again_fields(
    row: Mapping[str, Any],
    *,
    source_id: str,
    error_kind: str,
    error_message: str,
    reported_retry_count: int | None,
    actor: str,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes a row gets when its replay failed again (back to dead, retry count + 1) and the entry."""
    message, truncated = truncate_error_message(error_message)
    retry_count = int(row.get("retry_count") or 0) + 1
    entry = history_entry(
        "failed_again",
        row["status"],
        at=now,
        by=actor,
        replay_id=row.get("replay_id"),
        replay_key=row.get("replay_key"),
        source_id=source_id,
        error_kind=error_kind,
        error_message=message,
        retry_count=retry_count,
        reported_retry_count=reported_retry_count,
    )
    updates = {
        "status": entry["to_status"],
        "error_kind": error_kind,
        "error_message": message,
        "error_message_truncated": truncated,
        "retry_count": retry_count,
        "failed_at": to_iso(now),
        "day": day_of(now),
        "last_failed_replay_key": row.get("replay_key"),
        "updated_at": to_iso(now),
        "version": int(row["version"]) + 1,
    }
    return updates, entry


# ------------------------------------------------------------------------------------------------ listing

MAX_DAYS_WITHOUT_CONNECTOR = 31
DEFAULT_DAYS_WITHOUT_CONNECTOR = 7


@dataclass(frozen=True)
class ListPlan:
    """How a failure list is read: one connector's index, or the by-day index over ``days`` (newest first)."""

    index: Literal["ByConnector", "ByDay"]
    connector_id: str | None
    since: str | None
    until: str | None
    days: tuple[str, ...] = ()

    def key_names(self) -> set[str]:
        partition = "connector_id" if self.index == "ByConnector" else "day"
        return {partition, "failed_at", "failure_id"}


def list_plan(*, connector_id: str | None, since: datetime | None, until: datetime | None, now: datetime) -> ListPlan:
    """Which index a list reads and over which time range (on ``failed_at``, the latest failure of a row).

    With a connector: its whole history, bounded by ``since``/``until`` when given. Without: the by-day index over
    at most 31 days, the last 7 days by default. An inverted or over-long range is a 400 that says so.
    """
    if since and until and since > until:
        raise ValidationFailed(
            f"since ({to_iso(since)}) is after until ({to_iso(until)}); expected since <= until",
            details=[{"field": "query.since", "problem": "must not be after until"}],
        )
    if connector_id:
        return ListPlan("ByConnector", connector_id, to_iso(since) if since else None, to_iso(until) if until else None)
    end = until or now
    start = since or end - timedelta(days=DEFAULT_DAYS_WITHOUT_CONNECTOR)
    days = days_between(start, end)
    if len(days) > MAX_DAYS_WITHOUT_CONNECTOR:
        raise ValidationFailed(
            f"since..until spans {len(days)} days; without connector_id a list covers at most "
            f"{MAX_DAYS_WITHOUT_CONNECTOR} days (give connector_id, or a shorter range)",
            details=[{"field": "query.since", "problem": f"at most {MAX_DAYS_WITHOUT_CONNECTOR} days before until"}],
        )
    return ListPlan("ByDay", None, to_iso(start), to_iso(end), tuple(reversed(days)))


def cursor_position(plan: ListPlan, cursor: Mapping[str, Any] | None) -> tuple[int, dict[str, str] | None]:
    """Where a list page starts (day position, exclusive start key) for a decoded cursor; a 400 for a cursor
    that does not belong to this query (so a tampered cursor never reaches DynamoDB)."""
    if cursor is None:
        return 0, None
    refused = ValidationFailed("cursor does not belong to this query: pass the next_cursor of the previous page")
    day = cursor.get("day")
    after = cursor.get("after")
    day_index = 0
    if plan.index == "ByDay":
        if day not in plan.days:
            raise refused
        day_index = plan.days.index(day)
    elif day != "":
        raise refused
    if after is None:
        return day_index, None
    if not isinstance(after, dict) or set(after) != plan.key_names():
        raise refused
    if not all(isinstance(value, str) for value in after.values()):
        raise refused
    partition = plan.connector_id if plan.index == "ByConnector" else day
    if after.get("connector_id", after.get("day")) != partition:
        raise refused
    if (plan.since and after["failed_at"] < plan.since) or (plan.until and after["failed_at"] > plan.until):
        raise refused
    return day_index, after


def row_key(row: Mapping[str, Any], plan: ListPlan) -> dict[str, str]:
    """The exclusive start key that resumes a list right after ``row``."""
    return {name: str(row[name]) for name in plan.key_names()}


# ------------------------------------------------------------------------------------------------ replay jobs

JOB_STATUSES = ("queued", "running", "interrupted", "succeeded", "canary_failed")
FINISHED_JOB_STATUSES = frozenset({"succeeded", "canary_failed"})


def lease_is_free(job: Mapping[str, Any], now: datetime) -> bool:
    """Whether a worker may take the job: nobody runs it, or its runner's lease ran out (the runner died)."""
    status = job.get("status")
    if status in FINISHED_JOB_STATUSES:
        return False
    if status != "running":
        return True
    lease_until = job.get("lease_until")
    return not lease_until or parse_iso(str(lease_until)) < now


def check_resumable(job: Mapping[str, Any], now: datetime) -> None:
    """A replay can be resumed unless it finished or a live worker runs it; otherwise a 409 that says why."""
    status = job.get("status")
    replay_id = job.get("pk")
    if status in FINISHED_JOB_STATUSES:
        raise Conflict(f"replay {replay_id} has finished ({status}); start a new replay for rows still pending")
    if not lease_is_free(job, now):
        raise Conflict(
            f"replay {replay_id} is running (its worker holds it until {job.get('lease_until')}); "
            "follow it with GET, resume it only if it stops"
        )
