"""What the alerts API does with chains, maintenance windows and recovery ETAs.

Every refusal is a :class:`~connector_sla.errors.DomainError` that says what was wrong and what is expected, and
nothing is written when input is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from connector_sla.alerts.providers import ProviderStore
from connector_sla.alerts.store import NotificationStore
from connector_sla.config import settings
from connector_sla.errors import Conflict, NotFound, ValidationFailed
from connector_sla.escalation.chains import Chain, chain_problems, oncall_providers, scope_problem
from connector_sla.escalation.maintenance import MaintenanceWindow, window_problems
from connector_sla.escalation.models import (
    ChainBody,
    ChainView,
    EtaBody,
    EtaRecorded,
    MaintenancePage,
    MaintenanceQuery,
    MaintenanceWindowBody,
    MaintenanceWindowView,
)
from connector_sla.escalation.rules import eta_change
from connector_sla.escalation.settings_store import ChainStore, MaintenanceStore, default_chain
from connector_sla.ids import new_id
from connector_sla.sla.ledger import StaleState, StateLedger
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import parse_iso, to_iso

logger = Logger(child=True)

MAX_ETA_AHEAD = timedelta(days=7)
ENDED_WINDOWS_SHOWN = timedelta(days=30)


class ConnectorDirectory:
    """The few facts about registered connectors that escalation settings need (ConnectorsTable CONFIG rows)."""

    def __init__(self, connectors: Table) -> None:
        self.connectors = connectors

    def owner_team(self, connector_id: str) -> str | None:
        """The connector's owner team; raises :class:`NotFound` for a connector that is not registered."""
        config = self.connectors.get({"pk": connector_id, "sk": "CONFIG"})
        if config is None:
            raise NotFound(
                f"connector {connector_id!r} is not registered; register it with PUT /events/connectors/{{id}}"
            )
        return config.get("owner_team")


class ChainAdmin:
    """Reads, saves and removes chains; a chain is checked completely before it is saved."""

    def __init__(self, chains: ChainStore, providers: ProviderStore, connectors: ConnectorDirectory) -> None:
        self.chains = chains
        self.providers = providers
        self.connectors = connectors

    def view(self, scope: str, scope_id: str) -> ChainView:
        """The chain saved at this scope (``configured``) and the chain that applies there."""
        self._check_scope(scope, scope_id)
        saved = self.chains.get(scope, scope_id)
        if saved is not None:
            return ChainView.of(scope, scope_id, configured=True, chain=saved)
        if scope == "connector":
            team = self.connectors.owner_team(scope_id)
            effective = self.chains.effective(scope_id, team)
        elif scope == "team":
            effective = self.chains.effective_default()
        else:
            effective = default_chain()
        return ChainView.of(scope, scope_id, configured=False, chain=effective)

    def save(self, scope: str, scope_id: str, body: ChainBody, *, actor: str, now: datetime) -> ChainView:
        """Validate and save a chain; an invalid chain is refused with every reason."""
        self._check_scope(scope, scope_id)
        if scope == "connector":
            self.connectors.owner_team(scope_id)
        levels = tuple(level.to_level() for level in body.levels)
        problems = chain_problems(levels, allowed_local=settings().outbound_allowed_local)
        for name in sorted(oncall_providers(levels)):
            provider = self.providers.get(name)
            if provider is None:
                problems.append(
                    f"on-call provider {name!r} is not configured; save it with PUT /alerts/oncall/providers/{name}"
                )
            elif not provider.enabled:
                problems.append(f"on-call provider {name!r} is disabled; enable it or page another provider")
        if problems:
            raise ValidationFailed(
                "the chain is invalid: " + "; ".join(problems),
                details=[{"field": "body.levels", "problem": problem} for problem in problems],
            )
        chain = Chain(levels, scope, scope_id, "stored", to_iso(now), actor)
        self.chains.put(chain)
        logger.info("chain saved", chain_scope=scope, chain_id=scope_id, actor=actor)
        return ChainView.of(scope, scope_id, configured=True, chain=chain)

    def remove(self, scope: str, scope_id: str, *, actor: str) -> None:
        """Remove the chain saved at this scope (the next broader one applies again)."""
        self._check_scope(scope, scope_id)
        if not self.chains.delete(scope, scope_id):
            raise NotFound(f"no chain is saved for {scope} {scope_id!r}; nothing to remove")
        logger.info("chain removed", chain_scope=scope, chain_id=scope_id, actor=actor)

    @staticmethod
    def _check_scope(scope: str, scope_id: str) -> None:
        problem = scope_problem(scope, scope_id)
        if problem:
            raise ValidationFailed(problem)


class MaintenanceAdmin:
    """Creates, lists and cancels maintenance windows."""

    def __init__(self, windows: MaintenanceStore, connectors: ConnectorDirectory) -> None:
        self.windows = windows
        self.connectors = connectors

    def create(self, body: MaintenanceWindowBody, *, actor: str, now: datetime) -> MaintenanceWindowView:
        """Open a window; from its start the connector's (or team's) notifications are held until it ends."""
        starts_at = body.starts_at or now
        problems = window_problems(starts_at, body.ends_at, now)
        if problems:
            raise ValidationFailed(
                "the maintenance window is invalid: " + "; ".join(problems),
                details=[{"field": "body", "problem": problem} for problem in problems],
            )
        if body.scope == "connector":
            try:
                self.connectors.owner_team(body.scope_id)
            except NotFound as error:
                raise ValidationFailed(f"scope_id: {error.message}") from error
        window = MaintenanceWindow(
            window_id=new_id("mnt"),
            scope=body.scope,
            scope_id=body.scope_id,
            starts_at=to_iso(starts_at),
            ends_at=to_iso(body.ends_at),
            reason=body.reason.strip(),
            created_at=to_iso(now),
            created_by=actor,
        )
        self.windows.create(window)
        logger.info("maintenance window created", window_id=window.window_id, scope=window.scope, actor=actor)
        return _window_view(window, now)

    def list_windows(self, query: MaintenanceQuery, *, now: datetime) -> MaintenancePage:
        """Windows not yet ended (and, on request, those ended in the last 30 days), filtered."""
        windows = self.windows.not_ended(now)
        if query.include_ended:
            windows += self.windows.ended_since(now - ENDED_WINDOWS_SHOWN, now)
        if query.connector_id:
            windows = [w for w in windows if w.scope == "connector" and w.scope_id == query.connector_id]
        if query.team:
            windows = [w for w in windows if w.scope == "team" and w.scope_id == query.team]
        return MaintenancePage(items=[_window_view(window, now) for window in windows])

    def cancel(self, window_id: str, *, actor: str, now: datetime) -> MaintenanceWindowView:
        """End a window now; it stays listed (cancelled) as evidence, and its held notifications are released."""
        window = self.windows.find(window_id)
        if window is None:
            raise NotFound(f"maintenance window {window_id!r} does not exist")
        if window.cancelled_at or parse_iso(window.ends_at) <= now:
            raise Conflict(f"maintenance window {window_id} already ended at {window.ends_at}")
        cancelled = self.windows.cancel(window, now=now, actor=actor)
        logger.info("maintenance window cancelled", window_id=window_id, actor=actor)
        return _window_view(cancelled, now)


def _window_view(window: MaintenanceWindow, now: datetime) -> MaintenanceWindowView:
    if window.cancelled_at:
        status = "cancelled"
    elif parse_iso(window.ends_at) <= now:
        status = "ended"
    elif parse_iso(window.starts_at) > now:
        status = "scheduled"
    else:
        status = "active"
    return MaintenanceWindowView(**window._asdict(), status=status)


class EtaRecorder:
    """Records the recovery ETA of an open incident on its connector's state row (transition ``eta_recorded``)."""

    def __init__(self, notifications: NotificationStore, ledger: StateLedger, *, tries: int = 3) -> None:
        self.notifications = notifications
        self.ledger = ledger
        self.tries = tries
        self.transition_ids: Callable[[], str] = lambda: new_id("trn")

    def record(self, incident_id: str, body: EtaBody, *, actor: str, now: datetime) -> EtaRecorded:
        """Record the ETA; refuses an ETA in the past or more than 7 days ahead, an unknown or closed incident."""
        eta = body.eta
        if eta <= now:
            raise ValidationFailed(f"eta must be in the future (now is {to_iso(now)}); send when recovery is expected")
        if eta - now > MAX_ETA_AHEAD:
            raise ValidationFailed(f"eta must be within {MAX_ETA_AHEAD.days} days; escalate instead of waiting longer")
        first = self.notifications.first_of_incident(incident_id)
        if first is None:
            raise NotFound(f"incident {incident_id!r} has no notifications; check the id in GET /alerts/notifications")
        connector_id = str(first["connector_id"])
        for _ in range(self.tries):
            state = self.ledger.read(connector_id)
            if state is None or state.get("incident_id") != incident_id or state.get("incident_status") != "open":
                raise Conflict(f"incident {incident_id} is closed; an ETA is recorded only while it is open")
            new_state, transition = eta_change(
                state, eta=eta, actor=actor, now=now, transition_id=self.transition_ids(), note=body.note
            )
            try:
                row, _ = self.ledger.commit(
                    connector_id, new_state, expected_version=int(state["version"]), transition=transition
                )
            except StaleState:
                continue
            logger.info("recovery eta recorded", connector_id=connector_id, incident_id=incident_id, eta=to_iso(eta))
            return EtaRecorded(
                incident_id=incident_id,
                connector_id=connector_id,
                level=str(row.get("level")),
                recovery_eta=str(row["recovery_eta"]),
                eta_recorded_at=str(row["eta_recorded_at"]),
                eta_recorded_by=actor,
                transition_id=str(transition["transition_id"]),
            )
        raise Conflict(f"incident {incident_id} kept changing while the ETA was recorded; send it again")
