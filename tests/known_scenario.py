"""A known scenario of SLA records, shaped as docs/design.md fixes them and sealed with ``evidence.chain``.

The evidence and dashboard tests (in-process moto) and the browser test (the local stack) seed the same records,
so each can check that its output shows exactly them. Times are relative to ``base`` so the dashboard's recent
windows include them.

Connectors: ``orders-postgres`` (critical, L3, open incident with a recovery ETA), ``billing-api`` (warning, L1,
open incident without ETA), ``crm-sync`` (healthy; its incident opened and recovered), ``inventory-kafka``
(registered, never evaluated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connector_sla.evidence.chain import ChainHead
from connector_sla.ids import stable_id
from connector_sla.timeutil import day_of, to_iso

Put = Callable[[str, dict[str, Any]], None]


def incident_id(connector_id: str) -> str:
    return stable_id("inc", connector_id)


@dataclass
class KnownScenario:
    base: datetime
    written: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    orders = "orders-postgres"
    billing = "billing-api"
    crm = "crm-sync"
    inventory = "inventory-kafka"

    @property
    def orders_incident(self) -> str:
        return incident_id(self.orders)

    @property
    def billing_incident(self) -> str:
        return incident_id(self.billing)

    @property
    def crm_incident(self) -> str:
        return incident_id(self.crm)

    def at(self, minutes: float) -> datetime:
        return self.base + timedelta(minutes=minutes)

    def iso(self, minutes: float) -> str:
        return to_iso(self.at(minutes))

    # ------------------------------------------------------------------------------------------------ writing

    def seed(self, put: Put) -> KnownScenario:
        """Write every record through ``put(table_logical_id, item)``; remembers them in ``written``."""

        def keep(table: str, item: dict[str, Any]) -> None:
            put(table, item)
            self.written.setdefault(table, []).append(item)

        self._connectors(keep)
        self._notifications_deliveries_callbacks(keep)
        self._job_runs(keep)
        return self

    def _connectors(self, put: Put) -> None:
        signals_critical = {
            "freshness_lag": {"status": "critical", "value": 1860, "warning": 300, "critical": 900},
            "pending_replay": {"status": "warning", "value": 140, "warning": 100, "critical": 500},
            "dead_letter_growth": {"status": "ok", "value": 0, "warning": 10, "critical": 50},
        }
        signals_warning = {
            "freshness_lag": {"status": "warning", "value": 420, "warning": 300, "critical": 900},
            "pending_replay": {"status": "ok", "value": 3, "warning": 100, "critical": 500},
            "dead_letter_growth": {"status": "ok", "value": 0, "warning": 10, "critical": 50},
        }
        signals_ok = {
            "freshness_lag": {"status": "ok", "value": 12, "warning": 300, "critical": 900},
            "pending_replay": {"status": "ok", "value": 0, "warning": 100, "critical": 500},
            "dead_letter_growth": {"status": "ok", "value": 0, "warning": 10, "critical": 50},
        }
        orders = [
            ("opened", 0, "none", "L1", "ok", "warning", {}),
            ("severity_changed", 5, "L1", "L1", "warning", "critical", {}),
            ("escalated", 10, "L1", "L2", "critical", "critical", {}),
            ("escalated", 20, "L2", "L3", "critical", "critical", {}),
            ("eta_recorded", 25, "L3", "L3", "critical", "critical", {"eta": self.iso(180), "actor": "duty.manager"}),
        ]
        billing = [("opened", 60, "none", "L1", "ok", "warning", {})]
        crm = [
            ("opened", -90, "none", "L1", "ok", "warning", {}),
            ("recovered", -30, "L1", "none", "warning", "ok", {"duration_seconds": 3600}),
        ]
        heads = {
            self.orders: self._transitions(put, self.orders, self.orders_incident, orders, signals_critical),
            self.billing: self._transitions(put, self.billing, self.billing_incident, billing, signals_warning),
            self.crm: self._transitions(put, self.crm, self.crm_incident, crm, signals_ok),
        }
        states = {
            self.orders: {
                "severity": "critical",
                "level": "L3",
                "incident_id": self.orders_incident,
                "incident_status": "open",
                "incident_opened_at": self.iso(0),
                "signals": signals_critical,
                "unmet_recovery": ["freshness_lag", "pending_replay"],
                "active_source": "orders-replica",
                "recovery_eta": self.iso(180),
                "eta_recorded_at": self.iso(25),
                "eta_recorded_by": "duty.manager",
            },
            self.billing: {
                "severity": "warning",
                "level": "L1",
                "incident_id": self.billing_incident,
                "incident_status": "open",
                "incident_opened_at": self.iso(60),
                "signals": signals_warning,
                "unmet_recovery": ["freshness_lag"],
                "active_source": "billing-primary",
            },
            self.crm: {
                "severity": "ok",
                "level": "none",
                "incident_id": self.crm_incident,
                "incident_status": "closed",
                "incident_opened_at": self.iso(-90),
                "signals": signals_ok,
                "unmet_recovery": [],
                "active_source": "crm-primary",
            },
        }
        names = {
            self.orders: ("Orders (Postgres CDC)", "payments"),
            self.billing: ("Billing API", "finance-data"),
            self.crm: ("CRM sync", "sales-ops"),
            self.inventory: ("Inventory (Kafka)", "supply-chain"),
        }
        for connector_id, (name, team) in names.items():
            put(
                "ConnectorsTable",
                {
                    "pk": connector_id,
                    "sk": "CONFIG",
                    "name": name,
                    "owner_team": team,
                    "sources": [{"source_id": f"{connector_id}-primary", "name": "primary"}],
                    "created_at": self.iso(-600),
                    "updated_at": self.iso(-600),
                    "config_version": 1,
                },
            )
        for connector_id, state in states.items():
            head, last = heads[connector_id]
            put(
                "ConnectorsTable",
                {
                    "pk": connector_id,
                    "sk": "STATE",
                    "connector_id": connector_id,
                    "version": head.seq,
                    "connector_name": names[connector_id][0],
                    "owner_team": names[connector_id][1],
                    "critical_streak": 0,
                    "last_tick": self.iso(110),
                    "last_transition": {key: last[key] for key in ("transition_id", "kind", "at", "seq")},
                    "chain_seq": head.seq,
                    "chain_hash": head.hash,
                    **state,
                },
            )

    def _transitions(
        self, put: Put, connector_id: str, incident: str, steps: list[tuple], signals: dict
    ) -> tuple[ChainHead, dict[str, Any]]:
        head = ChainHead()
        sealed: dict[str, Any] = {}
        for kind, minutes, from_level, to_level, from_severity, to_severity, extra in steps:
            record = {
                "connector_id": connector_id,
                "seq": head.seq + 1,
                "transition_id": stable_id("trn", connector_id, str(head.seq + 1)),
                "kind": kind,
                "at": self.iso(minutes),
                "day": day_of(self.at(minutes)),
                "incident_id": incident,
                "from_level": from_level,
                "to_level": to_level,
                "from_severity": from_severity,
                "to_severity": to_severity,
                "signals": signals,
                "reason": f"{kind} at tick {self.iso(minutes)}",
                "tick": self.iso(minutes),
                **extra,
            }
            sealed = head.next(record, f"transitions:{connector_id}")
            head = ChainHead(sealed["chain_seq"], sealed["record_hash"])
            put("TransitionsTable", sealed)
        return head, sealed

    def _notifications_deliveries_callbacks(self, put: Put) -> None:
        plan = [
            # Each entry: who, what, where, its ACK state, when (minutes after base) and its delivery attempts.
            (self.orders, self.orders_incident, "L1", "alert", "oncall", "generic", "acknowledged", 1, [("sent", 202)]),
            (
                self.orders,
                self.orders_incident,
                "L2",
                "alert",
                "email",
                "risk-owner@example.com",
                "unacked",
                11,
                [("sent", 200)],
            ),
            (
                self.orders,
                self.orders_incident,
                "L3",
                "alert",
                "bridge",
                "https://bridge.example.com/open",
                "unacked",
                21,
                [("failed", 503), ("sent", 200)],
            ),
            (self.billing, self.billing_incident, "L1", "alert", "oncall", "generic", "unacked", 61, [("sent", 202)]),
            (self.crm, self.crm_incident, "L1", "alert", "oncall", "generic", "resolved", -89, [("sent", 202)]),
            (self.crm, self.crm_incident, "L1", "resolved", "oncall", "generic", "closed", -29, [("sent", 202)]),
        ]
        self.notification_ids: dict[tuple[str, str, str], str] = {}
        for connector, incident, level, kind, channel, target, ack_state, minutes, attempts in plan:
            notification_id = stable_id("ntf", incident, level, kind, channel, target)
            self.notification_ids[(connector, level, kind)] = notification_id
            delivery_head = ChainHead()
            for attempt, (status, code) in enumerate(attempts, start=1):
                at = minutes + attempt - 1
                record = {
                    "notification_id": notification_id,
                    "attempt": attempt,
                    "delivery_id": f"dlv_{notification_id[4:]}_{attempt}",
                    "incident_id": incident,
                    "connector_id": connector,
                    "level": level,
                    "channel": channel,
                    "target": target,
                    "status": status,
                    "response_code": code,
                    "latency_ms": 40 + attempt,
                    "error": "bridge answered 503" if status == "failed" else None,
                    "at": self.iso(at),
                    "day": day_of(self.at(at)),
                }
                sealed = delivery_head.next(record, f"deliveries:{notification_id}")
                delivery_head = ChainHead(sealed["chain_seq"], sealed["record_hash"])
                put("DeliveriesTable", sealed)
            callback_head = ChainHead()
            if (connector, level, kind) == (self.orders, "L1", "alert"):
                callback_head = self._callback(
                    put, callback_head, notification_id, incident, connector, "acknowledged", 3, "callback"
                )
            if (connector, level, kind) == (self.crm, "L1", "alert"):
                callback_head = self._callback(
                    put, callback_head, notification_id, incident, connector, "resolved", -35, "reconcile"
                )
            item = {
                "notification_id": notification_id,
                "incident_id": incident,
                "connector_id": connector,
                "level": level,
                "kind": kind,
                "transition_id": stable_id("trn", connector, "1"),
                "channel": channel,
                "target": target,
                "summary": f"{connector} {level} {kind}",
                "ack_state": ack_state,
                "delivery_status": "sent",
                "attempt_count": len(attempts),
                "created_at": self.iso(minutes),
                "updated_at": self.iso(minutes + 2),
                "day": day_of(self.at(minutes)),
                "version": 1,
                "delivery_chain_seq": delivery_head.seq,
                "delivery_chain_hash": delivery_head.hash,
                "callback_chain_seq": callback_head.seq,
                "callback_chain_hash": callback_head.hash,
            }
            if ack_state == "unacked" and kind == "alert":
                item["unacked_shard"] = "0"
            put("NotificationsTable", item)
        unmatched = {
            "callback_id": stable_id("cbk", "generic", "evt-unknown"),
            "provider": "generic",
            "source": "callback",
            "received_at": self.iso(70),
            "day": day_of(self.at(70)),
            "status": "acknowledged",
            "raw_status": "acknowledged",
            "provider_event_id": "evt-unknown",
            "matched": False,
            "unmatched_reason": "no notification matches the correlation keys",
            "signature": "verified",
            "ack_applied": False,
        }
        put("CallbacksTable", ChainHead().next(unmatched, "callbacks:unmatched:generic"))

    def _callback(
        self,
        put: Put,
        head: ChainHead,
        notification_id: str,
        incident: str,
        connector: str,
        status: str,
        minutes: float,
        source: str,
    ) -> ChainHead:
        record = {
            "callback_id": stable_id("cbk", "generic", notification_id, status),
            "provider": "generic",
            "source": source,
            "received_at": self.iso(minutes),
            "day": day_of(self.at(minutes)),
            "status": status,
            "raw_status": status,
            "provider_event_id": f"evt-{status}-{connector}",
            "notification_id": notification_id,
            "delivery_id": f"dlv_{notification_id[4:]}_1",
            "incident_id": incident,
            "connector_id": connector,
            "matched": True,
            "signature": "verified" if source == "callback" else "not_required",
            "ack_applied": True,
            "ack_state_before": "unacked",
            "ack_state_after": status,
        }
        if source == "reconcile":
            record.update(job_id=self.reconcile_job_id, run_id=self.reconcile_run_id)
        sealed = head.next(record, f"callbacks:{notification_id}")
        put("CallbacksTable", sealed)
        return ChainHead(sealed["chain_seq"], sealed["record_hash"])

    @property
    def reconcile_job_id(self) -> str:
        return stable_id("job", "reconcile-generic")

    @property
    def reconcile_run_id(self) -> str:
        return stable_id("run", "reconcile-generic", "2")

    @property
    def dry_run_id(self) -> str:
        return stable_id("run", "reconcile-generic", "1")

    def _job_runs(self, put: Put) -> None:
        crm_alert = self.notification_ids[(self.crm, "L1", "alert")]
        runs = [
            (self.dry_run_id, -40, True, {"fetched": 3, "matched": 2, "would_update": 1, "unmatched": 1, "errors": 0}),
            (
                self.reconcile_run_id,
                -36,
                False,
                {"fetched": 3, "matched": 2, "updated": 1, "unmatched": 1, "errors": 0},
            ),
        ]
        for run_id, minutes, dry_run, counts in runs:
            started = self.iso(minutes)
            item = {
                "pk": self.reconcile_job_id,
                "sk": f"RUN#{started}#{run_id}",
                "kind": "job_run",
                "created_at": started,
                "run_id": run_id,
                "job_id": self.reconcile_job_id,
                "job_type": "alert_oncall_reconcile",
                "status": "succeeded",
                "dry_run": dry_run,
                "started_at": started,
                "finished_at": self.iso(minutes + 1),
                "counts": counts,
            }
            if dry_run:
                item["changes"] = [
                    {
                        "notification_id": crm_alert,
                        "incident_id": self.crm_incident,
                        "ack_state_before": "unacked",
                        "ack_state_after": "resolved",
                    }
                ]
            put("JobsTable", item)


def dynamodb_put(client: Any, table_name: Callable[[str], str]) -> Put:
    """A ``put`` for :meth:`KnownScenario.seed` writing items as the stores write them (``None`` values left out)."""
    from connector_sla.storage.dynamo import to_item

    def put(logical_id: str, item: dict[str, Any]) -> None:
        client.put_item(TableName=table_name(logical_id), Item=to_item(item))

    return put
