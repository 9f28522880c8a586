"""Reading the callback history: one index per filter, newest first, with opaque cursors.

An incident, notification or provider filter reads its own index (ByIncident, ByNotification, ByProvider) and
the other filters narrow it. Without one of them the history is read day by day through ByDay, from ``until``
back to ``since`` (30 days by default). One request runs at most :data:`MAX_QUERIES` queries; a page may then be
short, and its cursor continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from connector_sla.errors import ValidationFailed
from connector_sla.storage.dynamo import Expression, Item, Table, decode_cursor, encode_cursor
from connector_sla.timeutil import day_of, to_iso

DEFAULT_DAYS = 30
MAX_QUERIES = 10

_PARTITIONS = (("incident_id", "ByIncident"), ("notification_id", "ByNotification"), ("provider", "ByProvider"))


class HistoryFilter(NamedTuple):
    """What to list; every field is optional."""

    incident_id: str | None = None
    notification_id: str | None = None
    provider: str | None = None
    status: str | None = None
    unmatched: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class _Plan:
    index: str
    attribute: str
    partitions: list[str]
    lower: str | None
    upper: str | None


class CallbackHistory:
    """Storage adapter that lists callback records."""

    def __init__(self, callbacks: Table) -> None:
        self.callbacks = callbacks

    def find(
        self, wanted: HistoryFilter, *, limit: int, cursor: str | None, now: datetime
    ) -> tuple[list[Item], str | None]:
        """Up to ``limit`` records matching ``wanted``, newest first, and the cursor of the next page (or ``None``)."""
        plan = _plan(wanted, now)
        position = decode_cursor(cursor, expected_keys={"i", "p", "k"})
        partition_index, start_key = _resume(plan, position)
        items: list[Item] = []
        queries = 0
        while partition_index < len(plan.partitions) and len(items) < limit and queries < MAX_QUERIES:
            partition = plan.partitions[partition_index]
            page, last = self._query(plan, partition, wanted, limit=limit - len(items), start_key=start_key)
            queries += 1
            items.extend(page)
            if last is None:
                partition_index, start_key = partition_index + 1, None
            else:
                start_key = last
        if partition_index >= len(plan.partitions):
            return items, None
        next_cursor = encode_cursor({"i": plan.index, "p": plan.partitions[partition_index], "k": start_key})
        return items, next_cursor

    def _query(
        self, plan: _Plan, partition: str, wanted: HistoryFilter, *, limit: int, start_key: Item | None
    ) -> tuple[list[Item], Item | None]:
        expr = Expression()
        key_condition = f"{expr.name(plan.attribute)} = {expr.value(partition)}"
        if plan.lower and plan.upper:
            key_condition += (
                f" AND {expr.name('received_at')} BETWEEN {expr.value(plan.lower)} AND {expr.value(plan.upper)}"
            )
        elif plan.lower:
            key_condition += f" AND {expr.name('received_at')} >= {expr.value(plan.lower)}"
        elif plan.upper:
            key_condition += f" AND {expr.name('received_at')} <= {expr.value(plan.upper)}"
        filters = [
            f"{expr.name(name)} = {expr.value(value)}"
            for name, value in (
                ("incident_id", wanted.incident_id),
                ("notification_id", wanted.notification_id),
                ("provider", wanted.provider),
                ("status", wanted.status),
            )
            if value is not None and name != plan.attribute
        ]
        if wanted.unmatched is not None:
            filters.append(f"{expr.name('matched')} = {expr.value(not wanted.unmatched)}")
        return self.callbacks.query_page(
            expr,
            key_condition,
            index=plan.index,
            filter_expression=" AND ".join(filters) or None,
            limit=limit,
            start_key=start_key,
            newest_first=True,
        )


def _plan(wanted: HistoryFilter, now: datetime) -> _Plan:
    lower = to_iso(wanted.since) if wanted.since else None
    upper = to_iso(wanted.until) if wanted.until else None
    for attribute, index in _PARTITIONS:
        value = getattr(wanted, attribute)
        if value is not None:
            return _Plan(index, attribute, [value], lower, upper)
    until = wanted.until or now
    since = wanted.since or until - timedelta(days=DEFAULT_DAYS)
    return _Plan("ByDay", "day", day_range(since, until), lower, upper)


def _resume(plan: _Plan, position: Item | None) -> tuple[int, Item | None]:
    if position is None:
        return 0, None
    invalid = ValidationFailed("cursor does not belong to these filters: pass the next_cursor of the same query")
    if position["i"] != plan.index or position["p"] not in plan.partitions:
        raise invalid
    key = position["k"]
    if key is not None and (not isinstance(key, dict) or key.get(plan.attribute) != position["p"]):
        raise invalid
    return plan.partitions.index(position["p"]), key


def day_range(since: datetime, until: datetime) -> list[str]:
    """The UTC days from ``until`` back to ``since``, newest first (the order the history is read in)."""
    first, last = date.fromisoformat(day_of(since)), date.fromisoformat(day_of(until))
    return [(last - timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]
