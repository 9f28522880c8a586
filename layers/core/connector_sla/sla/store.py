"""Storage adapter of the connector registry: CONFIG, PROGRESS and COUNTERS rows, and fleet reads.

The state rows and transitions are written by :mod:`connector_sla.sla.ledger`; this module only reads them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector_sla.sla.ledger import STATE_SK
from connector_sla.storage.dynamo import (
    ConditionFailed,
    Expression,
    Item,
    Table,
    TransactionCanceled,
    decode_cursor,
    encode_cursor,
    from_item,
    to_item,
    transact,
)

CONFIG_SK = "CONFIG"
PROGRESS_SK = "PROGRESS"
COUNTERS_SK = "COUNTERS"
ROW_KINDS = (CONFIG_SK, PROGRESS_SK, COUNTERS_SK, STATE_SK)


class ConcurrentUpdate(Exception):
    """Another request changed the row between read and write; retry the request."""


@dataclass
class ConnectorRows:
    """The four rows of one connector (any of them may be missing)."""

    connector_id: str
    config: Item | None = None
    progress: Item | None = None
    counters: Item | None = None
    state: Item | None = None

    def add(self, item: Item) -> None:
        kind = item.get("sk")
        if kind == CONFIG_SK:
            self.config = item
        elif kind == PROGRESS_SK:
            self.progress = item
        elif kind == COUNTERS_SK:
            self.counters = item
        elif kind == STATE_SK:
            self.state = item


@dataclass
class FleetPage:
    rows: list[ConnectorRows] = field(default_factory=list)
    next_cursor: str | None = None


class ConnectorStore:
    """Reads and writes the registry rows of ConnectorsTable."""

    def __init__(self, connectors: Table) -> None:
        self.table = connectors

    # -------------------------------------------------------------------------------------------- registry

    def get_rows(self, connector_id: str) -> ConnectorRows:
        """All four rows of a connector in one BatchGetItem."""
        rows = ConnectorRows(connector_id)
        for item in self.table.batch_get([{"pk": connector_id, "sk": kind} for kind in ROW_KINDS], consistent=True):
            rows.add(item)
        return rows

    def get_many(self, connector_ids: Sequence[str]) -> dict[str, ConnectorRows]:
        """The rows of up to 25 connectors (100 keys) in one BatchGetItem."""
        rows = {connector_id: ConnectorRows(connector_id) for connector_id in connector_ids}
        keys = [{"pk": connector_id, "sk": kind} for connector_id in connector_ids for kind in ROW_KINDS]
        for start in range(0, len(keys), 100):
            for item in self.table.batch_get(keys[start : start + 100]):
                rows[item["pk"]].add(item)
        return rows

    def save_config(self, config: Mapping[str, Any], *, expected_version: int | None) -> None:
        """Create or replace a connector's CONFIG row, and make sure its PROGRESS and COUNTERS rows exist.

        ``expected_version`` is the ``config_version`` read before (``None`` to create); a concurrent update
        raises :class:`ConcurrentUpdate` and writes nothing.
        """
        connector_id = config["connector_id"]
        expr = Expression()
        if expected_version is None:
            condition = f"attribute_not_exists({expr.name('pk')})"
        else:
            condition = f"{expr.name('config_version')} = {expr.value(expected_version)}"
        put = {
            "Put": {
                "TableName": self.table.name,
                "Item": to_item({**config, "pk": connector_id, "sk": CONFIG_SK}),
                "ConditionExpression": condition,
                **expr.params(),
            }
        }
        progress = Expression()
        progress_update = (
            f"SET {progress.name('sources')} = if_not_exists({progress.name('sources')}, {progress.value({})}), "
            f"{progress.name('revision')} = if_not_exists({progress.name('revision')}, {progress.value(0)})"
        )
        counters = Expression()
        counter_update = "SET " + ", ".join(
            f"{counters.name(name)} = if_not_exists({counters.name(name)}, {counters.value(0)})"
            for name in ("dead_letter_total", "pending_replay", "replayed_total")
        )
        actions = [
            put,
            self._init(connector_id, PROGRESS_SK, progress, progress_update),
            self._init(connector_id, COUNTERS_SK, counters, counter_update),
        ]
        try:
            transact(self.table.dynamodb, actions)
        except TransactionCanceled as error:
            if error.condition_failed:
                raise ConcurrentUpdate(connector_id) from error
            raise

    def _init(self, connector_id: str, kind: str, expr: Expression, update: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": to_item({"pk": connector_id, "sk": kind}),
                "UpdateExpression": update,
                **expr.params(),
            }
        }

    def save_progress(self, connector_id: str, progress: Mapping[str, Any], *, expected_revision: int) -> None:
        """Replace the PROGRESS row if it is still at ``expected_revision``."""
        expr = Expression()
        condition = f"{expr.name('revision')} = {expr.value(expected_revision)}"
        item = {**progress, "pk": connector_id, "sk": PROGRESS_SK, "revision": expected_revision + 1}
        try:
            self.table.put(item, condition=condition, expr=expr)
        except ConditionFailed as error:
            raise ConcurrentUpdate(connector_id) from error

    # -------------------------------------------------------------------------------------------- fleet reads

    def scan_fleet(self, *, segment: int = 0, total_segments: int = 1) -> Iterator[ConnectorRows]:
        """Every connector of the table (or of one parallel-scan segment), read page by page.

        A Scan returns a partition key's items together, in sort-key order; a connector whose rows straddle two
        pages is completed from the next page before it is yielded.
        """
        pending: ConnectorRows | None = None
        for page in self.table.scan_pages(segment=segment, total_segments=total_segments, raw=True):
            for raw in page:
                item = from_item(raw)
                if pending is None or pending.connector_id != item["pk"]:
                    if pending is not None:
                        yield pending
                    pending = ConnectorRows(item["pk"])
                pending.add(item)
        if pending is not None:
            yield pending

    def config_page(self, *, owner_team: str | None, limit: int, cursor: str | None) -> tuple[list[Item], str | None]:
        """A page of CONFIG rows (optionally of one team), for the read endpoints."""
        expr = Expression()
        conditions = [f"{expr.name('sk')} = {expr.value(CONFIG_SK)}"]
        if owner_team:
            conditions.append(f"{expr.name('owner_team')} = {expr.value(owner_team)}")
        start_key = decode_cursor(cursor, expected_keys={"pk", "sk"})
        found: list[Item] = []
        while len(found) < limit:
            params: dict[str, Any] = {
                "TableName": self.table.name,
                "FilterExpression": " AND ".join(conditions),
                "Limit": max(limit * 4, 50),
                **expr.params(),
            }
            if start_key:
                params["ExclusiveStartKey"] = to_item(start_key)
            response = self.table.dynamodb.scan(**params)
            for raw in response.get("Items", []):
                found.append(from_item(raw))
                if len(found) == limit:
                    return found, encode_cursor({"pk": found[-1]["pk"], "sk": CONFIG_SK})
            last = response.get("LastEvaluatedKey")
            if not last:
                return found, None
            start_key = from_item(last)
        return found, encode_cursor({"pk": found[-1]["pk"], "sk": CONFIG_SK}) if found else None
