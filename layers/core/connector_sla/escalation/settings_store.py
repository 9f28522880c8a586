"""Storage adapter for escalation settings in SettingsTable: chains and maintenance windows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from connector_sla.config import settings
from connector_sla.escalation.chains import CHAIN_PK, Chain, chain_key, environment_chain, lookup_order, pick_chain
from connector_sla.escalation.maintenance import MAINTENANCE_PK, MaintenanceWindow
from connector_sla.storage.dynamo import ConditionFailed, Expression, Table, to_item, transact
from connector_sla.timeutil import to_iso

_BATCH_GET_LIMIT = 100


class ChainStore:
    """Saved chains, and the chain that applies to a connector."""

    def __init__(self, settings_table: Table) -> None:
        self.table = settings_table

    def get(self, scope: str, scope_id: str) -> Chain | None:
        """The chain saved at exactly this scope, or ``None``."""
        item = self.table.get({"pk": CHAIN_PK, "sk": chain_key(scope, scope_id)})
        return Chain.from_item(item) if item else None

    def put(self, chain: Chain) -> None:
        self.table.put(chain.to_item())

    def delete(self, scope: str, scope_id: str) -> bool:
        """Remove the chain saved at this scope; ``False`` when there was none."""
        expr = Expression()
        try:
            self.table.delete(
                {"pk": CHAIN_PK, "sk": chain_key(scope, scope_id)}, condition="attribute_exists(pk)", expr=expr
            )
        except ConditionFailed:
            return False
        return True

    def stored_for(self, connectors: Iterable[tuple[str, str | None]]) -> dict[str, Chain]:
        """Every saved chain that may apply to these ``(connector_id, owner_team)`` pairs, by key (batched reads)."""
        keys = sorted({key for connector_id, team in connectors for key in lookup_order(connector_id, team)})
        found: dict[str, Chain] = {}
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            chunk = [{"pk": CHAIN_PK, "sk": key} for key in keys[start : start + _BATCH_GET_LIMIT]]
            for item in self.table.batch_get(chunk):
                found[str(item["sk"])] = Chain.from_item(item)
        return found

    def effective(self, connector_id: str, owner_team: str | None) -> Chain:
        """The chain that applies to one connector: its own, its team's, the saved default or the environment's."""
        return pick_chain(self.stored_for([(connector_id, owner_team)]), connector_id, owner_team, default_chain())

    def effective_default(self) -> Chain:
        """The saved default chain, else the environment's."""
        return self.get("default", "default") or default_chain()


def default_chain() -> Chain:
    """The deployment's default chain, from this process's environment."""
    return environment_chain(settings())


class MaintenanceStore:
    """Maintenance windows; the ones not yet ended are one key range."""

    def __init__(self, settings_table: Table) -> None:
        self.table = settings_table

    def not_ended(self, now: datetime) -> list[MaintenanceWindow]:
        """Windows that end after ``now`` (current and future ones), soonest end first."""
        expr = Expression()
        condition = (
            f"{expr.name('pk')} = {expr.value(MAINTENANCE_PK)} AND {expr.name('sk')} > {expr.value(to_iso(now))}"
        )
        return [MaintenanceWindow.from_item(item) for item in self.table.query_all(expr, condition)]

    def ended_since(self, since: datetime, now: datetime) -> list[MaintenanceWindow]:
        """Windows that ended between ``since`` and ``now``, latest end first."""
        expr = Expression()
        condition = (
            f"{expr.name('pk')} = {expr.value(MAINTENANCE_PK)} AND "
            f"{expr.name('sk')} BETWEEN {expr.value(to_iso(since))} AND {expr.value(to_iso(now))}"
        )
        return [MaintenanceWindow.from_item(item) for item in self.table.query_all(expr, condition, newest_first=True)]

    def create(self, window: MaintenanceWindow) -> None:
        self.table.put(window.to_item())

    def find(self, window_id: str) -> MaintenanceWindow | None:
        """A window by id, ended or not."""
        expr = Expression()
        condition = f"{expr.name('pk')} = {expr.value(MAINTENANCE_PK)}"
        kwargs: dict[str, Any] = {"filter_expression": f"{expr.name('window_id')} = {expr.value(window_id)}"}
        for item in self.table.query_all(expr, condition, **kwargs):
            return MaintenanceWindow.from_item(item)
        return None

    def cancel(self, window: MaintenanceWindow, *, now: datetime, actor: str) -> MaintenanceWindow:
        """End a window now (it stays listed for the record); the held notifications are released by the timer."""
        ends_at = min(window.ends_at, to_iso(now))
        cancelled = window._replace(ends_at=ends_at, cancelled_at=to_iso(now), cancelled_by=actor)
        old_key = {"pk": MAINTENANCE_PK, "sk": f"{window.ends_at}#{window.window_id}"}
        exists = Expression()
        actions: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self.table.name,
                    "Key": to_item(old_key),
                    "ConditionExpression": f"attribute_exists({exists.name('pk')})",
                    **exists.params(),
                }
            },
            {"Put": {"TableName": self.table.name, "Item": to_item(cancelled.to_item())}},
        ]
        if cancelled.to_item()["sk"] == old_key["sk"]:
            actions = [actions[1]]
        transact(self.table.dynamodb, actions)
        return cancelled
