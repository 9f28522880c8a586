"""A recovery ETA carried by a callback, committed to the connector's SLA state as an ``eta_recorded`` transition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from connector_sla.ids import new_id
from connector_sla.sla.ledger import StaleState, StateLedger
from connector_sla.timeutil import parse_iso, to_iso

logger = Logger(child=True)

# The same limit as POST /alerts/incidents/{incident_id}/eta: further out, escalate instead of waiting.
MAX_ETA_AHEAD = timedelta(days=7)


@dataclass(frozen=True)
class EtaDecision:
    """Whether an ETA is committed, and if not, why (``reason``)."""

    state: dict[str, Any] | None
    transition: dict[str, Any] | None
    reason: str


def decide_eta(
    state: Mapping[str, Any] | None,
    *,
    incident_id: str | None,
    eta: str,
    provider: str,
    responder: str | None,
    at: datetime,
) -> EtaDecision:
    """The state and transition that record ``eta`` for ``incident_id``, or the reason nothing is recorded.

    An ETA is recorded only while that incident is open, only when it lies after ``at`` and within the limit the
    ETA route keeps (7 days), and never over an ETA recorded later than ``at`` (a callback delivered late does
    not undo a newer ETA). The transition is built by the escalation's own ETA rule, with the provider as actor.
    """
    if state is None or state.get("incident_status") != "open" or state.get("incident_id") != incident_id:
        return EtaDecision(None, None, "incident_not_open")
    moment = parse_iso(eta)
    if moment <= at:
        return EtaDecision(None, None, "eta_in_the_past")
    if moment - at > MAX_ETA_AHEAD:
        return EtaDecision(None, None, "eta_too_far_ahead")
    recorded_at = state.get("eta_recorded_at")
    if isinstance(recorded_at, str) and recorded_at > to_iso(at):
        return EtaDecision(None, None, "newer_eta_recorded")
    if state.get("recovery_eta") == to_iso(moment):
        return EtaDecision(None, None, "eta_unchanged")
    # Imported here: only a callback that carries an ETA needs the escalation rules, not the cold start.
    from connector_sla.escalation.rules import eta_change  # noqa: PLC0415

    note = f"from an on-call callback, responder {responder}" if responder else "from an on-call callback"
    new_state, transition = eta_change(
        state, eta=moment, actor=provider, now=at, transition_id=new_id("trn"), note=note
    )
    return EtaDecision(new_state, transition, "recorded")


class EtaRecorder:
    """Records callback ETAs in the connector's state: in the callback's own transaction when the state row was read
    with the notification (:meth:`actions`), else through :meth:`StateLedger.commit` (:meth:`record`).
    """

    def __init__(self, ledger: StateLedger, *, attempts: int = 3) -> None:
        self.ledger = ledger
        self.attempts = attempts

    def actions(
        self,
        connector_id: str,
        state: Mapping[str, Any] | None,
        *,
        incident_id: str | None,
        eta: str,
        provider: str,
        responder: str | None,
        at: datetime,
    ) -> list[dict[str, Any]]:
        """The TransactWriteItems actions that record ``eta`` over ``state`` as read; empty when it is not recorded.

        The state row's action is conditional on the version read, so the caller's whole transaction fails when
        another writer changed the state meanwhile, and the caller reads again.
        """
        decision = decide_eta(state, incident_id=incident_id, eta=eta, provider=provider, responder=responder, at=at)
        if decision.state is None or decision.transition is None:
            logger.info("callback eta not recorded", reason=decision.reason, eta=eta)
            return []
        _, _, actions = self.ledger.write_actions(
            connector_id,
            decision.state,
            expected_version=(state or {}).get("version"),
            transitions=[decision.transition],
        )
        return actions

    def record(
        self,
        connector_id: str,
        *,
        incident_id: str | None,
        eta: str,
        provider: str,
        responder: str | None,
        at: datetime,
    ) -> bool:
        """Record ``eta`` on the connector's open incident; ``True`` when a transition was committed."""
        for _ in range(self.attempts):
            state = self.ledger.read(connector_id)
            decision = decide_eta(
                state, incident_id=incident_id, eta=eta, provider=provider, responder=responder, at=at
            )
            if decision.state is None or decision.transition is None:
                logger.info("callback eta not recorded", reason=decision.reason, eta=eta)
                return False
            try:
                self.ledger.commit(
                    connector_id,
                    decision.state,
                    expected_version=(state or {}).get("version"),
                    transition=decision.transition,
                )
            except StaleState:
                continue
            logger.info("callback eta recorded", eta=eta)
            return True
        logger.warning("callback eta not recorded", reason="state_contention", eta=eta)
        return False
