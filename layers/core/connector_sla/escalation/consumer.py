"""The SLA state stream consumer: each new transition on a connector's STATE row becomes notifications.

``opened``, ``escalated``, ``ack_timeout`` and ``reescalated`` notify the chain's targets of the level reached;
``recovered`` closes every notification of the incident and sends a resolved notice to everyone who was told;
``eta_recorded`` brings the L3 watch forward to the ETA; any other kind changes nothing. A record whose row
changed without a new ``last_transition.transition_id`` is skipped, and a redelivered record finds the
notifications it already created (their ids are stable), so nothing is sent twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from connector_sla.alerts.records import is_open
from connector_sla.alerts.store import NotificationChanged, NotificationStore
from connector_sla.escalation.chains import Chain, pick_chain
from connector_sla.escalation.dispatch import Dispatcher
from connector_sla.escalation.maintenance import MaintenanceWindow, covering_window
from connector_sla.escalation.rules import NOTIFYING_KINDS, Closure, alert_drafts, new_transition, recovery_plan
from connector_sla.escalation.settings_store import ChainStore, MaintenanceStore, default_chain
from connector_sla.storage.dynamo import from_item
from connector_sla.timeutil import parse_iso, to_iso

logger = Logger(child=True)


@dataclass
class BatchSettings:
    """Chains and maintenance windows read once for a whole batch of stream records."""

    chains: dict[str, Chain] = field(default_factory=dict)
    windows: list[MaintenanceWindow] = field(default_factory=list)
    fallback: Chain | None = None


def images(record: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The new and old images of a stream record in Lambda's shape, as plain values."""
    stream = record.get("dynamodb") or {}
    new = from_item(stream["NewImage"]) if stream.get("NewImage") else None
    old = from_item(stream["OldImage"]) if stream.get("OldImage") else None
    return new, old


class StateStreamConsumer:
    """Turns state-row changes into notifications; one instance per process, one :meth:`begin_batch` per batch."""

    def __init__(
        self,
        *,
        store: NotificationStore,
        dispatcher: Dispatcher,
        chains: ChainStore,
        windows: MaintenanceStore,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.chains = chains
        self.windows = windows
        self.batch = BatchSettings()

    def begin_batch(
        self, records: Iterable[Mapping[str, Any]], *, now: datetime, time_left: Callable[[], float]
    ) -> None:
        """Read the chains and maintenance windows the batch's notifying transitions need, in a fixed number of
        requests whatever the batch size."""
        self.dispatcher.begin(time_left)
        connectors = set()
        for record in records:
            new, old = images(record)
            transition = new_transition(new, old)
            if new is not None and transition is not None and transition.get("kind") in NOTIFYING_KINDS:
                connectors.add((str(new.get("connector_id") or new.get("pk")), new.get("owner_team")))
        if not connectors:
            self.batch = BatchSettings()
            return
        self.batch = BatchSettings(
            chains=self.chains.stored_for(connectors), windows=self.windows.not_ended(now), fallback=default_chain()
        )

    def handle(self, record: Mapping[str, Any], *, now: datetime) -> Counter[str]:
        """Act on one stream record; returns what happened, counted by outcome."""
        logger.remove_keys(["connector_id", "incident_id", "notification_id"])
        new, old = images(record)
        transition = new_transition(new, old)
        if new is None or transition is None:
            return Counter({"skipped": 1})
        logger.append_keys(connector_id=new.get("connector_id") or new.get("pk"), incident_id=new.get("incident_id"))
        kind = str(transition.get("kind"))
        logger.info("state transition received", transition_id=transition["transition_id"], kind=kind)
        if kind in NOTIFYING_KINDS:
            return self._notify(new, transition, now)
        if kind == "recovered":
            return self._recover(new, old or {}, transition, now)
        if kind == "eta_recorded":
            return self._eta_recorded(new, now)
        return Counter({"no_action": 1})

    # ------------------------------------------------------------------------------------------ kinds

    def _notify(self, state: Mapping[str, Any], transition: Mapping[str, Any], now: datetime) -> Counter[str]:
        level = str(transition.get("to_level") or state.get("level"))
        connector_id = str(state.get("connector_id") or state.get("pk"))
        team = state.get("owner_team")
        chain = pick_chain(self.batch.chains, connector_id, team, self.batch.fallback or default_chain())
        chain_level = chain.level(level)
        if chain_level is None or not chain_level.targets or not state.get("incident_id"):
            logger.error("chain level has no targets", level=level, chain_scope=chain.scope, chain_id=chain.scope_id)
            return Counter({"no_targets": 1})
        window = covering_window(self.batch.windows, connector_id, team, now)
        outcomes: Counter[str] = Counter()
        for draft in alert_drafts(state, transition, chain_level, window, now):
            outcomes[self.dispatcher.dispatch_new(draft, now)] += 1
        logger.remove_keys(["notification_id"])
        logger.info("level notified", level=level, chain_scope=chain.scope, outcomes=dict(outcomes))
        return outcomes

    def _recover(
        self, state: Mapping[str, Any], old: Mapping[str, Any], transition: Mapping[str, Any], now: datetime
    ) -> Counter[str]:
        incident_id = old.get("incident_id") or state.get("incident_id")
        if not incident_id:
            return Counter({"no_incident": 1})
        logger.append_keys(incident_id=incident_id)
        notifications = self.store.by_incident(str(incident_id))
        closures, resolved = recovery_plan(notifications, {**old, **state}, transition, now)
        outcomes: Counter[str] = Counter()
        for closure in closures:
            outcomes[self._close(closure, now)] += 1
        for draft in resolved:
            outcomes[f"resolved_{self.dispatcher.dispatch_new(draft, now)}"] += 1
        logger.remove_keys(["notification_id"])
        logger.info("incident closed", outcomes=dict(outcomes))
        return outcomes

    def _close(self, closure: Closure, now: datetime) -> str:
        notification = closure.notification
        if closure.suppressed_reason:
            extra_set = {key: value for key, value in closure.set_.items() if key != "suppressed_reason"}
            self.dispatcher.suppress(
                notification, closure.suppressed_reason, now, extra_set=extra_set, extra_remove=tuple(closure.remove)
            )
            return "closed"
        for _ in range(3):
            try:
                self.store.update(notification, set_=closure.set_, remove=closure.remove, now=now)
            except NotificationChanged:
                current = self.store.get(str(notification["notification_id"]))
                if current is None or not is_open(current):
                    return "already_closed"
                notification = current
                continue
            return "closed"
        return "close_conflict"

    def _eta_recorded(self, state: Mapping[str, Any], now: datetime) -> Counter[str]:
        eta = state.get("recovery_eta")
        if not eta or not state.get("incident_id"):
            return Counter({"no_action": 1})
        outcomes: Counter[str] = Counter()
        for notification in self.store.by_incident(str(state["incident_id"])):
            due_at = notification.get("due_at")
            if notification.get("due_kind") == "eta_reminder" and due_at and str(due_at) > str(eta):
                self.dispatcher.set_timer(notification, "eta_reminder", max(parse_iso(str(eta)), now), now)
                outcomes["watch_moved_to_eta"] += 1
        logger.info("recovery eta noted", recovery_eta=eta, now=to_iso(now), outcomes=dict(outcomes))
        return outcomes or Counter({"no_action": 1})
