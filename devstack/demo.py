"""The runbook, played against the local stack: breach, escalation, callback ACK, reconcile, recovery, evidence.

Two connectors stop reporting. Their SLA goes to warning (L1: the on-call provider is paged), then to critical
(L2: the owners get emails), and ``orders-postgres`` reaches the escalated stage (L3: the duty manager's bridge,
an ETA). The on-call engineer follows the diagnostic checklist, patches and replays the dead-letter rows, and the
responder acknowledges in the provider, which calls back with a signed ACK. The provider loses the callback of
``inventory-kafka``; the reconcile job finds it (dry run first). The connectors report again, the SLA recovers,
everyone notified hears it is resolved, and an evidence bundle is exported, downloaded and verified offline.

Every step goes through the public API of the local stack over HTTP, exactly as an SRE would call it; only the
provider's side (what a responder does in PagerDuty) and reading the replay queue use the stack's objects.
The demo uses short SLA thresholds (seconds, not minutes) so the whole story takes about two minutes.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector_sla.evidence.verify import verify_bundle
from connector_sla.timeutil import to_iso
from devstack.gateway import QUIET_HEADER
from devstack.stack import LocalStack

ORDERS = "orders-postgres"
INVENTORY = "inventory-kafka"
TEAM = "payments-data"
# Short thresholds so the story fits in minutes: warning after 12 s without events, critical after 24 s.
DEMO_POLICY = {
    "freshness_warning_seconds": 12,
    "freshness_critical_seconds": 24,
    "pending_replay_warning": 10,
    "pending_replay_critical": 50,
    "pending_replay_recovery_max": 2,
    "dead_letter_growth_warning": 5,
    "dead_letter_growth_critical": 50,
    "poll_window_seconds": 4,
    "recovery_clean_windows": 2,
    "critical_repeat_polls": 2,
    "escalate_after_l2_polls": 3,
}
PAYLOAD_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
    "additionalProperties": False,
}
WAIT_SECONDS = 90.0


class DemoFailed(Exception):
    """A step did not see what the runbook says it should."""


@dataclass
class DemoResult:
    """What the demo saw, step by step (the end-to-end test asserts on it)."""

    incidents: dict[str, str] = field(default_factory=dict)
    levels_seen: dict[str, list[str]] = field(default_factory=dict)
    emails: list[str] = field(default_factory=list)
    unacked_before_ack: int = 0
    unacked_after_ack: int = 0
    acknowledged: list[str] = field(default_factory=list)
    still_unacked: list[str] = field(default_factory=list)
    callback_history: list[dict[str, Any]] = field(default_factory=list)
    failures_replayed: int = 0
    replayed_messages: list[dict[str, Any]] = field(default_factory=list)
    reconcile_dry_run: dict[str, Any] = field(default_factory=dict)
    reconcile_real_run: dict[str, Any] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    resolved_notices: int = 0
    sla_events: list[str] = field(default_factory=list)
    export: dict[str, Any] = field(default_factory=dict)
    bundle_path: Path | None = None
    bundle_verified: bool = False


class Demo:
    """Plays the runbook against a started :class:`LocalStack`."""

    def __init__(self, stack: LocalStack, *, say: Callable[[str], None] = print, out_dir: Path | None = None) -> None:
        self.stack = stack
        self.say = say
        self.out_dir = out_dir or stack.options.state_dir / "evidence"
        self.result = DemoResult()
        self.started = datetime.now(UTC) - timedelta(minutes=1)
        self._heartbeat_stop = threading.Event()
        self._stopped = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._step = 0

    # -------------------------------------------------------------------------------------------- the story

    def run(self) -> DemoResult:
        """Play every step; once the connectors recover they keep reporting until :meth:`stop`."""
        self.register_connectors()
        self.report_failed_rows()
        self.breach()
        self.escalate()
        self.diagnose()
        self.repair_and_replay()
        self.acknowledge()
        self.reconcile()
        self.recover()
        self.export_evidence()
        self.step("done", f"open the dashboard: {self.stack.api_url}/ops/dashboard")
        return self.result

    def stop(self) -> None:
        """End the demo: a step still waiting gives up, and the connectors stop reporting (the heartbeat ends)."""
        self._stopped.set()
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)

    def register_connectors(self) -> None:
        self.step("setup", f"register {ORDERS} and {INVENTORY} (two sources each, short demo thresholds)")
        replay_queue = self.stack.template.attribute("ReplayQueue", "Arn")
        for connector_id, name in ((ORDERS, "Orders (Postgres CDC)"), (INVENTORY, "Inventory (Kafka)")):
            body: dict[str, Any] = {
                "name": name,
                "owner_team": TEAM,
                "sources": [{"source_id": "primary", "name": "primary"}, {"source_id": "replica", "name": "replica"}],
                "policy": {**DEMO_POLICY, "escalate_after_l2_polls": 3 if connector_id == ORDERS else 1000},
            }
            if connector_id == ORDERS:
                body["replay_target"] = {"kind": "sqs", "arn": replay_queue}
                body["payload_schema"] = PAYLOAD_SCHEMA
            self.api("PUT", f"/events/connectors/{connector_id}", body, expect=(200, 201))
            self.checkpoint(connector_id, lag_seconds=4)
        self.say("          both report events from 4 s ago; then they go quiet")

    def report_failed_rows(self) -> None:
        self.step("setup", f"{ORDERS} sends two rows it could not parse or map to the dead-letter store")
        rows = [
            ("parse", "amount is not a number: '12,50'", {"order_id": "A-1", "amount": "12,50"}),
            ("mapping", "unknown field 'coupon'", {"order_id": "A-2", "amount": 40, "coupon": "XMAS"}),
        ]
        for kind, message, payload in rows:
            body = {
                "connector_id": ORDERS,
                "source_id": "primary",
                "error_kind": kind,
                "error_message": message,
                "retry_count": 0,
                "payload": payload,
            }
            self.api("POST", "/events/connectors/failures", body, expect=(201,))

    def breach(self) -> None:
        self.step("trigger", "freshness lag passes the warning threshold: event_connector_sla (warning), L1 paged")
        for connector_id in (ORDERS, INVENTORY):
            state = self.wait_for(
                f"{connector_id} at warning or worse",
                lambda cid=connector_id: self._state_if(cid, lambda s: s["severity"] in ("warning", "critical")),
            )
            self.result.incidents[connector_id] = state["incident_id"]
            self.say(f"          {connector_id}: {state['severity']}, incident {state['incident_id']}")
        l1 = self.wait_for("the L1 page to reach the on-call provider", lambda: self._notifications(ORDERS, "L1"))
        for item in l1:
            self.say(f"          L1 {item['channel']} -> {item['target']}: {item['delivery_status']}")

    def escalate(self) -> None:
        self.step("L2", "critical for two polls: event_connector_sla_escalation, owners get emails")
        l2 = self.wait_for("L2 emails", lambda: self._notifications(ORDERS, "L2", channel="email", sent=True))
        self.result.emails = sorted(item["target"] for item in l2)
        self.say(f"          emails to {', '.join(self.result.emails)}")
        self.step("L3", f"{ORDERS} stays critical: the duty manager is called and a bridge opened")
        l3 = self.wait_for("the L3 notifications", lambda: self._notifications(ORDERS, "L3", sent=True))
        for item in l3:
            self.say(f"          L3 {item['channel']} -> {item['target']}: {item['delivery_status']}")
        eta = to_iso(datetime.now(UTC) + timedelta(minutes=30))
        incident = self.result.incidents[ORDERS]
        body = {"eta": eta, "note": "failing over to the replica"}
        self.api("POST", f"/alerts/incidents/{incident}/eta", body, expect=(200, 201))
        self.say(f"          the duty manager records a recovery ETA of {eta}")
        for connector_id in (ORDERS, INVENTORY):
            _, page = self.api("GET", f"/alerts/notifications?{_query(connector_id=connector_id, kind='alert')}")
            self.result.levels_seen[connector_id] = sorted({item["level"] for item in page["items"]})

    def diagnose(self) -> None:
        self.step("check 1", "active source in /events/connectors/source-health")
        _, health = self.api("GET", "/events/connectors/source-health")
        for item in health["items"]:
            self.say(f"          {item['connector_id']}: active source {item.get('active_source')}")
        self.step("check 2", "checkpoint freshness in /events/connectors/overview")
        _, overview = self.api("GET", "/events/connectors/overview")
        for item in overview["items"]:
            self.say(
                f"          {item['connector_id']}: lag {item['freshness_lag_seconds']} s, {item['severity']} "
                f"{item['level']}, pending replay {item['pending_replay']}, dead letters {item['dead_letter_total']}"
            )
        self.step("check 3", "failure payload and retry count in /events/connectors/failures")
        _, failures = self.api("GET", f"/events/connectors/failures?{_query(connector_id=ORDERS)}")
        for item in failures["items"]:
            self.say(
                f"          {item['failure_id']} {item['error_kind']}: {json.dumps(item.get('payload'))} "
                f"(retries {item.get('retry_count')})"
            )

    def repair_and_replay(self) -> None:
        self.step("check 4", "patch the rows in the Replay Workbench, then replay them (dry run first)")
        _, failures = self.api("GET", f"/events/connectors/failures?{_query(connector_id=ORDERS)}")
        patches = {
            "parse": [{"op": "replace", "path": "/amount", "value": 12.5}],
            "mapping": [{"op": "remove", "path": "/coupon"}],
        }
        ids = []
        for item in failures["items"]:
            patch = patches[item["error_kind"]]
            _, preview = self.api(
                "POST", f"/events/connectors/failures/{item['failure_id']}/patch", {"patch": patch, "preview": True}
            )
            self.say(f"          preview {item['failure_id']}: {json.dumps(preview.get('payload'))}")
            self.api("POST", f"/events/connectors/failures/{item['failure_id']}/patch", {"patch": patch})
            ids.append(item["failure_id"])
        _, plan = self.api(
            "POST", "/events/connectors/replays", {"connector_id": ORDERS, "failure_ids": ids, "dry_run": True}
        )
        self.say(f"          dry run: would replay {len(plan['would_replay'])}, {json.dumps(plan['counts'])}")
        _, job = self.api(
            "POST", "/events/connectors/replays", {"connector_id": ORDERS, "failure_ids": ids}, expect=(202,)
        )
        done = self.wait_for(
            "the replay job to finish",
            lambda: self._replay_if_done(job["replay_id"]),
        )
        self.result.failures_replayed = int(done["progress"]["replayed"])
        self.say(f"          replay {job['replay_id']}: {done['status']}, {json.dumps(done['progress'])}")
        self.result.replayed_messages = self._drain_replay_queue()
        self.say(f"          the replay queue received {len(self.result.replayed_messages)} row(s)")

    def acknowledge(self) -> None:
        self.step("callback", "the responder acknowledges: the provider sends a signed ACK callback")
        _, before = self.api("GET", f"/alerts/notifications?{_query(only_unacked='true', connector_id=ORDERS)}")
        self.result.unacked_before_ack = len(before["items"])
        incident = self.result.incidents[ORDERS]
        provider = self.stack.provider
        assert provider is not None
        pages = [item for item in before["items"] if item["channel"] == "oncall"]
        for item in pages:
            status = provider.acknowledge(item["notification_id"], by="dana@payments.example")
            self.result.acknowledged.append(item["notification_id"])
            self.say(f"          callback for {item['notification_id']} -> HTTP {status}")
        self.step("closure 5", "GET /alerts/notifications?only_unacked=true no longer lists the linked row")
        _, after = self.api("GET", f"/alerts/notifications?{_query(only_unacked='true', connector_id=ORDERS)}")
        self.result.unacked_after_ack = len(after["items"])
        self.result.still_unacked = [item["notification_id"] for item in after["items"]]
        gone = [ntf for ntf in self.result.acknowledged if ntf not in self.result.still_unacked]
        self.say(
            f"          unacked for {ORDERS}: {self.result.unacked_before_ack} before, {len(after['items'])} after "
            f"({', '.join(gone) or 'none'} acknowledged; the emails wait for their own ACK)"
        )
        self.step("closure 6", f"GET /alerts/oncall/events?incident_id={incident} shows the callback history")
        _, history = self.api("GET", f"/alerts/oncall/events?{_query(incident_id=incident)}")
        self.result.callback_history = history["items"]
        for item in history["items"]:
            self.say(f"          {item.get('status')} from {item.get('provider')} signature {item.get('signature')}")

    def reconcile(self) -> None:
        provider = self.stack.provider
        assert provider is not None
        _, pages = self.api("GET", f"/alerts/notifications?{_query(connector_id=INVENTORY, channel='oncall')}")
        lost = [item["notification_id"] for item in pages["items"] if item["ack_state"] == "unacked"]
        for notification_id in lost:
            provider.acknowledge(notification_id, by="lee@inventory.example", send_callback=False)
        self.step("reconcile", f"{INVENTORY}: acknowledged in the provider, but the callback was lost")
        endpoint = f"http://127.0.0.1:{self.stack.options.provider_port}/incidents"
        payload = {"provider": "generic", "endpoint": endpoint, "mapping_template": {}, "limit": 100, "dry_run": True}
        body = {"job_type": "alert_oncall_reconcile", "schedule": "rate(1 minute)", "payload": payload}
        _, job = self.api("POST", "/ops/jobs", body, expect=(201,))
        self.say(f"          registered {job['job_id']} (alert_oncall_reconcile, dry run) against the provider")
        dry = self.wait_for("a dry run", lambda: self._run_if(job["job_id"], dry_run=True))
        self.result.reconcile_dry_run = dry
        self.say(f"          dry run {dry['run_id']}: {json.dumps(dry['counts'])}")
        self.api("PATCH", f"/ops/jobs/{job['job_id']}", {"payload": {"dry_run": False}})
        self.say(f"          the dry run shows the lost ACK: PATCH /ops/jobs/{job['job_id']} with dry_run=false")
        real = self.wait_for("a real run", lambda: self._run_if(job["job_id"], dry_run=False))
        self.result.reconcile_real_run = real
        self.say(f"          run {real['run_id']}: {json.dumps(real['counts'])}; see /ops/jobs/{job['job_id']}/runs")
        self.api("POST", f"/ops/jobs/{job['job_id']}/pause")

    def recover(self) -> None:
        self.step("recovery", "the connectors report again; two clean poll windows close the incidents")
        self._start_heartbeat()
        self.say("          (from here on both connectors report every 2 s, also after the demo ends)")
        for connector_id in (ORDERS, INVENTORY):
            self.wait_for(
                f"{connector_id} to recover",
                lambda cid=connector_id: self._state_if(
                    cid, lambda s: s["severity"] == "ok" and s["incident_status"] != "open"
                ),
            )
            self.result.recovered.append(connector_id)
            self.say(f"          {connector_id}: ok, incident closed (event_connector_sla_recovery)")
        notices = self.wait_for(
            "resolved notices", lambda: self._notifications(ORDERS, None, kind="resolved", sent=True)
        )
        self.result.resolved_notices = len(notices)
        self.say(f"          {len(notices)} resolved notice(s) sent to everyone {ORDERS} paged")
        self.result.sla_events = self.wait_for("the recovery events on the SLA bus", self._sla_events)
        self.say(f"          SLA events on the bus for {ORDERS}: {', '.join(self.result.sla_events)}")

    def export_evidence(self) -> None:
        self.step("evidence", "export a compliance bundle, download it and verify it offline")
        body = {"start": to_iso(self.started), "end": to_iso(datetime.now(UTC) + timedelta(minutes=1))}
        _, started = self.api("POST", "/compliance/evidence/export", body, expect=(202,))
        export = self.wait_for("the export", lambda: self._export_if_done(started["export_id"]))
        self.result.export = export
        for item in export.get("files", []):
            self.say(f"          {item['name']}: {item['records']} record(s)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        target = self.out_dir / f"{export['export_id']}.zip"
        with urllib.request.urlopen(export["download"]["url"], timeout=30) as response:  # noqa: S310 - local moto
            target.write_bytes(response.read())
        verification = verify_bundle(target)
        self.result.bundle_path = target
        self.result.bundle_verified = verification.verified
        verdict = "verified" if verification.verified else f"NOT verified: {verification.problems[0]}"
        self.say(f"          {target} {verdict}")
        self.say(f"          auditors run: make verify-evidence BUNDLE={target}")

    # -------------------------------------------------------------------------------------------- helpers

    def step(self, label: str, text: str) -> None:
        self._step += 1
        self.say(f"demo {self._step:>2}  [{label}] {text}")

    def api(
        self, method: str, path: str, body: Any = None, *, expect: tuple[int, ...] = (200,), quiet: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """One call to the stack's API; ``quiet`` keeps a polling read out of the stack's log."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **({QUIET_HEADER: "1"} if quiet else {})}
        request = urllib.request.Request(  # noqa: S310 - the local stack on 127.0.0.1
            f"{self.stack.api_url}{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        answer = json.loads(raw) if raw else {}
        if status not in expect:
            raise DemoFailed(f"{method} {path} answered {status}: {json.dumps(answer)[:600]}")
        return status, answer

    def checkpoint(self, connector_id: str, *, lag_seconds: float, quiet: bool = False) -> None:
        at = to_iso(datetime.now(UTC) - timedelta(seconds=lag_seconds))
        sources = [{"source_id": source, "last_event_at": at, "status": "up"} for source in ("primary", "replica")]
        path = f"/events/connectors/{connector_id}/checkpoints"
        self.api("POST", path, {"sources": sources}, expect=(200, 202), quiet=quiet)

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            if self._stopped.wait(0.5):
                raise DemoFailed(f"the stack is stopping; it was waiting for {what}")
        raise DemoFailed(f"waited {timeout:.0f} s for {what}; see the function logs in {self.stack.options.state_dir}")

    def _state_if(self, connector_id: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        _, page = self.api("GET", f"/events/connectors/sla/states?{_query(connector_id=connector_id)}", quiet=True)
        items = page["states"]
        return items[0] if items and wanted(items[0]) else None

    def _notifications(
        self,
        connector_id: str,
        level: str | None,
        *,
        channel: str | None = None,
        kind: str = "alert",
        sent: bool = False,
    ) -> list[dict[str, Any]]:
        query = _query(connector_id=connector_id, level=level, channel=channel, kind=kind)
        _, page = self.api("GET", f"/alerts/notifications?{query}", quiet=True)
        items = page["items"]
        if sent and any(item["delivery_status"] == "pending" for item in items):
            return []
        return items

    def _replay_if_done(self, replay_id: str) -> dict[str, Any] | None:
        _, job = self.api("GET", f"/events/connectors/replays/{replay_id}", quiet=True)
        if job["status"] in ("interrupted", "canary_failed"):
            raise DemoFailed(f"the replay {replay_id} ended {job['status']}: {job.get('last_error')}")
        return job if job["status"] == "succeeded" else None

    def _run_if(self, job_id: str, *, dry_run: bool) -> dict[str, Any] | None:
        _, page = self.api("GET", f"/ops/jobs/{job_id}/runs?limit=20", quiet=True)
        done = [run for run in page["items"] if run["dry_run"] is dry_run and run["status"] != "running"]
        return done[0] if done else None

    def _export_if_done(self, export_id: str) -> dict[str, Any] | None:
        _, export = self.api("GET", f"/compliance/evidence/export/{export_id}", quiet=True)
        if export["status"] == "failed":
            raise DemoFailed(f"the export failed: {export.get('error')}")
        return export if export["status"] == "succeeded" and export.get("download") else None

    def _drain_replay_queue(self) -> list[dict[str, Any]]:
        sqs = self.stack.client("sqs")
        url = sqs.get_queue_url(QueueName=self.stack.template.attribute("ReplayQueue", "QueueName"))["QueueUrl"]
        bodies: list[dict[str, Any]] = []
        for _ in range(5):
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if bodies and not answer.get("Messages"):
                break
        return bodies

    def _sla_events(self) -> list[str]:
        """The detail-types the SLA bus carried for the orders connector, once its recovery event is among them."""
        names = [
            str(event.get("detail-type"))
            for event in list(self.stack.sla_events)
            if (event.get("detail") or {}).get("connector_id") == ORDERS
        ]
        return names if "event_connector_sla_recovery" in names else []

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._heartbeat_stop.is_set():
                for connector_id in (ORDERS, INVENTORY):
                    try:
                        self.checkpoint(connector_id, lag_seconds=0, quiet=True)
                    except (DemoFailed, OSError) as error:
                        self.say(f"          heartbeat of {connector_id} failed: {error}")
                self._heartbeat_stop.wait(2.0)

        self._heartbeat = threading.Thread(target=beat, name="demo-heartbeat", daemon=True)
        self._heartbeat.start()


def _query(**params: Any) -> str:
    return urllib.parse.urlencode({key: value for key, value in params.items() if value is not None})
