"""The SLA state machine: signals, severity, escalation levels, recovery and matrix failover.

Pure functions over plain values: :func:`decide` takes what a connector reported, its policy and its previous
state row, and returns the next state row and the transitions to append. No AWS, no clock: ``now`` and the tick
are parameters, so every rule is tested without moto.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from connector_sla.ids import new_id
from connector_sla.sla.models import SlaPolicy
from connector_sla.timeutil import day_of, parse_iso, to_iso

SEVERITY_RANK = {"ok": 0, "warning": 1, "critical": 2}
NEXT_LEVEL = {"L1": "L2", "L2": "L3"}
SIGNALS = ("freshness_lag", "pending_replay", "dead_letter_growth")
RECOVERY_CRITERIA = {
    "freshness_lag": "freshness is not back under its warning threshold",
    "pending_replay": "the pending replay backlog has not drained into its policy range",
    "dead_letter_growth": "dead-letter rows are still growing",
}
# Attributes that change on every evaluation without the state having changed.
_VOLATILE = frozenset({"version", "last_tick", "window", "evaluated_at", "pk", "sk", "last_transition"})


class SourceProgress(NamedTuple):
    last_event_at: datetime | None = None
    status: str = "up"
    checkpoint: str | None = None


class ConnectorInputs(NamedTuple):
    """Everything the evaluation reads about one connector."""

    connector_id: str
    name: str
    owner_team: str
    sources: tuple[str, ...]
    policy: SlaPolicy
    registered_at: datetime
    progress: Mapping[str, SourceProgress] = MappingProxyType({})
    pending_replay: int = 0
    dead_letter_total: int = 0


class Tick(NamedTuple):
    """One scheduled evaluation: ``tick_id`` identifies it (a redelivered tick has the same id)."""

    tick_id: str
    at: datetime


@dataclass
class Decision:
    state: dict[str, Any]
    transitions: list[dict[str, Any]]
    publish: list[bool]
    changed: bool


def signal_status(value: int, warning: int, critical: int) -> str:
    """``critical`` at or above the critical threshold, ``warning`` at or above the warning one, else ``ok``."""
    if value >= critical:
        return "critical"
    if value >= warning:
        return "warning"
    return "ok"


def window_of(moment: datetime, policy: SlaPolicy) -> int:
    """Index of the poll window ``moment`` falls in (windows are aligned on the epoch)."""
    return int(moment.timestamp()) // policy.poll_window_seconds


def source_lag(inputs: ConnectorInputs, source_id: str, now: datetime) -> int:
    """Seconds since the source's last event; a source that never reported counts from the registration."""
    progress = inputs.progress.get(source_id)
    since = progress.last_event_at if progress and progress.last_event_at else inputs.registered_at
    return max(0, int((now - since).total_seconds()))


def source_health(inputs: ConnectorInputs, source_id: str, now: datetime) -> str:
    """``down`` (reported), ``stale`` (past critical), ``lagging`` (past warning), ``unknown`` or ``healthy``."""
    progress = inputs.progress.get(source_id)
    if progress is not None and progress.status == "down":
        return "down"
    if progress is None or progress.last_event_at is None:
        return "unknown"
    lag = source_lag(inputs, source_id, now)
    if lag >= inputs.policy.freshness_critical_seconds:
        return "stale"
    if lag >= inputs.policy.freshness_warning_seconds:
        return "lagging"
    return "healthy"


def _signals(inputs: ConnectorInputs, active: str, dead_letter_growth: int, now: datetime) -> dict[str, Any]:
    policy = inputs.policy
    readings = {
        "freshness_lag": (
            source_lag(inputs, active, now),
            policy.freshness_warning_seconds,
            policy.freshness_critical_seconds,
        ),
        "pending_replay": (inputs.pending_replay, policy.pending_replay_warning, policy.pending_replay_critical),
        "dead_letter_growth": (
            dead_letter_growth,
            policy.dead_letter_growth_warning,
            policy.dead_letter_growth_critical,
        ),
    }
    return {
        name: {
            "status": signal_status(value, warning, critical),
            "value": value,
            "warning": warning,
            "critical": critical,
        }
        for name, (value, warning, critical) in readings.items()
    }


def _failover(
    inputs: ConnectorInputs, previous: Mapping[str, Any], now: datetime
) -> tuple[str, int, dict[str, Any] | None]:
    """The active source after this poll, the primary's healthy-window count, and a failover record if it moved."""
    primary = inputs.sources[0]
    active = previous.get("active_source") or primary
    if active not in inputs.sources:
        active = primary
    healthy_windows = int(previous.get("primary_healthy_windows") or 0)
    if active != primary:
        healthy_windows = healthy_windows + 1 if source_health(inputs, primary, now) == "healthy" else 0
        if healthy_windows >= inputs.policy.failback_healthy_windows:
            reason = f"primary {primary} healthy for {healthy_windows} consecutive windows"
            return primary, 0, {"kind": "failback", "from_source": active, "to_source": primary, "reason": reason}
    if source_health(inputs, active, now) in ("down", "stale"):
        backups = [source for source in inputs.sources if source != active]
        healthy = [source for source in backups if source_health(inputs, source, now) == "healthy"]
        if healthy:
            cause = source_health(inputs, active, now)
            reason = f"{active} is {cause}; {healthy[0]} is the first healthy backup"
            kind = "failback" if healthy[0] == primary else "failover"
            return healthy[0], 0, {"kind": kind, "from_source": active, "to_source": healthy[0], "reason": reason}
    return active, (healthy_windows if active != primary else 0), None


def comparable(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state without what changes on every poll: equal comparables mean nothing to write."""
    # None and absent are the same once stored (DynamoDB items carry no null attributes here).
    view = {key: value for key, value in state.items() if key not in _VOLATILE and value is not None}
    view["signals"] = {name: reading.get("status") for name, reading in (state.get("signals") or {}).items()}
    return view


def decide(inputs: ConnectorInputs, previous: Mapping[str, Any] | None, tick: Tick, now: datetime) -> Decision:
    """The next state of a connector for ``tick``, and the transitions that lead to it.

    A connector whose state was already recorded in this tick's poll window is left alone (``changed`` is
    false): a redelivered tick, or a second evaluator racing on the same tick, decides nothing new.
    """
    policy = inputs.policy
    window = window_of(tick.at, policy)
    before = dict(previous or {})
    if previous is not None and before.get("window") == window:
        return Decision(before, [], [], changed=False)

    active, healthy_windows, failover = _failover(inputs, before, now)
    baseline = before.get("dead_letter_baseline")
    dead_letter_growth = max(0, inputs.dead_letter_total - int(baseline)) if baseline is not None else 0
    signals = _signals(inputs, active, dead_letter_growth, now)
    severity = max((reading["status"] for reading in signals.values()), key=SEVERITY_RANK.__getitem__)

    state: dict[str, Any] = {
        **before,
        "connector_name": inputs.name,
        "owner_team": inputs.owner_team,
        "severity": severity,
        "level": before.get("level") or "none",
        "signals": signals,
        "active_source": active,
        "primary_healthy_windows": healthy_windows,
        "dead_letter_baseline": inputs.dead_letter_total,
        "pending_replay_baseline": inputs.pending_replay,
        "window": window,
        "last_tick": tick.tick_id,
        "evaluated_at": to_iso(now),
    }
    if before.get("pending_replay_baseline") != inputs.pending_replay:
        state["pending_replay_baseline_at"] = to_iso(now)
    transitions: list[dict[str, Any]] = []
    publish: list[bool] = []

    def add(kind: str, *, event: bool, **fields: Any) -> None:
        transitions.append(
            {
                "transition_id": new_id("trn"),
                "kind": kind,
                "at": to_iso(now),
                "day": day_of(now),
                "tick": tick.tick_id,
                "connector_name": inputs.name,
                "owner_team": inputs.owner_team,
                "signals": signals,
                **fields,
            }
        )
        publish.append(event)

    if failover is not None:
        state["last_failover"] = {**failover, "at": to_iso(now)}
        add(
            failover["kind"],
            event=True,
            incident_id=state.get("incident_id"),
            level=state["level"],
            from_source=failover["from_source"],
            to_source=failover["to_source"],
            reason=failover["reason"],
        )

    if state.get("incident_status") == "open":
        _advance_incident(state, before, inputs, now, add)
    elif severity != "ok":
        _open_incident(state, before, inputs, now, add)
    else:
        state.update(critical_streak=0, polls_at_level=0, clean_windows=0, unmet_recovery=[])

    changed = previous is None or bool(transitions) or comparable(state) != comparable(before)
    return Decision(state, transitions, publish, changed)


def _open_incident(
    state: dict[str, Any], before: Mapping[str, Any], inputs: ConnectorInputs, now: datetime, add: Any
) -> None:
    incident_id = new_id("inc")
    previous_severity = before.get("severity") or "ok"
    state.update(
        incident_id=incident_id,
        incident_status="open",
        incident_opened_at=to_iso(now),
        level="L1",
        critical_streak=1 if state["severity"] == "critical" else 0,
        polls_at_level=0,
        clean_windows=0,
        unmet_recovery=_unmet(state["signals"], inputs.policy),
        recovery_eta=None,
        eta_recorded_at=None,
        eta_recorded_by=None,
    )
    add(
        "opened",
        event=True,
        incident_id=incident_id,
        from_level="none",
        to_level="L1",
        from_severity=previous_severity,
        to_severity=state["severity"],
        reason=_reason(state["signals"]),
    )


def _advance_incident(
    state: dict[str, Any], before: Mapping[str, Any], inputs: ConnectorInputs, now: datetime, add: Any
) -> None:
    policy = inputs.policy
    severity = state["severity"]
    previous_severity = before.get("severity") or "ok"
    level = state["level"]
    incident_id = state.get("incident_id")
    state["critical_streak"] = int(before.get("critical_streak") or 0) + 1 if severity == "critical" else 0
    state["polls_at_level"] = int(before.get("polls_at_level") or 0) + 1
    unmet = _unmet(state["signals"], policy)
    state["unmet_recovery"] = unmet
    state["clean_windows"] = 0 if unmet else int(before.get("clean_windows") or 0) + 1

    if state["clean_windows"] >= policy.recovery_clean_windows:
        opened_at = state.get("incident_opened_at")
        duration = int((now - parse_iso(opened_at)).total_seconds()) if opened_at else 0
        state.update(level="none", incident_status="closed", critical_streak=0, polls_at_level=0, clean_windows=0)
        add(
            "recovered",
            event=True,
            incident_id=incident_id,
            from_level=level,
            to_level="none",
            from_severity=previous_severity,
            to_severity=severity,
            duration_seconds=duration,
            reason=f"all recovery criteria held for {policy.recovery_clean_windows} consecutive poll windows",
        )
        return
    target = None
    if level == "L1" and state["critical_streak"] >= policy.critical_repeat_polls:
        target, why = "L2", f"critical on {state['critical_streak']} consecutive polls"
    elif level == "L2" and state["polls_at_level"] >= policy.escalate_after_l2_polls:
        target, why = "L3", f"still at L2 after {state['polls_at_level']} polls"
    if target is not None:
        state.update(level=target, polls_at_level=0)
        add(
            "escalated",
            event=True,
            incident_id=incident_id,
            from_level=level,
            to_level=target,
            from_severity=previous_severity,
            to_severity=severity,
            reason=why,
        )
    elif severity != previous_severity:
        add(
            "severity_changed",
            event=severity != "ok",
            incident_id=incident_id,
            from_level=level,
            to_level=level,
            from_severity=previous_severity,
            to_severity=severity,
            reason=_reason(state["signals"]),
        )


def _unmet(signals: Mapping[str, Any], policy: SlaPolicy) -> list[str]:
    """The recovery criteria that do not hold yet (all three must hold for the configured clean windows)."""
    unmet = []
    if signals["freshness_lag"]["status"] != "ok":
        unmet.append("freshness_lag")
    if signals["pending_replay"]["value"] > policy.pending_replay_recovery_max:
        unmet.append("pending_replay")
    if signals["dead_letter_growth"]["value"] > 0:
        unmet.append("dead_letter_growth")
    return unmet


def _reason(signals: Mapping[str, Any]) -> str:
    parts = [
        f"{name} {reading['value']} >= {reading[reading['status']]} ({reading['status']})"
        for name, reading in signals.items()
        if reading["status"] != "ok"
    ]
    return "; ".join(parts) or "all signals ok"
