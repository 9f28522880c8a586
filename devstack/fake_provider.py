"""A fake on-call provider on 127.0.0.1, so escalation, callbacks and reconcile can be tried end to end.

It accepts the service's outbound calls (generic signed webhooks, PagerDuty Events API v2, bridge webhooks),
keeps an incident list that the reconcile job can fetch, and can answer an alert with a signed ACK callback to
the local API after a delay, as a responder acknowledging in a real provider would. A generic webhook with
``status: resolved`` (the service's resolved notice) resolves the incidents named in its ``resolves`` list.

Control endpoints for tests and the demo: ``GET /_received`` (what arrived), ``POST /_control`` with
``{"fail_next": 2, "status": 503}`` (simulate an outage) or ``{"auto_ack_seconds": 3}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response


@dataclass
class FakeIncident:
    incident_key: str
    notification_id: str | None
    delivery_id: str | None
    incident_id: str | None
    status: str = "triggered"
    title: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.incident_key,
            "incident_key": self.incident_key,
            "status": self.status,
            "title": self.title,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.updated_at)),
            "custom_details": {
                "notification_id": self.notification_id,
                "delivery_id": self.delivery_id,
                "incident_id": self.incident_id,
            },
        }


class FakeProvider:
    """The WSGI app of the fake provider."""

    def __init__(
        self,
        *,
        secret: Callable[[], str],
        callback_url: str,
        log: Callable[[str], None],
        auto_ack_seconds: float | None = None,
    ) -> None:
        self.secret = secret
        self.callback_url = callback_url
        self.log = log
        self.auto_ack_seconds = auto_ack_seconds
        self.received: list[dict[str, Any]] = []
        self.incidents: dict[str, FakeIncident] = {}
        self.callbacks_sent: list[dict[str, Any]] = []
        self._fail_next = 0
        self._fail_status = 503
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------------------- HTTP

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        return self.handle(request)(environ, start_response)

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if request.method == "GET" and path == "/_received":
            return _json(200, {"received": self.received, "callbacks_sent": self.callbacks_sent})
        if request.method == "POST" and path == "/_control":
            return self._control(request)
        if request.method == "GET" and path == "/incidents":
            return self._list_incidents(request)
        if request.method != "POST":
            return _json(404, {"error": "not found"})
        with self._lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                self.log(f"provider  simulated outage: answered {request.path} with {self._fail_status}")
                return _json(self._fail_status, {"error": "simulated outage"})
        body = request.get_data(cache=True, as_text=False, parse_form_data=False)
        if path == "/v2/enqueue":
            return self._pagerduty_event(request, body)
        if path == "/bridge":
            return self._bridge(request, body)
        if path.startswith("/webhook"):
            return self._webhook(request, body)
        return _json(404, {"error": "not found"})

    def _control(self, request: Request) -> Response:
        command = request.get_json(force=True, silent=True) or {}
        with self._lock:
            if "fail_next" in command:
                self._fail_next = int(command["fail_next"])
                self._fail_status = int(command.get("status", 503))
            if "auto_ack_seconds" in command:
                value = command["auto_ack_seconds"]
                self.auto_ack_seconds = None if value is None else float(value)
        return _json(200, {"ok": True})

    def _list_incidents(self, request: Request) -> Response:
        offset = int(request.args.get("offset", 0))
        limit = min(int(request.args.get("limit", 25)), 100)
        incidents = sorted(self.incidents.values(), key=lambda incident: incident.created_at)
        page = incidents[offset : offset + limit]
        more = offset + limit < len(incidents)
        return _json(
            200,
            {"incidents": [incident.as_json() for incident in page], "offset": offset, "limit": limit, "more": more},
        )

    def _webhook(self, request: Request, body: bytes) -> Response:
        verified = self._verify(request, body)
        payload = json.loads(body or b"{}")
        details = payload.get("custom_details") or {}
        self._remember("webhook", payload, verified)
        if payload.get("status") == "resolved":
            return self._resolve(payload.get("resolves") or [], verified)
        incident = self._incident_from(
            details.get("notification_id"),
            details.get("delivery_id"),
            payload.get("incident_id"),
            str(payload.get("summary") or payload.get("title") or ""),
        )
        self.log(f"provider  webhook for {incident.incident_key} level {payload.get('level')} (signature {verified})")
        self._maybe_auto_ack(incident)
        return _json(202, {"status": "accepted", "incident_key": incident.incident_key})

    def _resolve(self, incident_keys: list[str], verified: str) -> Response:
        """A resolved notice closes the incidents the service opened here (one per alert it names)."""
        resolved = []
        with self._lock:
            for key in incident_keys:
                incident = self.incidents.get(key)
                if incident is not None and incident.status != "resolved":
                    incident.status = "resolved"
                    incident.updated_at = time.time()
                    resolved.append(key)
        self.log(f"provider  resolved notice closes {len(resolved)} incident(s) (signature {verified})")
        return _json(202, {"status": "accepted", "resolved": resolved})

    def _pagerduty_event(self, _request: Request, body: bytes) -> Response:
        payload = json.loads(body or b"{}")
        self._remember("pagerduty", payload, "not_signed")
        dedup_key = payload.get("dedup_key") or str(uuid.uuid4())
        details = (payload.get("payload") or {}).get("custom_details") or {}
        action = payload.get("event_action", "trigger")
        incident = self.incidents.get(dedup_key) or self._incident_from(
            details.get("notification_id") or dedup_key,
            details.get("delivery_id"),
            details.get("incident_id"),
            str((payload.get("payload") or {}).get("summary", "")),
            key=dedup_key,
        )
        if action in ("acknowledge", "resolve"):
            incident.status = "acknowledged" if action == "acknowledge" else "resolved"
            incident.updated_at = time.time()
        self.log(f"provider  PagerDuty {action} for {dedup_key}")
        if action == "trigger":
            self._maybe_auto_ack(incident)
        return _json(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    def _bridge(self, request: Request, body: bytes) -> Response:
        payload = json.loads(body or b"{}")
        self._remember("bridge", payload, self._verify(request, body))
        if payload.get("status") == "resolved":
            self.log(f"provider  bridge of incident {payload.get('incident_id')} closed: the incident recovered")
            return _json(200, {"status": "closed"})
        bridge_id = uuid.uuid4().hex[:8]
        self.log(f"provider  bridge opened for incident {payload.get('incident_id')}: bridge-{bridge_id}")
        return _json(201, {"bridge_url": f"https://bridge.local.invalid/{bridge_id}"})

    # -------------------------------------------------------------------------------------------- behaviour

    def _remember(self, kind: str, payload: dict[str, Any], signature: str) -> None:
        with self._lock:
            self.received.append({"kind": kind, "payload": payload, "signature": signature, "at": time.time()})

    def _incident_from(
        self,
        notification_id: str | None,
        delivery_id: str | None,
        incident_id: str | None,
        title: str,
        *,
        key: str | None = None,
    ) -> FakeIncident:
        incident_key = key or notification_id or str(uuid.uuid4())
        with self._lock:
            incident = self.incidents.get(incident_key)
            if incident is None:
                incident = FakeIncident(incident_key, notification_id, delivery_id, incident_id, title=title)
                self.incidents[incident_key] = incident
            else:
                incident.delivery_id = delivery_id or incident.delivery_id
        return incident

    def _verify(self, request: Request, body: bytes) -> str:
        signature = request.headers.get("X-Signature", "")
        timestamp = request.headers.get("X-Signature-Timestamp", "")
        if not signature:
            return "missing"
        expected = hmac.new(self.secret().encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return "verified" if hmac.compare_digest(signature, f"sha256={expected}") else "mismatch"

    def _maybe_auto_ack(self, incident: FakeIncident) -> None:
        delay = self.auto_ack_seconds
        if delay is None or incident.notification_id is None:
            return
        thread = threading.Thread(target=self._ack_later, args=(incident, delay), daemon=True, name="fake-ack")
        thread.start()

    def _ack_later(self, incident: FakeIncident, delay: float) -> None:
        time.sleep(delay)
        self._acknowledge(incident, by="responder@local.invalid", send_callback=True)

    def acknowledge(self, incident_key: str, *, by: str, send_callback: bool = True) -> int | None:
        """A responder acknowledges in the provider; the provider calls back, or (a lost callback) does not.

        Returns the HTTP status the service answered, or None when no callback was sent.
        """
        with self._lock:
            incident = self.incidents.get(incident_key)
        if incident is None:
            raise KeyError(f"the fake provider holds no incident {incident_key}")
        return self._acknowledge(incident, by=by, send_callback=send_callback)

    def _acknowledge(self, incident: FakeIncident, *, by: str, send_callback: bool) -> int | None:
        incident.status = "acknowledged"
        incident.updated_at = time.time()
        if not send_callback:
            self.log(f"provider  {incident.incident_key} acknowledged by {by}; the callback is lost")
            return None
        return self.send_callback(
            {
                "event_id": str(uuid.uuid4()),
                "status": "acknowledged",
                "notification_id": incident.notification_id,
                "delivery_id": incident.delivery_id,
                "incident_id": incident.incident_id,
                "acknowledged_by": by,
            }
        )

    def send_callback(self, payload: dict[str, Any], *, provider: str = "generic") -> int:
        """POST a signed callback to the service; returns the HTTP status it answered."""
        body = json.dumps(payload).encode()
        timestamp = str(int(time.time()))
        digest = hmac.new(self.secret().encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(  # noqa: S310 - a fixed http://127.0.0.1 URL of the local stack
            f"{self.callback_url}?provider={provider}",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Callback-Timestamp": timestamp,
                "X-Callback-Signature": f"sha256={digest}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        with self._lock:
            self.callbacks_sent.append({"payload": payload, "status": status, "at": time.time()})
        self.log(
            f"provider  sent signed {payload.get('status')} callback for {payload.get('notification_id')} -> {status}"
        )
        return status


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
