"""The SLA read endpoints: overview, source health, current states and the transition history."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connector_sla.errors import ValidationFailed
from connector_sla.sla.evaluator import inputs_from_rows
from connector_sla.sla.models import (
    ConnectorOverview,
    ConnectorSourceHealth,
    ListQuery,
    OverviewPage,
    PredictedBreach,
    SignalView,
    SlaStatesPage,
    SlaStateView,
    SourceHealth,
    SourceHealthPage,
    StatesQuery,
    TransitionView,
)
from connector_sla.sla.rules import ConnectorInputs, source_health, source_lag
from connector_sla.sla.store import ConnectorRows, ConnectorStore
from connector_sla.storage.dynamo import Expression, Item, Table, decode_cursor, encode_cursor
from connector_sla.timeutil import days_between, parse_iso, to_iso

_TRANSITION_DETAIL_KEYS = ("duration_seconds", "from_source", "to_source", "eta", "actor", "tick", "level")
_MAX_HISTORY_DAYS = 93


def _signals(state: Mapping[str, Any] | None) -> dict[str, SignalView]:
    return {name: SignalView(**reading) for name, reading in ((state or {}).get("signals") or {}).items()}


def lag_growth_rate(entry: Mapping[str, Any] | None, lag: int, warning: int, now: datetime) -> float:
    """Seconds of freshness lag gained per second, from the active source's last two checkpoint reports.

    A source whose event time keeps pace with the clock gains nothing (0). Without two reports, or when reports
    have stopped arriving, a lag already at risk is assumed to grow with the clock (1) and a healthy one not (0).
    """
    samples = [
        (entry or {}).get(key) for key in ("last_event_at", "reported_at", "prev_last_event_at", "prev_reported_at")
    ]
    if not all(isinstance(sample, str) for sample in samples):
        return 1.0 if lag >= warning else 0.0
    event, reported, prev_event, prev_reported = (parse_iso(str(sample)) for sample in samples)
    interval = (reported - prev_reported).total_seconds()
    if interval <= 0 or (now - reported).total_seconds() > 2 * interval:
        return 1.0 if lag >= warning else 0.0
    return max(0.0, 1.0 - (event - prev_event).total_seconds() / interval)


def predict_breach(
    inputs: ConnectorInputs, progress_entry: Mapping[str, Any] | None, state: Mapping[str, Any] | None, now: datetime
) -> PredictedBreach | None:
    """When the first signal reaches its critical threshold at its current growth rate, if any is growing.

    Freshness grows at :func:`lag_growth_rate`; the pending backlog at the rate observed since the poll window
    that last recorded it.
    """
    state = state or {}
    active = state.get("active_source") or inputs.sources[0]
    candidates: list[tuple[int, str]] = []
    lag = source_lag(inputs, active, now)
    policy = inputs.policy
    rate = lag_growth_rate(progress_entry, lag, policy.freshness_warning_seconds, now)
    if lag < policy.freshness_critical_seconds and rate > 0:
        candidates.append((int((policy.freshness_critical_seconds - lag) / rate), "freshness_lag"))
    baseline, since = state.get("pending_replay_baseline"), state.get("pending_replay_baseline_at")
    if baseline is not None and since and inputs.pending_replay < policy.pending_replay_critical:
        elapsed = (now - parse_iso(since)).total_seconds()
        growth = inputs.pending_replay - int(baseline)
        if elapsed > 0 and growth > 0:
            remaining = policy.pending_replay_critical - inputs.pending_replay
            candidates.append((int(remaining / (growth / elapsed)), "pending_replay"))
    if not candidates:
        return None
    seconds, signal = min(candidates)
    return PredictedBreach(signal=signal, seconds=seconds, at=to_iso(now + timedelta(seconds=seconds)))


def overview_item(rows: ConnectorRows, now: datetime) -> ConnectorOverview:
    """One connector as the overview shows it."""
    inputs = inputs_from_rows(rows)
    state = rows.state or {}
    active = state.get("active_source") or inputs.sources[0]
    entry = inputs.progress.get(active)
    lag = source_lag(inputs, active, now)
    signals = _signals(state)
    dead_letter_baseline = state.get("dead_letter_baseline")
    pending_baseline = state.get("pending_replay_baseline")
    return ConnectorOverview(
        connector_id=rows.connector_id,
        name=inputs.name,
        owner_team=inputs.owner_team,
        active_source=active,
        checkpoint=entry.checkpoint if entry else None,
        last_event_at=to_iso(entry.last_event_at) if entry and entry.last_event_at else None,
        freshness_lag_seconds=lag,
        pending_replay=inputs.pending_replay,
        pending_replay_growth=inputs.pending_replay - int(pending_baseline) if pending_baseline is not None else 0,
        dead_letter_total=inputs.dead_letter_total,
        dead_letter_growth=max(0, inputs.dead_letter_total - int(dead_letter_baseline))
        if dead_letter_baseline is not None
        else 0,
        severity=state.get("severity", "ok"),
        level=state.get("level", "none"),
        incident_id=state.get("incident_id") if state.get("incident_status") == "open" else None,
        incident_opened_at=state.get("incident_opened_at") if state.get("incident_status") == "open" else None,
        unmet_recovery=list(state.get("unmet_recovery") or []) if state.get("incident_status") == "open" else [],
        recovery_eta=state.get("recovery_eta") if state.get("incident_status") == "open" else None,
        signals=signals,
        predicted_breach=predict_breach(inputs, ((rows.progress or {}).get("sources") or {}).get(active), state, now),
        evaluated_at=state.get("evaluated_at"),
    )


def source_health_item(rows: ConnectorRows, now: datetime) -> ConnectorSourceHealth:
    inputs = inputs_from_rows(rows)
    state = rows.state or {}
    active = state.get("active_source") or inputs.sources[0]
    names = {source["source_id"]: source.get("name", "") for source in (rows.config or {}).get("sources", [])}
    sources = []
    for priority, source_id in enumerate(inputs.sources):
        entry = inputs.progress.get(source_id)
        reported = entry is not None and entry.last_event_at is not None
        sources.append(
            SourceHealth(
                source_id=source_id,
                name=names.get(source_id, ""),
                priority=priority,
                health=source_health(inputs, source_id, now),
                reported_status=entry.status if entry else None,
                last_event_at=to_iso(entry.last_event_at) if reported and entry and entry.last_event_at else None,
                lag_seconds=source_lag(inputs, source_id, now) if reported else None,
                checkpoint=entry.checkpoint if entry else None,
                active=source_id == active,
            )
        )
    return ConnectorSourceHealth(
        connector_id=rows.connector_id,
        name=inputs.name,
        active_source=active,
        primary_source=inputs.sources[0],
        sources=sources,
        last_failover=state.get("last_failover"),
        primary_healthy_windows=int(state.get("primary_healthy_windows") or 0),
    )


def state_view(state: Mapping[str, Any]) -> SlaStateView:
    is_open = state.get("incident_status") == "open"
    return SlaStateView(
        connector_id=state["connector_id"],
        connector_name=state.get("connector_name"),
        owner_team=state.get("owner_team"),
        severity=state.get("severity", "ok"),
        level=state.get("level", "none"),
        incident_id=state.get("incident_id"),
        incident_status=state.get("incident_status"),
        incident_opened_at=state.get("incident_opened_at"),
        unmet_recovery=list(state.get("unmet_recovery") or []) if is_open else [],
        active_source=state.get("active_source"),
        recovery_eta=state.get("recovery_eta") if is_open else None,
        signals=_signals(state),
        last_transition=state.get("last_transition"),
        version=int(state.get("version") or 0),
    )


def transition_view(item: Mapping[str, Any]) -> TransitionView:
    return TransitionView(
        transition_id=item["transition_id"],
        connector_id=item["connector_id"],
        seq=int(item["seq"]),
        kind=item["kind"],
        at=item["at"],
        incident_id=item.get("incident_id"),
        from_level=item.get("from_level"),
        to_level=item.get("to_level"),
        from_severity=item.get("from_severity"),
        to_severity=item.get("to_severity"),
        reason=item.get("reason"),
        signals=item.get("signals"),
        details={key: item[key] for key in _TRANSITION_DETAIL_KEYS if key in item},
        record_hash=item["record_hash"],
        prev_hash=item["prev_hash"],
    )


class SlaViews:
    """Queries behind the read endpoints."""

    def __init__(self, store: ConnectorStore, transitions: Table) -> None:
        self.store = store
        self.transitions = transitions

    def _page(self, owner_team: str | None, limit: int, cursor: str | None) -> tuple[list[ConnectorRows], str | None]:
        configs, next_cursor = self.store.config_page(owner_team=owner_team, limit=limit, cursor=cursor)
        rows = self.store.get_many([config["pk"] for config in configs]) if configs else {}
        return [rows[config["pk"]] for config in configs], next_cursor

    def overview(self, query: ListQuery, now: datetime) -> OverviewPage:
        rows, next_cursor = self._page(query.owner_team, query.limit, query.cursor)
        items = [overview_item(row, now) for row in rows]
        items = [item for item in items if _matches(item.severity, item.level, query)]
        return OverviewPage(items=items, next_cursor=next_cursor, generated_at=to_iso(now))

    def source_health(self, query: ListQuery, now: datetime) -> SourceHealthPage:
        if query.severity or query.level:
            raise ValidationFailed("severity and level do not filter source health; use owner_team, limit, cursor")
        rows, next_cursor = self._page(query.owner_team, query.limit, query.cursor)
        return SourceHealthPage(items=[source_health_item(row, now) for row in rows], next_cursor=next_cursor)

    def states(self, query: StatesQuery) -> SlaStatesPage:
        if query.view == "transitions":
            return self._transitions(query)
        if query.connector_id:
            if query.cursor:
                raise ValidationFailed("cursor is not valid for a single connector's state")
            state = self.store.get_rows(query.connector_id).state
            states = [state_view(state)] if state else []
            return SlaStatesPage(view="current", states=states)
        rows, next_cursor = self._page(query.owner_team, query.limit, query.cursor)
        states = [state_view(row.state) for row in rows if row.state]
        states = [state for state in states if _matches(state.severity, state.level, query)]
        return SlaStatesPage(view="current", states=states, next_cursor=next_cursor)

    def _transitions(self, query: StatesQuery) -> SlaStatesPage:
        expr = Expression()
        filters = []
        if query.kind:
            filters.append(f"{expr.name('kind')} = {expr.value(query.kind)}")
        since = to_iso(query.since) if query.since else None
        until = to_iso(query.until) if query.until else None
        if query.connector_id:
            condition = f"{expr.name('connector_id')} = {expr.value(query.connector_id)}"
            if query.incident_id:
                filters.append(f"{expr.name('incident_id')} = {expr.value(query.incident_id)}")
            index = "ByTime" if since or until else None
            condition += _time_range(expr, "at", since, until) if index else ""
            keys = {"connector_id", "seq", "at"} if index else {"connector_id", "seq"}
            return self._query_transitions(expr, condition, index, filters, query, keys)
        if query.incident_id:
            condition = f"{expr.name('incident_id')} = {expr.value(query.incident_id)}"
            condition += _time_range(expr, "at", since, until)
            return self._query_transitions(
                expr, condition, "ByIncident", filters, query, {"connector_id", "seq", "incident_id", "at"}
            )
        if not (since and until):
            raise ValidationFailed(
                "the transition history needs connector_id, incident_id, or both since and until (a time range)"
            )
        days = days_between(parse_iso(since), parse_iso(until))
        if len(days) > _MAX_HISTORY_DAYS:
            raise ValidationFailed(f"the time range spans {len(days)} days; ask for at most {_MAX_HISTORY_DAYS}")
        return self._by_days(days, since, until, filters, expr, query)

    def _query_transitions(
        self,
        expr: Expression,
        condition: str,
        index: str | None,
        filters: list[str],
        query: StatesQuery,
        keys: set[str],
    ) -> SlaStatesPage:
        start = decode_cursor(query.cursor, expected_keys=keys)
        items, last = self.transitions.query_page(
            expr,
            condition,
            index=index,
            filter_expression=" AND ".join(filters) or None,
            limit=query.limit,
            start_key=start,
        )
        return SlaStatesPage(
            view="transitions", transitions=[transition_view(item) for item in items], next_cursor=encode_cursor(last)
        )

    def _by_days(
        self, days: list[str], since: str, until: str, filters: list[str], base: Expression, query: StatesQuery
    ) -> SlaStatesPage:
        # The cursor remembers the day being read and the key within it.
        position = decode_cursor(query.cursor, expected_keys={"day_index", "key"}) if query.cursor else None
        day_index = int(position["day_index"]) if position else 0
        start_key = position["key"] if position else None
        found: list[Item] = []
        while day_index < len(days) and len(found) < query.limit:
            expr = Expression(dict(base.names), dict(base.values))
            condition = f"{expr.name('day')} = {expr.value(days[day_index])}" + _time_range(expr, "at", since, until)
            items, last = self.transitions.query_page(
                expr,
                condition,
                index="ByDay",
                filter_expression=" AND ".join(filters) or None,
                limit=query.limit - len(found),
                start_key=start_key,
            )
            found.extend(items)
            if last is None:
                day_index, start_key = day_index + 1, None
            else:
                start_key = last
        cursor = encode_cursor({"day_index": day_index, "key": start_key}) if day_index < len(days) else None
        return SlaStatesPage(
            view="transitions", transitions=[transition_view(item) for item in found], next_cursor=cursor
        )


def _time_range(expr: Expression, attribute: str, since: str | None, until: str | None) -> str:
    if since and until:
        # BETWEEN includes its upper bound; times are stored to the millisecond, so the last one before ``until``
        # is ``until`` less a millisecond.
        last = max(since, to_iso(parse_iso(until) - timedelta(milliseconds=1)))
        return f" AND {expr.name(attribute)} BETWEEN {expr.value(since)} AND {expr.value(last)}"
    if since:
        return f" AND {expr.name(attribute)} >= {expr.value(since)}"
    if until:
        return f" AND {expr.name(attribute)} < {expr.value(until)}"
    return ""


def _matches(severity: str, level: str, query: ListQuery | StatesQuery) -> bool:
    return (query.severity is None or severity == query.severity) and (query.level is None or level == query.level)
