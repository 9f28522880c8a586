"""The read side of notifications and deliveries: filtered, newest first, paginated with opaque cursors.

Each list picks the narrowest index its filters allow (an incident, a connector, the sparse Unacked index, else
the days of the time range, newest first) and applies the other filters on the way. A page holds at most
``limit`` items and may hold fewer when filters are sparse; ``next_cursor`` is ``null`` only at the end.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector_sla.alerts.models import (
    DeliveryPage,
    DeliveryQuery,
    DeliveryView,
    NotificationPage,
    NotificationQuery,
    NotificationView,
)
from connector_sla.alerts.records import SHARDS
from connector_sla.config import settings
from connector_sla.errors import ValidationFailed
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Expression, Item, Table
from connector_sla.timeutil import days_between, parse_iso, to_iso

DEFAULT_RANGE = timedelta(days=7)
LONGEST_RANGE = timedelta(days=92)
MAX_REQUESTS_PER_PAGE = 25
_BAD_CURSOR = "cursor is not valid for this list: pass the next_cursor of a previous page with the same filters"


@dataclass(frozen=True)
class Partition:
    """One key of one index (or the table, ``index=None``) to read, newest first."""

    index: str | None
    key_name: str
    key_value: str
    sort_name: str
    ranged: bool = True


class AlertReads:
    """Lists notifications and deliveries."""

    def __init__(self, notifications: Table, deliveries: Table) -> None:
        self.notifications = notifications
        self.deliveries = deliveries

    @classmethod
    def from_settings(cls) -> AlertReads:
        """Reads over this process's tables and shared DynamoDB client."""
        config = settings()
        dynamodb = client("dynamodb")
        return cls(Table(config.notifications_table, dynamodb), Table(config.deliveries_table, dynamodb))

    def list_notifications(self, query: NotificationQuery, *, now: datetime) -> NotificationPage:
        """Notifications matching the query, newest first."""
        page = _Page.open(query.cursor, query.since, query.until, now, ("notification_id",))
        filters: dict[str, Any] = {
            "level": query.level,
            "kind": query.kind,
            "channel": query.channel,
            "delivery_status": query.delivery_status,
        }
        if query.only_unacked and not (query.incident_id or query.connector_id):
            shards = [Partition("Unacked", "unacked_shard", str(shard), "created_at") for shard in range(SHARDS)]
            items = page.merged(self.notifications, shards, filters, query.limit)
        else:
            exists = ("unacked_shard",) if query.only_unacked else ()
            if query.incident_id:
                partitions = [Partition("ByIncident", "incident_id", query.incident_id, "created_at")]
                filters["connector_id"] = query.connector_id
            elif query.connector_id:
                partitions = [Partition("ByConnector", "connector_id", query.connector_id, "created_at")]
            else:
                partitions = page.days("created_at")
            items = page.sequential(self.notifications, partitions, filters, exists, query.limit)
        views = [NotificationView.model_validate(item) for item in items]
        return NotificationPage(items=views, next_cursor=page.next_cursor())

    def list_deliveries(self, query: DeliveryQuery, *, now: datetime) -> DeliveryPage:
        """Delivery attempts matching the query, newest first."""
        page = _Page.open(query.cursor, query.since, query.until, now, ("notification_id", "attempt"))
        filters: dict[str, Any] = {"status": query.status, "channel": query.channel, "level": query.level}
        if query.notification_id:
            partitions = [Partition(None, "notification_id", query.notification_id, "attempt", ranged=False)]
            filters.update(incident_id=query.incident_id, connector_id=query.connector_id)
        elif query.incident_id:
            partitions = [Partition("ByIncident", "incident_id", query.incident_id, "at")]
            filters["connector_id"] = query.connector_id
        elif query.connector_id:
            partitions = [Partition("ByConnector", "connector_id", query.connector_id, "at")]
        else:
            partitions = page.days("at")
        items = page.sequential(self.deliveries, partitions, filters, (), query.limit)
        if query.notification_id:
            items = [item for item in items if page.since_iso <= str(item.get("at")) <= page.until_iso]
        views = [DeliveryView.model_validate(item) for item in items]
        return DeliveryPage(items=views, next_cursor=page.next_cursor())


# ---------------------------------------------------------------------------------------------- paging


class _Page:
    """One page of a list: the time range (fixed by the first page, carried in the cursor) and where to go on."""

    def __init__(self, since: datetime, until: datetime, state: dict[str, Any] | None, table_keys: tuple[str, ...]):
        self.since_iso = to_iso(since)
        self.until_iso = to_iso(until)
        self.since = since
        self.until = until
        self.state = state
        self.table_keys = table_keys
        self.next_state: dict[str, Any] | None = None

    @classmethod
    def open(
        cls,
        cursor: str | None,
        since: datetime | None,
        until: datetime | None,
        now: datetime,
        table_keys: tuple[str, ...],
    ) -> _Page:
        if cursor:
            state = _decode(cursor)
            try:
                start, end = (parse_iso(str(value)) for value in state.pop("r"))
            except (KeyError, TypeError, ValueError) as error:
                raise ValidationFailed(_BAD_CURSOR) from error
            if not timedelta(0) <= end - start <= LONGEST_RANGE:
                raise ValidationFailed(_BAD_CURSOR)
            return cls(start, end, state, table_keys)
        until = until or now
        since = since or until - DEFAULT_RANGE
        if until < since:
            raise ValidationFailed("until must not be before since")
        if until - since > LONGEST_RANGE:
            raise ValidationFailed(f"the time range spans at most {LONGEST_RANGE.days} days; narrow since/until")
        return cls(since, until, None, table_keys)

    def days(self, sort_name: str) -> list[Partition]:
        return [Partition("ByDay", "day", day, sort_name) for day in reversed(days_between(self.since, self.until))]

    def next_cursor(self) -> str | None:
        if self.next_state is None:
            return None
        return _encode({**self.next_state, "r": [self.since_iso, self.until_iso]})

    def _condition(self, expr: Expression, partition: Partition) -> str:
        condition = f"{expr.name(partition.key_name)} = {expr.value(partition.key_value)}"
        if partition.ranged:
            sort = expr.name(partition.sort_name)
            condition += f" AND {sort} BETWEEN {expr.value(self.since_iso)} AND {expr.value(self.until_iso)}"
        return condition

    def _start_key(self, key: Any, partition: Partition) -> Item | None:
        """A start key from a cursor, checked so that DynamoDB cannot refuse it."""
        if key is None:
            return None
        expected = {*self.table_keys, partition.key_name, partition.sort_name}
        if not isinstance(key, dict) or set(key) != expected or key[partition.key_name] != partition.key_value:
            raise ValidationFailed(_BAD_CURSOR)
        if not all(isinstance(value, str | int) and not isinstance(value, bool) for value in key.values()):
            raise ValidationFailed(_BAD_CURSOR)
        if partition.ranged and not self.since_iso <= str(key[partition.sort_name]) <= self.until_iso:
            raise ValidationFailed(_BAD_CURSOR)
        return key

    def sequential(
        self,
        table: Table,
        partitions: list[Partition],
        equals: Mapping[str, Any],
        exists: Sequence[str],
        limit: int,
    ) -> list[Item]:
        """Read partitions one after the other, each newest first, until the page is full."""
        tag = f"seq:{partitions[0].index}:{partitions[0].key_value}:{len(partitions)}" if partitions else "seq:none"
        state = self.state if self.state is not None else {"t": tag, "p": 0, "k": None}
        position = state.get("p")
        if state.get("t") != tag or not isinstance(position, int) or not 0 <= position < max(len(partitions), 1):
            raise ValidationFailed(_BAD_CURSOR)
        key = self._start_key(state.get("k"), partitions[position]) if partitions else None
        items: list[Item] = []
        requests = 0
        while position < len(partitions) and len(items) < limit and requests < MAX_REQUESTS_PER_PAGE:
            partition = partitions[position]
            expr = Expression()
            condition = self._condition(expr, partition)
            found, last = table.query_page(
                expr,
                condition,
                index=partition.index,
                filter_expression=_filter(expr, equals, exists),
                limit=limit - len(items),
                start_key=key,
                newest_first=True,
            )
            requests += 1
            items.extend(found)
            if last is None:
                position, key = position + 1, None
            else:
                key = last
        self.next_state = None if position >= len(partitions) else {"t": tag, "p": position, "k": key}
        return items

    def merged(self, table: Table, partitions: list[Partition], equals: Mapping[str, Any], limit: int) -> list[Item]:
        """Read the shards of one index side by side and merge them, newest first."""
        tag = f"merge:{partitions[0].index}:{len(partitions)}"
        state = self.state if self.state is not None else {"t": tag, "m": {p.key_value: None for p in partitions}}
        positions = state.get("m")
        if state.get("t") != tag or not isinstance(positions, dict):
            raise ValidationFailed(_BAD_CURSOR)
        if set(positions) != {p.key_value for p in partitions}:
            raise ValidationFailed(_BAD_CURSOR)
        fetched: dict[str, tuple[list[Item], Item | None]] = {}
        for partition in partitions:
            position = positions[partition.key_value]
            if position == "done":
                continue
            expr = Expression()
            found, last = table.query_page(
                expr,
                self._condition(expr, partition),
                index=partition.index,
                filter_expression=_filter(expr, equals, ()),
                limit=limit,
                start_key=self._start_key(position, partition),
                newest_first=True,
            )
            fetched[partition.key_value] = (found, last)
        sort_name, key_name = partitions[0].sort_name, partitions[0].key_name
        candidates = [(item, shard) for shard, (found, _) in fetched.items() for item in found]
        # A stable sort keeps each shard's own order, so what is taken from a shard is always a prefix of it.
        chosen = sorted(candidates, key=lambda pair: str(pair[0][sort_name]), reverse=True)[:limit]
        taken: dict[str, int] = {}
        for _, shard in chosen:
            taken[shard] = taken.get(shard, 0) + 1
        for shard, (found, last) in fetched.items():
            count = taken.get(shard, 0)
            if count == len(found):
                positions[shard] = last if last is not None else "done"
            elif count:
                item = found[count - 1]
                keys = (*self.table_keys, key_name, sort_name)
                positions[shard] = {name: item[name] for name in keys}
        done = all(position == "done" for position in positions.values())
        self.next_state = None if done else {"t": tag, "m": positions}
        return [item for item, _ in chosen]


def _filter(expr: Expression, equals: Mapping[str, Any], exists: Sequence[str]) -> str | None:
    clauses = [f"{expr.name(key)} = {expr.value(value)}" for key, value in equals.items() if value is not None]
    clauses += [f"attribute_exists({expr.name(key)})" for key in exists]
    return " AND ".join(clauses) or None


def _encode(state: Mapping[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as error:
        raise ValidationFailed(_BAD_CURSOR) from error
    if not isinstance(state, dict):
        raise ValidationFailed(_BAD_CURSOR)
    return state
