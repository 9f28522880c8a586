"""The SLA state of a connector and its transition history, changed together or not at all.

Every writer of a connector's SLA state (the evaluator, the escalation timer, ETA recording) goes through
:meth:`StateLedger.commit`: one TransactWriteItems that replaces the state row under an optimistic lock on its
``version`` and appends the transition, sealed into the connector's hash chain. The state row is what the
table's stream carries to the escalation function; the transition is what the evidence exports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector_sla.evidence.chain import GENESIS_HASH, ChainHead
from connector_sla.storage.dynamo import Expression, Item, Table, TransactionCanceled, to_item, transact

STATE_SK = "STATE"


class StaleState(Exception):
    """Another writer changed the state row since it was read: read it again and re-decide."""


def transition_chain_id(connector_id: str) -> str:
    return f"transitions:{connector_id}"


class StateLedger:
    """Storage adapter for the state rows (ConnectorsTable, ``sk = STATE``) and the TransitionsTable."""

    def __init__(self, connectors: Table, transitions: Table) -> None:
        self.connectors = connectors
        self.transitions = transitions

    def read(self, connector_id: str) -> Item | None:
        """The current state row of a connector (strongly consistent), or ``None`` before its first evaluation."""
        return self.connectors.get(self.state_key(connector_id), consistent=True)

    @staticmethod
    def state_key(connector_id: str) -> dict[str, str]:
        """The key of a connector's state row in ConnectorsTable."""
        return {"pk": connector_id, "sk": STATE_SK}

    def commit(
        self,
        connector_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        transition: Mapping[str, Any] | None = None,
        publish_event: bool = False,
    ) -> tuple[Item, Item | None]:
        """Write ``state`` (and append ``transition``) if the row is still at ``expected_version``.

        ``expected_version`` is ``None`` for a connector that has no state row yet. The written row gets
        ``version = expected_version + 1``; with a transition it also gets ``last_transition`` and the new chain
        head. ``publish_event`` marks the transition for the SLA event outbox (``event_pending``).

        Returns the written state row and the sealed transition. Raises :class:`StaleState` when another writer
        won the race; nothing is written then.
        """
        transitions = [transition] if transition is not None else []
        row, sealed = self.commit_many(
            connector_id, state, expected_version=expected_version, transitions=transitions, publish=[publish_event]
        )
        return row, (sealed[0] if sealed else None)

    def commit_many(
        self,
        connector_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        transitions: Sequence[Mapping[str, Any]] = (),
        publish: Sequence[bool] = (),
    ) -> tuple[Item, list[Item]]:
        """Like :meth:`commit`, appending several transitions in order (e.g. a failover, then an incident opening).

        ``publish[i]`` says whether ``transitions[i]`` goes to the SLA event outbox. The state row's
        ``last_transition`` is the last one.
        """
        row, sealed_all, actions = self.write_actions(
            connector_id, state, expected_version=expected_version, transitions=transitions, publish=publish
        )
        try:
            transact(self.connectors.dynamodb, actions)
        except TransactionCanceled as error:
            if error.condition_failed:
                raise StaleState(connector_id) from error
            raise
        return row, sealed_all

    def write_actions(
        self,
        connector_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        transitions: Sequence[Mapping[str, Any]] = (),
        publish: Sequence[bool] = (),
    ) -> tuple[Item, list[Item], list[dict[str, Any]]]:
        """The state row, the sealed transitions and the TransactWriteItems actions of :meth:`commit_many`.

        For a writer that commits them in a transaction of its own, with its own items (the callback recorder).
        """
        version = (expected_version or 0) + 1
        row: dict[str, Any] = {**state, "pk": connector_id, "sk": STATE_SK, "connector_id": connector_id}
        row["version"] = version
        head = ChainHead(int(state.get("chain_seq") or 0), str(state.get("chain_hash") or GENESIS_HASH))
        sealed_all: list[Item] = []
        actions: list[dict[str, Any]] = []
        for index, transition in enumerate(transitions):
            record = {**transition, "connector_id": connector_id, "seq": head.seq + 1}
            sealed = head.next(record, transition_chain_id(connector_id))
            head = ChainHead(sealed["chain_seq"], sealed["record_hash"])
            sealed_all.append(sealed)
            pending = index < len(publish) and publish[index]
            stored = {**sealed, "event_pending": "1"} if pending else sealed
            actions.append(
                {
                    "Put": {
                        "TableName": self.transitions.name,
                        "Item": to_item(stored),
                        "ConditionExpression": "attribute_not_exists(seq)",
                    }
                }
            )
        if sealed_all:
            row["chain_seq"] = head.seq
            row["chain_hash"] = head.hash
            row["last_transition"] = _summary(sealed_all[-1])
        expr = Expression()
        if expected_version is None:
            condition = f"attribute_not_exists({expr.name('version')})"
        else:
            condition = f"{expr.name('version')} = {expr.value(expected_version)}"
        actions.insert(
            0,
            {
                "Put": {
                    "TableName": self.connectors.name,
                    "Item": to_item(row),
                    "ConditionExpression": condition,
                    **expr.params(),
                }
            },
        )
        return row, sealed_all, actions

    def mark_published(self, transitions: list[Mapping[str, Any]]) -> None:
        """Take published transitions out of the SLA event outbox."""
        for transition in transitions:
            expr = Expression()
            self.transitions.update(
                {"connector_id": transition["connector_id"], "seq": transition["seq"]},
                expr,
                expr.update(remove=["event_pending"]),
            )

    def pending_events(self, *, limit: int = 100) -> list[Item]:
        """Transitions committed but not yet published to the SLA event bus, oldest first."""
        expr = Expression()
        condition = f"{expr.name('event_pending')} = {expr.value('1')}"
        items, _ = self.transitions.query_page(expr, condition, index="PendingEvents", limit=limit)
        return items


def _summary(transition: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("transition_id", "kind", "at", "seq", "from_level", "to_level", "from_severity", "to_severity")
    return {key: transition[key] for key in keys if transition.get(key) is not None}
