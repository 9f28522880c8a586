"""The reconcile rules: compare remote incidents with the local ACK state, and report what a run did.

Plain values only (no AWS, no clock): :func:`plan_page` decides, for one page of mapped incidents and the local
notifications they name, which ACK changes bring the local state in line with the provider. A change only ever
moves a notification's ACK state forward (``alerts.ack``), so planning again after the changes were applied
finds nothing to do: a run is safe to repeat, and a run that stopped halfway is finished by the next one.
:class:`RunReport` accumulates the counts and the (bounded) lists a run record keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector_sla.alerts.ack import ack_rank, advances
from connector_sla.jobs.mapping import MappedIncident, MappingProblem

MAX_LISTED_CHANGES = 200
MAX_LISTED_UNMATCHED = 50
MAX_LISTED_ERRORS = 50


@dataclass(frozen=True)
class Change:
    """Move one notification's ACK state from ``ack_state_before`` to ``ack_state_after`` (always forward)."""

    notification_id: str
    incident_id: str | None
    delivery_id: str | None
    remote_id: str | None
    raw_status: str
    ack_state_before: str
    ack_state_after: str

    def as_record(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "incident_id": self.incident_id,
            "delivery_id": self.delivery_id,
            "remote_id": self.remote_id,
            "raw_status": self.raw_status,
            "ack_state_before": self.ack_state_before,
            "ack_state_after": self.ack_state_after,
        }


@dataclass(frozen=True)
class Unmatched:
    """A remote incident that names no local notification (or another incident's); kept for the report."""

    remote_id: str | None
    notification_id: str | None
    delivery_id: str | None
    reason: str


@dataclass(frozen=True)
class PagePlan:
    """What one page asks for: changes, plus how each incident was classified."""

    changes: tuple[Change, ...]
    unmatched: tuple[Unmatched, ...]
    problems: tuple[MappingProblem, ...]
    matched: int
    unchanged: int
    ack_view: Mapping[str, str]


def notification_id_of(incident: MappedIncident) -> str | None:
    """The notification an incident names: its ``notification_id``, else the one its ``delivery_id`` encodes.

    Delivery ids are ``dlv_<notification id without ntf_>_<attempt>`` (see docs/design.md, Conventions).
    """
    if incident.notification_id:
        return incident.notification_id
    delivery_id = incident.delivery_id or ""
    if not delivery_id.startswith("dlv_"):
        return None
    stem, _, attempt = delivery_id[len("dlv_") :].rpartition("_")
    return f"ntf_{stem}" if stem and attempt.isdigit() else None


def wanted_notification_ids(items: Sequence[MappedIncident | MappingProblem]) -> list[str]:
    """The distinct notification ids a page's mapped incidents name, in page order (what to read locally)."""
    seen: dict[str, None] = {}
    for item in items:
        if isinstance(item, MappedIncident):
            notification_id = notification_id_of(item)
            if notification_id:
                seen.setdefault(notification_id)
    return list(seen)


def plan_page(
    items: Sequence[MappedIncident | MappingProblem],
    notifications: Mapping[str, Mapping[str, Any]],
    ack_view: Mapping[str, str],
) -> PagePlan:
    """Classify each incident of a page and list the ACK changes it asks for.

    ``notifications`` holds the local notifications found by id; ``ack_view`` the ACK states this run already
    planned on earlier pages (so a dry run never counts the same change twice). Several incidents naming one
    notification collapse into one change, to the furthest state any of them reached.
    """
    view = dict(ack_view)
    targets: dict[str, tuple[MappedIncident, str]] = {}
    unmatched: list[Unmatched] = []
    problems: list[MappingProblem] = []
    matched = 0
    for item in items:
        if isinstance(item, MappingProblem):
            problems.append(item)
            continue
        notification_id = notification_id_of(item)
        local = notifications.get(notification_id or "")
        if notification_id is None or local is None:
            unmatched.append(_unmatched(item, "no local notification has this notification_id or delivery_id"))
            continue
        local_incident = local.get("incident_id")
        if item.incident_id and local_incident and item.incident_id != local_incident:
            unmatched.append(_unmatched(item, f"the notification belongs to incident {local_incident}"))
            continue
        matched += 1
        current = view.get(notification_id, str(local.get("ack_state") or "unacked"))
        best = targets.get(notification_id)
        if advances(current, item.status) and (best is None or ack_rank(item.status) > ack_rank(best[1])):
            targets[notification_id] = (item, item.status)
    changes = []
    for notification_id, (item, status) in targets.items():
        local = notifications[notification_id]
        before = view.get(notification_id, str(local.get("ack_state") or "unacked"))
        changes.append(
            Change(
                notification_id=notification_id,
                incident_id=item.incident_id or local.get("incident_id"),
                delivery_id=item.delivery_id,
                remote_id=item.remote_id,
                raw_status=item.raw_status,
                ack_state_before=before,
                ack_state_after=status,
            )
        )
        view[notification_id] = status
    return PagePlan(
        changes=tuple(changes),
        unmatched=tuple(unmatched),
        problems=tuple(problems),
        matched=matched,
        unchanged=matched - sum(1 for item in items if _is_change_source(item, targets)),
        ack_view=view,
    )


def _is_change_source(item: MappedIncident | MappingProblem, targets: Mapping[str, tuple[MappedIncident, str]]) -> bool:
    if isinstance(item, MappingProblem):
        return False
    notification_id = notification_id_of(item)
    return notification_id is not None and notification_id in targets and targets[notification_id][0] is item


def _unmatched(item: MappedIncident, reason: str) -> Unmatched:
    return Unmatched(item.remote_id, item.notification_id, item.delivery_id, reason)


@dataclass
class RunReport:
    """Counts and bounded detail lists of one run, built page by page; ``as_record`` is what the run row keeps."""

    dry_run: bool
    fetched: int = 0
    matched: int = 0
    unmatched: int = 0
    unchanged: int = 0
    changed: int = 0
    planned: int = 0
    errors: int = 0
    pages: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    unmatched_sample: list[dict[str, Any]] = field(default_factory=list)
    error_details: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: str | None = None

    def add_plan(self, plan: PagePlan, fetched: int) -> None:
        """Count one page's incidents (the changes are counted as they are listed or applied)."""
        self.pages += 1
        self.fetched += fetched
        self.matched += plan.matched
        self.unchanged += plan.unchanged
        self.unmatched += len(plan.unmatched)
        for item in plan.unmatched:
            if len(self.unmatched_sample) < MAX_LISTED_UNMATCHED:
                self.unmatched_sample.append(
                    {
                        "remote_id": item.remote_id,
                        "notification_id": item.notification_id,
                        "delivery_id": item.delivery_id,
                        "reason": item.reason,
                    }
                )
        for problem in plan.problems:
            self.add_error("map", problem.reason, remote_id=problem.remote_id)

    def add_change(self, change: Change, outcome: str, **extra: Any) -> None:
        """Record one change with its outcome (``would_update``, ``updated``, ``already_applied``, ``failed``)."""
        self.planned += 1
        if outcome in ("would_update", "updated"):
            self.changed += 1
        if len(self.changes) < MAX_LISTED_CHANGES:
            self.changes.append({**change.as_record(), "outcome": outcome, **extra})

    def add_error(self, stage: str, message: str, **where: Any) -> None:
        """Count one failure (``fetch``, ``map``, ``lookup``, ``apply``) and keep its detail while there is room."""
        self.errors += 1
        if len(self.error_details) < MAX_LISTED_ERRORS:
            self.error_details.append({"stage": stage, "message": message, **where})

    def counts(self) -> dict[str, int]:
        """The run's counts; a dry run reports ``would_update``, a real run ``updated``."""
        return {
            "fetched": self.fetched,
            "matched": self.matched,
            ("would_update" if self.dry_run else "updated"): self.changed,
            "unchanged": self.unchanged,
            "unmatched": self.unmatched,
            "errors": self.errors,
        }

    def status(self) -> str:
        """``succeeded`` with no error; ``failed`` when nothing could be read; ``partial`` otherwise."""
        if self.errors == 0 and self.stopped_early is None:
            return "succeeded"
        if self.pages == 0 and self.fetched == 0:
            return "failed"
        return "partial"

    def as_record(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "pages": self.pages,
            "changes": self.changes,
            "changes_total": self.planned,
            "unmatched_sample": self.unmatched_sample,
            "error_details": self.error_details,
            "stopped_early": self.stopped_early,
        }
