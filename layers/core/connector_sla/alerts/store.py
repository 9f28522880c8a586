"""Storage adapter for notifications (NotificationsTable) and their delivery attempts (DeliveriesTable).

Every change of a notification is conditional on the ``version`` it was read at and adds 1 to it, so two writers
(the stream consumer, the timer, a callback) never overwrite each other's decision: the loser re-reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from connector_sla.alerts.records import SHARDS
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


class NotificationChanged(Exception):
    """The notification changed since it was read: read it again and re-decide."""


class NotificationStore:
    """Notifications and delivery rows, and the transaction that keeps a delivery chain head on its notification."""

    def __init__(self, notifications: Table, deliveries: Table) -> None:
        self.notifications = notifications
        self.deliveries = deliveries

    def create(self, notification: Mapping[str, Any]) -> bool:
        """Write a new notification; ``False`` (and nothing written) when its id already exists."""
        expr = Expression()
        condition = f"attribute_not_exists({expr.name('notification_id')})"
        try:
            self.notifications.put(notification, condition=condition, expr=expr)
        except ConditionFailed:
            return False
        return True

    def get(self, notification_id: str) -> Item | None:
        """The notification as last written (strongly consistent)."""
        return self.notifications.get({"notification_id": notification_id}, consistent=True)

    def update(
        self,
        notification: Mapping[str, Any],
        *,
        set_: Mapping[str, Any],
        remove: Sequence[str] = (),
        now: datetime,
    ) -> Item:
        """Apply changes if the notification is still at the version it was read; returns the new row.

        Raises :class:`NotificationChanged` when another writer changed it first; nothing is written then.
        """
        expr = Expression()
        values = {**set_, "updated_at": to_iso(now)}
        update = expr.update(set_=values, remove=[key for key in remove if key not in values], add={"version": 1})
        condition = f"{expr.name('version')} = {expr.value(notification['version'])}"
        try:
            row = self.notifications.update(
                {"notification_id": notification["notification_id"]},
                expr,
                update,
                condition=condition,
                return_values="ALL_NEW",
            )
        except ConditionFailed as error:
            raise NotificationChanged(str(notification["notification_id"])) from error
        assert row is not None
        return row

    def record_attempt(
        self,
        notification: Mapping[str, Any],
        row: Mapping[str, Any],
        *,
        set_: Mapping[str, Any],
        remove: Sequence[str] = (),
        now: datetime,
    ) -> None:
        """Append a sealed delivery row and move the notification's chain head to it, in one transaction.

        Conditional on the notification's version (so the chain never forks). Raises
        :class:`NotificationChanged` when the notification changed since it was read; nothing is written then.
        """
        expr = Expression()
        values = {
            **set_,
            "delivery_chain_seq": row["chain_seq"],
            "delivery_chain_hash": row["record_hash"],
            "updated_at": to_iso(now),
        }
        update = expr.update(set_=values, remove=[key for key in remove if key not in values], add={"version": 1})
        condition = f"{expr.name('version')} = {expr.value(notification['version'])}"
        put_expr = Expression()
        actions = [
            {
                "Put": {
                    "TableName": self.deliveries.name,
                    "Item": to_item(row),
                    "ConditionExpression": f"attribute_not_exists({put_expr.name('attempt')})",
                    **put_expr.params(),
                }
            },
            {
                "Update": {
                    "TableName": self.notifications.name,
                    "Key": to_item({"notification_id": notification["notification_id"]}),
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    **expr.params(),
                }
            },
        ]
        try:
            transact(self.notifications.dynamodb, actions)
        except TransactionCanceled as error:
            if error.condition_failed:
                raise NotificationChanged(str(notification["notification_id"])) from error
            raise

    def by_incident(self, incident_id: str) -> list[Item]:
        """Every notification of an incident, oldest first."""
        expr = Expression()
        condition = f"{expr.name('incident_id')} = {expr.value(incident_id)}"
        return list(self.notifications.query_all(expr, condition, index="ByIncident"))

    def first_of_incident(self, incident_id: str) -> Item | None:
        """The incident's first notification (it names the connector), or ``None``."""
        expr = Expression()
        condition = f"{expr.name('incident_id')} = {expr.value(incident_id)}"
        items, _ = self.notifications.query_page(expr, condition, index="ByIncident", limit=1)
        return items[0] if items else None

    def due(self, now: datetime, *, limit_per_shard: int = 100) -> Iterator[Item]:
        """Notifications whose timer is due at ``now``, shard after shard, each shard oldest first."""
        for shard in range(SHARDS):
            expr = Expression()
            shard_matches = f"{expr.name('due_shard')} = {expr.value(str(shard))}"
            condition = f"{shard_matches} AND {expr.name('due_at')} <= {expr.value(to_iso(now))}"
            items, _ = self.notifications.query_page(expr, condition, index="Due", limit=limit_per_shard)
            yield from items

    def deliveries_of(self, notification_id: str) -> list[Item]:
        """Every attempt of a notification, in attempt order."""
        expr = Expression()
        condition = f"{expr.name('notification_id')} = {expr.value(notification_id)}"
        return list(self.deliveries.query_all(expr, condition, consistent=True))
