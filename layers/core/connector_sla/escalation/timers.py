"""The escalation timers, run on a schedule: every notification whose Due-index timer has come due is acted on.

``retry``: the next delivery attempt (with backoff, final after a bounded number). ``release``: a held notification
whose maintenance window may have ended. ``ack_timeout``: an unacknowledged L1/L2 alert moves the incident up a
level through :meth:`StateLedger.commit` (kind ``ack_timeout``). ``eta_reminder``: the L3 watch sends ETA
reminders and re-escalates (kind ``reescalated``) when the ETA passes or the round stays unacknowledged. Level
changes re-read the state and re-decide when another writer won the race, and do nothing when the incident has
moved on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from connector_sla.alerts.records import reminder_trigger
from connector_sla.alerts.store import NotificationStore
from connector_sla.escalation.dispatch import Dispatcher
from connector_sla.escalation.maintenance import MaintenanceWindow, covering_window
from connector_sla.escalation.rules import (
    TimerDecision,
    decide_ack_timeout,
    decide_l3,
    decide_release,
    hold,
    level_change,
    next_level,
    reminder_drafts,
)
from connector_sla.escalation.settings_store import MaintenanceStore
from connector_sla.ids import new_id
from connector_sla.sla.ledger import StaleState, StateLedger
from connector_sla.storage.dynamo import Item
from connector_sla.timeutil import to_iso

logger = Logger(child=True)

# Stop taking new timers with less than this left in the invocation; the next tick picks them up.
STOP_WITH_SECONDS_LEFT = 20.0
_COMMIT_TRIES = 3


class EscalationTimers:
    """Fires due timers; one instance per process, one :meth:`run` per scheduled tick."""

    def __init__(
        self,
        *,
        store: NotificationStore,
        dispatcher: Dispatcher,
        ledger: StateLedger,
        windows: MaintenanceStore,
        transition_ids: Callable[[], str] = lambda: new_id("trn"),
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.ledger = ledger
        self.windows = windows
        self.transition_ids = transition_ids
        self._windows: list[MaintenanceWindow] | None = None

    def run(self, now: datetime, *, tick: str | None, time_left: Callable[[], float]) -> Counter[str]:
        """Act on every timer due at ``now`` while time allows; returns what happened, counted by outcome."""
        self.dispatcher.begin(time_left)
        self._windows = None
        outcomes: Counter[str] = Counter()
        for due in self.store.due(now):
            if time_left() < STOP_WITH_SECONDS_LEFT:
                outcomes["left_for_next_tick"] += 1
                break
            outcomes[self.fire(due, now, tick)] += 1
        logger.remove_keys(["connector_id", "incident_id", "notification_id"])
        logger.info("timers fired", tick=tick, outcomes=dict(outcomes))
        return outcomes

    def fire(self, due: Item, now: datetime, tick: str | None) -> str:
        """Act on one due timer, after reading its notification again (the index may lag)."""
        logger.append_keys(
            connector_id=due.get("connector_id"),
            incident_id=due.get("incident_id"),
            notification_id=due["notification_id"],
        )
        notification = self.store.get(str(due["notification_id"]))
        if notification is None or not notification.get("due_at") or str(notification["due_at"]) > to_iso(now):
            return "not_due"
        kind = notification.get("due_kind")
        if kind == "retry":
            return f"retry_{self.dispatcher.retry(notification, now)}"
        if kind == "release":
            return self._release(notification, now)
        if kind == "ack_timeout":
            return self._ack_timeout(notification, now, tick)
        if kind == "eta_reminder":
            return self._l3_watch(notification, now, tick)
        self.dispatcher.clear_timer(notification, now)
        return "unknown_timer"

    # ------------------------------------------------------------------------------------------ timer kinds

    def _ack_timeout(self, notification: Item, now: datetime, tick: str | None) -> str:
        for _ in range(_COMMIT_TRIES):
            state = self.ledger.read(str(notification["connector_id"]))
            peers = self.store.by_incident(str(notification["incident_id"]))
            decision = decide_ack_timeout(notification, state, peers, now)
            if decision.action != "escalate" or state is None:
                return self._settle(notification, decision, "ack_timeout", now)
            to_level = next_level(str(notification["level"]))
            assert to_level is not None
            if self._commit(state, "ack_timeout", to_level, decision, notification, now, tick):
                self.dispatcher.clear_timer(notification, now)
                logger.info("escalated on ack timeout", to_level=to_level, reason=decision.reason)
                return "escalated"
        return "state_busy"

    def _l3_watch(self, notification: Item, now: datetime, tick: str | None) -> str:
        for _ in range(_COMMIT_TRIES):
            state = self.ledger.read(str(notification["connector_id"]))
            peers = self.store.by_incident(str(notification["incident_id"]))
            decision = decide_l3(notification, state, peers, now)
            if decision.action == "remind" and state is not None:
                self._remind(notification, state, peers, decision, now)
                return self._settle(notification, decision, "eta_reminder", now, outcome="reminded")
            if decision.action != "reescalate" or state is None:
                return self._settle(notification, decision, "eta_reminder", now)
            if self._commit(state, "reescalated", "L3", decision, notification, now, tick):
                self.dispatcher.clear_timer(notification, now)
                logger.info("re-escalated at L3", reason=decision.reason)
                return "reescalated"
        return "state_busy"

    def _release(self, notification: Item, now: datetime) -> str:
        state = self.ledger.read(str(notification["connector_id"]))
        window = covering_window(
            self._windows_at(now), str(notification["connector_id"]), notification.get("owner_team"), now
        )
        decision = decide_release(notification, state, window, now)
        if decision.action == "hold" and decision.next_due is not None:
            self.dispatcher.set_timer(notification, "release", decision.next_due, now)
            return "still_held"
        if decision.action == "suppress":
            return f"held_{self.dispatcher.suppress(notification, decision.reason, now)}"
        if decision.action == "release":
            logger.info("held notification released")
            return f"released_{self.dispatcher.release(notification, now)}"
        self.dispatcher.clear_timer(notification, now)
        return "release_stopped"

    # ------------------------------------------------------------------------------------------ helpers

    def _settle(
        self, notification: Item, decision: TimerDecision, kind: str, now: datetime, *, outcome: str | None = None
    ) -> str:
        if decision.next_due is not None:
            self.dispatcher.set_timer(notification, kind, decision.next_due, now)
            return outcome or f"{kind}_waiting"
        self.dispatcher.clear_timer(notification, now)
        logger.info("timer ended", timer=kind, reason=decision.reason)
        return outcome or f"{kind}_ended"

    def _remind(
        self, notification: Item, state: Item, peers: list[Item], decision: TimerDecision, now: datetime
    ) -> None:
        round_alerts = [
            peer
            for peer in peers
            if peer.get("kind") == "alert" and peer.get("transition_id") == notification.get("transition_id")
        ]
        trigger = reminder_trigger(str(notification["transition_id"]), decision.reminder_index)
        drafts = reminder_drafts(round_alerts, state, index=decision.reminder_index, trigger=trigger, now=now)
        window = covering_window(self._windows_at(now), str(notification["connector_id"]), state.get("owner_team"), now)
        for draft in drafts:
            outcome = self.dispatcher.dispatch_new(hold(draft, window, now) if window else draft, now)
            logger.info("eta reminder", reminder_index=decision.reminder_index, outcome=outcome)
        logger.append_keys(notification_id=notification["notification_id"])

    def _commit(
        self,
        state: Item,
        kind: str,
        to_level: str,
        decision: TimerDecision,
        notification: Item,
        now: datetime,
        tick: str | None,
    ) -> bool:
        extra: dict[str, Any] = {"cause_notification_id": notification["notification_id"]}
        if kind == "reescalated" and state.get("recovery_eta"):
            extra["eta"] = state["recovery_eta"]
        new_state, transition = level_change(
            state,
            kind=kind,
            to_level=to_level,
            reason=decision.reason,
            now=now,
            transition_id=self.transition_ids(),
            tick=tick,
            extra=extra,
        )
        try:
            self.ledger.commit(
                str(notification["connector_id"]),
                new_state,
                expected_version=int(state["version"]),
                transition=transition,
                publish_event=True,
            )
        except StaleState:
            logger.info("state changed meanwhile; deciding again", transition_kind=kind)
            return False
        return True

    def _windows_at(self, now: datetime) -> list[MaintenanceWindow]:
        if self._windows is None:
            self._windows = self.windows.not_ended(now)
        return self._windows
