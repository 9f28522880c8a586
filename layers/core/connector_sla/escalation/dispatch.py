"""Creating notifications and delivering them, at most once per attempt.

A notification is written conditionally (its id is stable, so a redelivered stream record finds it and sends
nothing); each attempt is claimed on the notification before it is sent, and its result is recorded as a sealed
delivery row together with the notification's new state. When the invocation runs short of time, or a target
has already failed in this invocation, new notifications are written with a retry timer instead of being sent
now: the timer delivers them, nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from connector_sla.alerts.records import DUE_FIELDS, delivery_row, timer_fields
from connector_sla.alerts.store import NotificationChanged, NotificationStore
from connector_sla.escalation.channels import ChannelSenders
from connector_sla.escalation.rules import (
    MAX_ATTEMPTS,
    AttemptResult,
    after_attempt,
    claim_fields,
    deliverable,
    retry_delay,
)
from connector_sla.timeutil import to_iso, utcnow

logger = Logger(child=True)

# An attempt is only started with this much time left in the invocation (connect + read timeouts and the write).
SEND_BUDGET_SECONDS = 15.0
_RETRIES_ON_CHANGE = 3


class Dispatcher:
    """Creates notifications and runs their delivery attempts; outcomes are short words for metrics and logs."""

    def __init__(
        self,
        store: NotificationStore,
        senders: ChannelSenders,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.senders = senders
        self.max_attempts = max_attempts
        self.clock = clock
        self.time_left: Callable[[], float] = lambda: float("inf")
        self.failing: set[tuple[str, str]] = set()

    def begin(self, time_left: Callable[[], float]) -> None:
        """Start an invocation: its remaining-time source, and no target known to be failing yet."""
        self.time_left = time_left
        self.failing = set()

    # ------------------------------------------------------------------------------------------ new notifications

    def dispatch_new(self, draft: Mapping[str, Any], now: datetime) -> str:
        """Create a notification (held ones just wait) and make its first attempt, or leave it to the timer.

        Returns ``held``, ``deferred``, ``duplicate`` (it existed: nothing sent) or the first attempt's status.
        """
        notification_id = str(draft["notification_id"])
        logger.append_keys(notification_id=notification_id)
        if draft.get("delivery_status") == "held":
            return "held" if self.store.create(draft) else "duplicate"
        if self._should_defer(draft):
            deferred = {**draft, **timer_fields(notification_id, "retry", now)}
            return "deferred" if self.store.create(deferred) else "duplicate"
        claimed = {**draft, **claim_fields(draft, 1, now)}
        if not self.store.create(claimed):
            logger.info("notification already exists")
            return "duplicate"
        return self._attempt(claimed, 1)

    # ------------------------------------------------------------------------------------------ timer entry points

    def retry(self, notification: Mapping[str, Any], now: datetime) -> str:
        """Run the next attempt of a pending notification whose retry timer is due (read it fresh first)."""
        logger.append_keys(notification_id=notification["notification_id"])
        if not deliverable(notification) or notification.get("delivery_status") != "pending":
            self.clear_timer(notification, now)
            return "stopped"
        attempt = int(notification.get("attempt_count") or 0)
        if attempt > int(notification.get("delivery_chain_seq") or 0):
            # The claimed attempt recorded no result before its lease ran out: its outcome is unknown.
            result = AttemptResult("retry", error="no result was recorded before the attempt's lease ran out")
            return self._record(notification, attempt, result)
        if self._should_defer(notification):
            return "deferred"
        try:
            claimed = self.store.update(notification, set_=claim_fields(notification, attempt + 1, now), now=now)
        except NotificationChanged:
            return "changed"
        return self._attempt(claimed, attempt + 1)

    def release(self, notification: Mapping[str, Any], now: datetime) -> str:
        """Deliver a held notification now that its maintenance window is over."""
        logger.append_keys(notification_id=notification["notification_id"])
        changes = {
            "delivery_status": "pending",
            "dispatched_at": to_iso(now),
            "released_at": to_iso(now),
            **claim_fields(notification, 1, now),
        }
        try:
            claimed = self.store.update(notification, set_=changes, remove=["suppressed_reason"], now=now)
        except NotificationChanged:
            return "changed"
        return self._attempt(claimed, 1)

    def suppress(
        self,
        notification: Mapping[str, Any],
        reason: str,
        now: datetime,
        *,
        extra_set: Mapping[str, Any] | None = None,
        extra_remove: tuple[str, ...] = (),
    ) -> str:
        """Give up a notification that was never delivered: a ``suppressed`` delivery row says why."""
        logger.append_keys(notification_id=notification["notification_id"])
        for _ in range(_RETRIES_ON_CHANGE):
            attempt = max(int(notification.get("attempt_count") or 0), int(notification.get("delivery_chain_seq") or 0))
            row = delivery_row(notification, attempt=attempt + 1, status="suppressed", at=now, error=reason)
            set_ = {"delivery_status": "suppressed", "suppressed_reason": reason, **(extra_set or {})}
            remove = sorted({*DUE_FIELDS, "next_attempt_at", *extra_remove} - set(set_))
            try:
                self.store.record_attempt(notification, row, set_=set_, remove=remove, now=now)
            except NotificationChanged:
                current = self.store.get(str(notification["notification_id"]))
                if current is None or current.get("delivery_status") not in ("held", "pending"):
                    return "already_final"
                notification = current
                continue
            logger.info("notification suppressed", reason=reason)
            return "suppressed"
        return "changed"

    def set_timer(self, notification: Mapping[str, Any], kind: str, due: datetime, now: datetime) -> None:
        """Move a notification's timer (a lost race is fine: the winner set its own)."""
        try:
            self.store.update(notification, set_=timer_fields(str(notification["notification_id"]), kind, due), now=now)
        except NotificationChanged:
            logger.info("timer changed meanwhile")

    def clear_timer(self, notification: Mapping[str, Any], now: datetime) -> None:
        """End a notification's timer (a lost race is fine: the winner decided)."""
        if "due_at" not in notification:
            return
        try:
            self.store.update(notification, set_={}, remove=list(DUE_FIELDS), now=now)
        except NotificationChanged:
            logger.info("timer changed meanwhile")

    # ------------------------------------------------------------------------------------------ attempts

    def _should_defer(self, notification: Mapping[str, Any]) -> bool:
        target = (str(notification["channel"]), str(notification["target"]))
        return target in self.failing or self.time_left() < SEND_BUDGET_SECONDS

    def _attempt(self, notification: Mapping[str, Any], attempt: int) -> str:
        delivery_id = str(notification["last_delivery_id"])
        result = self.senders.deliver(notification, delivery_id)
        if result.outcome != "sent":
            self.failing.add((str(notification["channel"]), str(notification["target"])))
            logger.warning(
                "delivery attempt failed",
                delivery_id=delivery_id,
                channel=notification["channel"],
                response_code=result.response_code,
                error=result.error,
            )
        return self._record(notification, attempt, result)

    def _record(self, notification: Mapping[str, Any], attempt: int, result: AttemptResult) -> str:
        notification_id = str(notification["notification_id"])
        for _ in range(_RETRIES_ON_CHANGE):
            now = self.clock()
            plan = after_attempt(notification, result, now, attempt=attempt, max_attempts=self.max_attempts)
            row = delivery_row(
                notification,
                attempt=attempt,
                status=plan.row_status,
                at=now,
                response_code=result.response_code,
                latency_ms=result.latency_ms,
                error=result.error,
            )
            try:
                self.store.record_attempt(notification, row, set_=plan.set_, remove=plan.remove, now=now)
            except NotificationChanged:
                current = self.store.get(notification_id)
                if current is None:
                    return "missing"
                notification = current
                continue
            logger.info(
                "delivery attempt recorded",
                delivery_id=row["delivery_id"],
                status=plan.row_status,
                next_attempt_in_seconds=(
                    int(retry_delay(attempt, notification_id).total_seconds()) if plan.row_status == "failed" else None
                ),
            )
            return str(plan.row_status)
        logger.warning("delivery attempt not recorded", attempt=attempt)
        return "unrecorded"
