"""Channel adapters: one delivery attempt of a notification through the on-call provider, SES or the bridge.

Every HTTP call goes through :func:`connector_sla.outbound.send` (HTTPS only, no private targets). Generic webhooks
(on-call and bridge) are signed with ``X-Signature-Timestamp`` and ``X-Signature: sha256=<hex HMAC of
"<timestamp>.<body>">`` keyed with the provider's outbound signing secret; the bridge is signed with the secret of
the deployment's default provider. PagerDuty gets Events API v2 bodies with the routing key from the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector_sla.alerts.providers import ProviderConfig, ProviderStore
from connector_sla.escalation.messages import email_message, pagerduty_events, webhook_payload
from connector_sla.escalation.rules import AttemptResult, classify_http
from connector_sla.outbound import OutboundFailed, OutboundRefused, OutboundResponse, send
from connector_sla.secrets import ProviderSecrets, SecretUnavailable

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 8.0
PROVIDER_CACHE_SECONDS = 60.0
_SES_RETRYABLE = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "ServiceUnavailable", "InternalFailure"}
)

HttpSend = Callable[..., OutboundResponse]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Signature`` value of a generic webhook body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class ChannelSenders:
    """Sends one attempt of a notification and says what came of it; never raises for a delivery failure."""

    def __init__(
        self,
        *,
        ses: Any,
        providers: ProviderStore,
        secrets: ProviderSecrets,
        sender_email: str,
        runbook_url: str,
        bridge_signing_provider: str,
        http: HttpSend = send,
    ) -> None:
        self.ses = ses
        self.providers = providers
        self.secrets = secrets
        self.sender_email = sender_email
        self.runbook_url = runbook_url
        self.bridge_signing_provider = bridge_signing_provider
        self.http = http
        self._provider_cache: dict[str, tuple[float, ProviderConfig | None]] = {}

    def deliver(self, notification: Mapping[str, Any], delivery_id: str) -> AttemptResult:
        """One attempt through the notification's channel."""
        channel = notification.get("channel")
        try:
            if channel == "oncall":
                return self._oncall(notification, delivery_id)
            if channel == "email":
                return self._email(notification)
            if channel == "bridge":
                body = webhook_payload(notification, delivery_id, runbook_url=self.runbook_url)
                return self._signed_webhook(str(notification["target"]), body, self.bridge_signing_provider)
        except OutboundRefused as error:
            return AttemptResult("final", error=f"target refused: {error}")
        except OutboundFailed as error:
            return AttemptResult("retry", error=f"no answer: {error}")
        except SecretUnavailable as error:
            return AttemptResult("retry", error=str(error))
        return AttemptResult("final", error=f"unknown channel {channel!r}")

    # ------------------------------------------------------------------------------------------ on-call provider

    def _provider(self, name: str) -> ProviderConfig | None:
        cached = self._provider_cache.get(name)
        if cached and time.monotonic() - cached[0] < PROVIDER_CACHE_SECONDS:
            return cached[1]
        provider = self.providers.get(name)
        self._provider_cache[name] = (time.monotonic(), provider)
        return provider

    def _oncall(self, notification: Mapping[str, Any], delivery_id: str) -> AttemptResult:
        name = str(notification["target"])
        provider = self._provider(name)
        if provider is None:
            return AttemptResult("final", error=f"on-call provider {name!r} is not configured")
        if not provider.enabled:
            return AttemptResult("final", error=f"on-call provider {name!r} is disabled")
        if provider.outbound_profile == "pagerduty_events_v2":
            return self._pagerduty(provider, notification, delivery_id)
        if not provider.outbound_url:
            return AttemptResult("final", error=f"on-call provider {name!r} has no outbound_url")
        body = webhook_payload(notification, delivery_id, runbook_url=self.runbook_url)
        return self._signed_webhook(provider.outbound_url, body, name)

    def _pagerduty(self, provider: ProviderConfig, notification: Mapping[str, Any], delivery_id: str) -> AttemptResult:
        routing_key = self.secrets.get(provider.name).routing_key
        if not routing_key:
            return AttemptResult("final", error=f"the secret of provider {provider.name!r} has no routing_key")
        url = provider.outbound_url or PAGERDUTY_EVENTS_URL
        events = pagerduty_events(notification, delivery_id, routing_key=routing_key, runbook_url=self.runbook_url)
        latency = 0
        result = AttemptResult("sent", latency_ms=0)
        for event in events:
            response = self._post(url, _json_bytes(event), {})
            latency += response.latency_ms
            result = _http_result(response, latency)
            if result.outcome != "sent":
                return result
        return result

    # ------------------------------------------------------------------------------------------ webhooks, email

    def _signed_webhook(self, url: str, payload: Mapping[str, Any], signing_provider: str) -> AttemptResult:
        body = _json_bytes(payload)
        secret = self.secrets.get(signing_provider).outbound_signing_secret
        if not secret:
            return AttemptResult("final", error=f"provider {signing_provider!r} has no signing secret")
        timestamp = str(int(time.time()))
        headers = {"X-Signature-Timestamp": timestamp, "X-Signature": sign(secret, timestamp, body)}
        response = self._post(url, body, headers)
        return _http_result(response, response.latency_ms)

    def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> OutboundResponse:
        return self.http(
            "POST",
            url,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": "connector-sla-escalation", **headers},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            max_bytes=65_536,
        )

    def _email(self, notification: Mapping[str, Any]) -> AttemptResult:
        subject, text = email_message(notification, runbook_url=self.runbook_url)
        started = time.perf_counter()
        try:
            response = self.ses.send_email(
                Source=self.sender_email,
                Destination={"ToAddresses": [str(notification["target"])]},
                Message={
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": text, "Charset": "UTF-8"}},
                },
            )
        except ClientError as error:
            latency = int((time.perf_counter() - started) * 1000)
            code = error.response.get("Error", {}).get("Code", "")
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) or None
            retryable = code in _SES_RETRYABLE or (status or 0) >= 500
            message = f"SES {code}: {error.response.get('Error', {}).get('Message', '')}"
            return AttemptResult("retry" if retryable else "final", status, latency, message)
        except BotoCoreError as error:
            return AttemptResult(
                "retry", None, int((time.perf_counter() - started) * 1000), f"SES unreachable: {error}"
            )
        latency = int((time.perf_counter() - started) * 1000)
        return AttemptResult("sent", int(response["ResponseMetadata"]["HTTPStatusCode"]), latency)


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _http_result(response: OutboundResponse, latency_ms: int) -> AttemptResult:
    outcome = classify_http(response.status)
    error = None if outcome == "sent" else f"HTTP {response.status}: {response.body[:300].decode(errors='replace')}"
    return AttemptResult(outcome, response.status, latency_ms, error)
