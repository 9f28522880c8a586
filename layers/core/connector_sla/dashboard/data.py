"""What the operations dashboard shows, built from plain records as docs/design.md shapes them.

No AWS and no clock here: the reader hands in the rows, ``now`` is a parameter. Every panel is bounded, so the
JSON stays small however busy the service is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector_sla.timeutil import parse_iso, to_iso

Row = Mapping[str, Any]

SIGNALS = ("freshness_lag", "pending_replay", "dead_letter_growth")
SEVERITY_RANK = {"critical": 0, "warning": 1, "ok": 2, "not_evaluated": 3}
TIMELINE_LIMIT = 100
CALLBACK_GROUPS_LIMIT = 20
JOB_RUNS_SHOWN = 20
DELIVERIES_SHOWN = 50
EXPORTS_SHOWN = 10


@dataclass(frozen=True)
class DashboardInputs:
    """The rows one dashboard refresh reads; each list newest first except ``connector_rows``."""

    connector_rows: Sequence[Row] = ()
    transitions: Sequence[Row] = ()
    notifications: Sequence[Row] = ()
    deliveries: Sequence[Row] = ()
    callbacks: Sequence[Row] = ()
    job_runs: Sequence[Row] = ()
    exports: Sequence[Row] = ()
    notes: list[str] = field(default_factory=list)


def _seconds_between(earlier: str | None, now: datetime) -> int | None:
    if not earlier:
        return None
    try:
        return max(0, int((now - parse_iso(earlier)).total_seconds()))
    except ValueError:
        return None


def connectors_panel(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """One entry per connector (CONFIG and STATE rows merged), worst severity first, then by id."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        connector_id = str(row.get("pk") or row.get("connector_id"))
        entry = merged.setdefault(connector_id, {"connector_id": connector_id})
        if row.get("sk") == "CONFIG":
            entry["config"] = row
        elif row.get("sk") == "STATE":
            entry["state"] = row
    panel = []
    for connector_id, entry in merged.items():
        config: Row = entry.get("config") or {}
        state: Row = entry.get("state") or {}
        signals = state.get("signals") or {}
        incident_open = state.get("incident_status") == "open"
        panel.append(
            {
                "connector_id": connector_id,
                "name": state.get("connector_name") or config.get("name") or connector_id,
                "owner_team": state.get("owner_team") or config.get("owner_team"),
                "evaluated": bool(state),
                "severity": state.get("severity", "not_evaluated") if state else "not_evaluated",
                "level": state.get("level", "none"),
                "incident_id": state.get("incident_id") if incident_open else None,
                "signals": [
                    {
                        "name": name,
                        "status": (signals.get(name) or {}).get("status", "unknown"),
                        "value": (signals.get(name) or {}).get("value"),
                        "warning": (signals.get(name) or {}).get("warning"),
                        "critical": (signals.get(name) or {}).get("critical"),
                    }
                    for name in SIGNALS
                ],
                "unmet_recovery": list(state.get("unmet_recovery") or []) if incident_open else [],
                "active_source": state.get("active_source"),
                "last_tick": state.get("last_tick"),
            }
        )
    panel.sort(key=lambda item: (SEVERITY_RANK.get(item["severity"], 9), item["connector_id"]))
    return panel


def open_incidents_panel(rows: Iterable[Row], notifications: Iterable[Row], now: datetime) -> list[dict[str, Any]]:
    """Open incidents, highest level first, then oldest: level, age, recovery ETA and what keeps them open."""
    unacked: dict[str, int] = {}
    for notification in notifications:
        if notification.get("kind") == "alert" and notification.get("ack_state") == "unacked":
            incident = str(notification.get("incident_id"))
            unacked[incident] = unacked.get(incident, 0) + 1
    incidents = []
    for state in rows:
        if state.get("sk") != "STATE" or state.get("incident_status") != "open":
            continue
        eta = state.get("recovery_eta")
        incident_id = str(state.get("incident_id"))
        incidents.append(
            {
                "incident_id": incident_id,
                "connector_id": state.get("connector_id") or state.get("pk"),
                "connector_name": state.get("connector_name"),
                "level": state.get("level", "none"),
                "severity": state.get("severity"),
                "opened_at": state.get("incident_opened_at"),
                "age_seconds": _seconds_between(state.get("incident_opened_at"), now),
                "recovery_eta": eta,
                "eta_recorded_by": state.get("eta_recorded_by"),
                "eta_seconds_left": int((parse_iso(str(eta)) - now).total_seconds()) if eta else None,
                "eta_overdue": bool(eta) and parse_iso(str(eta)) < now,
                "eta_missing": state.get("level") == "L3" and not eta,
                "unmet_recovery": list(state.get("unmet_recovery") or []),
                "unacked_alerts": unacked.get(incident_id, 0),
            }
        )
    incidents.sort(key=lambda item: (-_level_rank(item["level"]), item["opened_at"] or ""))
    return incidents


def _level_rank(level: str) -> int:
    return {"L1": 1, "L2": 2, "L3": 3}.get(level, 0)


def escalation_timeline(transitions: Iterable[Row], notifications: Iterable[Row]) -> list[dict[str, Any]]:
    """Level changes and who was told, newest first: SLA transitions and the notifications they produced."""
    events: list[dict[str, Any]] = []
    for transition in transitions:
        events.append(
            {
                "at": transition.get("at"),
                "type": "transition",
                "incident_id": transition.get("incident_id"),
                "connector_id": transition.get("connector_id"),
                "kind": transition.get("kind"),
                "from_level": transition.get("from_level"),
                "to_level": transition.get("to_level"),
                "severity": transition.get("to_severity"),
                "detail": _transition_detail(transition),
            }
        )
    for notification in notifications:
        events.append(
            {
                "at": notification.get("created_at"),
                "type": "notification",
                "incident_id": notification.get("incident_id"),
                "connector_id": notification.get("connector_id"),
                "kind": notification.get("kind"),
                "level": notification.get("level"),
                "channel": notification.get("channel"),
                "target": notification.get("target"),
                "ack_state": notification.get("ack_state"),
                "delivery_status": notification.get("delivery_status"),
                "detail": notification.get("suppressed_reason") or notification.get("summary"),
            }
        )
    events.sort(key=lambda event: str(event.get("at") or ""), reverse=True)
    return events[:TIMELINE_LIMIT]


def _transition_detail(transition: Row) -> str | None:
    kind = transition.get("kind")
    if kind == "eta_recorded":
        return f"recovery ETA {transition.get('eta')} by {transition.get('actor')}"
    if kind == "recovered" and transition.get("duration_seconds") is not None:
        return f"recovered after {transition.get('duration_seconds')} s"
    if kind in ("failover", "failback"):
        return f"{transition.get('from_source')} -> {transition.get('to_source')}"
    reason = transition.get("reason")
    return str(reason) if reason else None


def callback_timeline(callbacks: Iterable[Row], job_runs: Iterable[Row]) -> list[dict[str, Any]]:
    """Per incident, newest first: its callbacks and the reconcile runs that touched it (``incident_id`` null holds
    the unmatched callbacks)."""
    runs = {str(run.get("run_id")): run for run in job_runs}
    groups: dict[str | None, dict[str, Any]] = {}

    def group(incident_id: str | None, connector_id: Any) -> dict[str, Any]:
        entry = groups.setdefault(
            incident_id, {"incident_id": incident_id, "connector_id": connector_id, "events": [], "runs": set()}
        )
        entry["connector_id"] = entry["connector_id"] or connector_id
        return entry

    for callback in callbacks:
        entry = group(callback.get("incident_id") if callback.get("matched") else None, callback.get("connector_id"))
        entry["events"].append(
            {
                "at": callback.get("received_at"),
                "type": "callback",
                "source": callback.get("source"),
                "provider": callback.get("provider"),
                "status": callback.get("status"),
                "raw_status": callback.get("raw_status"),
                "notification_id": callback.get("notification_id"),
                "matched": bool(callback.get("matched")),
                "unmatched_reason": callback.get("unmatched_reason"),
                "signature": callback.get("signature"),
                "ack_applied": bool(callback.get("ack_applied")),
                "ack_state_before": callback.get("ack_state_before"),
                "ack_state_after": callback.get("ack_state_after"),
                "duplicate_count": callback.get("duplicate_count", 0),
                "run_id": callback.get("run_id"),
            }
        )
        run_id = callback.get("run_id")
        if callback.get("source") == "reconcile" and run_id and str(run_id) in runs:
            _add_run(entry, runs[str(run_id)])
    for run in runs.values():
        for change in run.get("changes") or []:
            incident_id = change.get("incident_id") if isinstance(change, Mapping) else None
            if incident_id:
                _add_run(group(str(incident_id), change.get("connector_id")), run)
    panel = []
    for entry in groups.values():
        events = sorted(entry["events"], key=lambda event: str(event.get("at") or ""), reverse=True)
        panel.append({"incident_id": entry["incident_id"], "connector_id": entry["connector_id"], "events": events})
    panel.sort(key=lambda entry: str(entry["events"][0].get("at") or "") if entry["events"] else "", reverse=True)
    return panel[:CALLBACK_GROUPS_LIMIT]


def _add_run(entry: dict[str, Any], run: Row) -> None:
    run_id = str(run.get("run_id"))
    if run_id in entry["runs"]:
        return
    entry["runs"].add(run_id)
    entry["events"].append(
        {
            "at": run.get("started_at") or run.get("created_at"),
            "type": "reconcile_run",
            "job_id": run.get("job_id"),
            "run_id": run_id,
            "status": run.get("status"),
            "dry_run": bool(run.get("dry_run")),
            "counts": dict(run.get("counts") or {}),
        }
    )


def job_runs_panel(runs: Iterable[Row], now: datetime) -> list[dict[str, Any]]:
    """The most recent job runs: status, dry run or not, counts and how many changes a dry run would make."""
    panel = []
    for run in list(runs)[:JOB_RUNS_SHOWN]:
        started, finished = run.get("started_at"), run.get("finished_at")
        duration = None
        if started and finished:
            duration = max(0, int((parse_iso(str(finished)) - parse_iso(str(started))).total_seconds()))
        panel.append(
            {
                "job_id": run.get("job_id"),
                "run_id": run.get("run_id"),
                "job_type": run.get("job_type"),
                "status": run.get("status"),
                "dry_run": bool(run.get("dry_run")),
                "started_at": started,
                "finished_at": finished,
                "duration_seconds": duration,
                "running_for_seconds": None if finished else _seconds_between(started, now),
                "counts": dict(run.get("counts") or {}),
                "changes": int(run.get("changes_total") or len(run.get("changes") or [])),
            }
        )
    return panel


def deliveries_panel(deliveries: Iterable[Row]) -> list[dict[str, Any]]:
    """The most recent delivery attempts, newest first."""
    keys = (
        "at",
        "delivery_id",
        "notification_id",
        "incident_id",
        "connector_id",
        "level",
        "channel",
        "target",
        "status",
        "attempt",
        "response_code",
        "latency_ms",
        "error",
    )
    return [{key: delivery.get(key) for key in keys} for delivery in list(deliveries)[:DELIVERIES_SHOWN]]


def exports_panel(exports: Iterable[Row]) -> list[dict[str, Any]]:
    """The most recent evidence exports and whether their chains verified."""
    panel = []
    for export in list(exports)[:EXPORTS_SHOWN]:
        verification = export.get("chain_verification") or {}
        problem = verification.get("first_problem") or {}
        panel.append(
            {
                "export_id": export.get("export_id"),
                "status": export.get("status"),
                "created_at": export.get("created_at"),
                "requested_by": export.get("requested_by"),
                "query": dict(export.get("query") or {}),
                "record_count": export.get("record_count"),
                "verified": verification.get("verified"),
                "first_problem": problem.get("text"),
                "error": export.get("error"),
            }
        )
    return panel


def build_dashboard(inputs: DashboardInputs, *, now: datetime, window_hours: int) -> dict[str, Any]:
    """The whole dashboard document served at ``GET /ops/dashboard/data``."""
    connectors = connectors_panel(inputs.connector_rows)
    incidents = open_incidents_panel(inputs.connector_rows, inputs.notifications, now)
    deliveries = deliveries_panel(inputs.deliveries)
    summary = {
        "connectors": len(connectors),
        "critical": sum(1 for item in connectors if item["severity"] == "critical"),
        "warning": sum(1 for item in connectors if item["severity"] == "warning"),
        "ok": sum(1 for item in connectors if item["severity"] == "ok"),
        "not_evaluated": sum(1 for item in connectors if not item["evaluated"]),
        "open_incidents": len(incidents),
        "unacked_alerts": sum(item["unacked_alerts"] for item in incidents),
        "failed_deliveries": sum(1 for item in inputs.deliveries if str(item.get("status", "")).startswith("failed")),
    }
    return {
        "generated_at": to_iso(now),
        "window_hours": window_hours,
        "summary": summary,
        "connectors": connectors,
        "open_incidents": incidents,
        "escalation_timeline": escalation_timeline(inputs.transitions, inputs.notifications),
        "callback_timeline": callback_timeline(inputs.callbacks, inputs.job_runs),
        "job_runs": job_runs_panel(inputs.job_runs, now),
        "deliveries": deliveries,
        "exports": exports_panel(inputs.exports),
        "notes": list(inputs.notes),
    }
