"""``POST /alerts/oncall/callback``: from the raw request to a recorded callback, refusing anything doubtful.

The order matters and never changes: size (413, before any HMAC), provider, signature over the raw bytes (401,
nothing stored but a security log line and a metric), then JSON, mapping and types (400), then recording. No
pydantic and no resolver on this path: it is the callback function's cold start.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from connector_sla.alerts.providers import ProviderConfig, ProviderStore
from connector_sla.callbacks.intake import CallbackIntake, CallbackOutcome
from connector_sla.callbacks.mapping import MappedCallback, MappingRefused, apply_mapping
from connector_sla.callbacks.recorder import CallbackContention, CallbackRecorder
from connector_sla.callbacks.signatures import SignatureRefused, VerifiedSignature, verify
from connector_sla.config import settings
from connector_sla.errors import DomainError, NotFound, PayloadTooLarge, Unauthorized, ValidationFailed
from connector_sla.secrets import ProviderSecret, ProviderSecrets, SecretUnavailable
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import epoch_seconds

logger = Logger(child=True)

MAX_BODY_BYTES = 256 * 1024
PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
QUERY_PARAMETERS = frozenset({"provider"})
# A signature mismatch may mean the provider already signs with a freshly rotated secret: read the secret again,
# but at most this often per provider, so refused requests cannot hammer the secret store.
SECRET_REFRESH_SECONDS = 60


class SignatureFailed(Unauthorized):
    """401 whose code says what failed: ``signature_missing``, ``_malformed``, ``_stale`` or ``_mismatch``."""

    def __init__(self, refused: SignatureRefused) -> None:
        super().__init__(refused.message)
        self.code = f"signature_{refused.reason}"
        self.reason = refused.reason


class ProviderDisabled(DomainError):
    status = 403
    code = "provider_disabled"


class CallbackUnavailable(DomainError):
    """The callback could not be handled now (secret store, contention); the provider should retry."""

    status = 503
    code = "unavailable"


@dataclass(frozen=True)
class CallbackRequest:
    """The parts of the HTTP request a callback is judged on; header names are lower-case."""

    provider: str | None
    headers: Mapping[str, str]
    body: bytes
    source_ip: str | None = None


def request_from_event(event: Mapping[str, Any]) -> CallbackRequest:
    """The callback request inside an API Gateway proxy event, byte for byte; 413 for a body over 256 KB."""
    query = event.get("queryStringParameters") or {}
    unknown = sorted(set(query) - QUERY_PARAMETERS)
    if unknown:
        raise ValidationFailed(f"unknown query parameter(s) {', '.join(unknown)}: only ?provider=<name> is accepted")
    headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
    identity = (event.get("requestContext") or {}).get("identity") or {}
    provider = query.get("provider")
    return CallbackRequest(
        provider=provider if isinstance(provider, str) else None,
        headers=headers,
        body=_raw_body(event.get("body"), encoded=bool(event.get("isBase64Encoded"))),
        source_ip=identity.get("sourceIp"),
    )


def _raw_body(body: Any, *, encoded: bool) -> bytes:
    text = body if isinstance(body, str) else ""
    if not encoded:
        if len(text) > MAX_BODY_BYTES:
            raise _too_large()
        data = text.encode("utf-8", errors="surrogatepass")
    else:
        if len(text) > (MAX_BODY_BYTES // 3 + 1) * 4:
            raise _too_large()
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValidationFailed("callback body is not valid base64 although isBase64Encoded is set") from error
    if len(data) > MAX_BODY_BYTES:
        raise _too_large()
    return data


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"callback body is larger than {MAX_BODY_BYTES} bytes (256 KB); send a smaller body")


class CallbackWebhook:
    """Judges and records provider callbacks."""

    def __init__(
        self,
        *,
        providers: ProviderStore,
        secrets: ProviderSecrets,
        recorder: CallbackRecorder,
        metrics: Metrics,
        default_provider: str,
    ) -> None:
        self.providers = providers
        self.secrets = secrets
        self.recorder = recorder
        self.metrics = metrics
        self.default_provider = default_provider
        self._refreshed_at: dict[str, float] = {}

    @classmethod
    def from_settings(cls, metrics: Metrics) -> CallbackWebhook:
        """The webhook on the deployment's tables and secret store (clients created once, reused warm)."""
        config = settings()
        store_client = client("ssm" if config.secrets_store == "ssm" else "secretsmanager")
        return cls(
            providers=ProviderStore(Table(config.settings_table, client("dynamodb"))),
            secrets=ProviderSecrets(store_client),
            recorder=CallbackRecorder.from_settings(),
            metrics=metrics,
            default_provider=config.oncall_provider,
        )

    def request_of(self, event: Mapping[str, Any]) -> CallbackRequest:
        """:func:`request_from_event`, counting a refusal (413, bad base64, unknown query parameter)."""
        try:
            return request_from_event(event)
        except DomainError:
            self._count("CallbackRefused")
            raise

    def receive(self, request: CallbackRequest, *, now: datetime) -> CallbackOutcome:
        """Authenticate, read and record one callback; raises a :class:`DomainError` saying why it was refused."""
        provider = self._provider(request.provider or self.default_provider)
        signature = self._authenticate(provider, request, now=epoch_seconds(now))
        mapped = self._read(provider, request.body)
        intake = CallbackIntake(
            provider=provider.name,
            status=mapped.status,
            raw_status=mapped.raw_status,
            notification_id=mapped.notification_id,
            delivery_id=mapped.delivery_id,
            incident_id=mapped.incident_id,
            provider_event_id=mapped.event_id or signature.message_id,
            received_at=now,
            signature=signature.result,
            dedup_basis=(signature.timestamp or "").encode() + b"." + request.body,
            eta=mapped.eta,
            actor=mapped.actor,
            connector_id=mapped.connector_id,
        )
        try:
            outcome = self.recorder.record(intake)
        except CallbackContention as error:
            self._count("CallbackContention")
            raise CallbackUnavailable("the notification is being changed by another writer; retry shortly") from error
        self._report(outcome, intake)
        return outcome

    # ------------------------------------------------------------------------------------------------ steps

    def _provider(self, name: str) -> ProviderConfig:
        if not PROVIDER_NAME.match(name):
            self._count("CallbackRefused")
            raise ValidationFailed("provider must be 1 to 40 lower-case letters, digits, '-' or '_'")
        logger.append_keys(provider=name)
        provider = self.providers.get(name)
        if provider is None:
            self._count("CallbackRefused")
            raise NotFound(f"no on-call provider named {name}; configure it with PUT /alerts/oncall/providers/{name}")
        if not provider.enabled:
            self._count("CallbackRefused")
            raise ProviderDisabled(f"on-call provider {name} is disabled; callbacks from it are refused")
        return provider

    def _authenticate(self, provider: ProviderConfig, request: CallbackRequest, *, now: int) -> VerifiedSignature:
        if provider.signing_scheme == "none":
            return verify("none", request.headers, request.body, (), now=now)
        secret = self._secret(provider.name, refresh=False)
        try:
            return self._verify(provider, request, secret, now=now)
        except SignatureRefused as refused:
            if refused.reason == "mismatch" and self._may_refresh(provider.name):
                secret = self._secret(provider.name, refresh=True)
                try:
                    return self._verify(provider, request, secret, now=now)
                except SignatureRefused as again:
                    refused = again
            logger.warning(
                "callback signature refused",
                reason=refused.reason,
                signing_scheme=provider.signing_scheme,
                source_ip=request.source_ip,
                body_bytes=len(request.body),
            )
            self._count("CallbackSignatureRefused")
            raise SignatureFailed(refused) from None

    def _verify(
        self, provider: ProviderConfig, request: CallbackRequest, secret: ProviderSecret, *, now: int
    ) -> VerifiedSignature:
        return verify(
            provider.signing_scheme,
            request.headers,
            request.body,
            secret.signing_secrets,
            now=now,
            tolerance_seconds=min(int(provider.tolerance_seconds), 300),
        )

    def _secret(self, name: str, *, refresh: bool) -> ProviderSecret:
        try:
            secret = self.secrets.get(name, refresh=refresh)
        except SecretUnavailable as error:
            logger.exception("callback secret unavailable", problem=str(error))
            self._count("CallbackSecretUnavailable")
            raise CallbackUnavailable(f"callbacks from {name} cannot be verified right now; retry later") from error
        if not secret.signing_secrets:
            logger.error("callback secret unavailable", problem="no signing secret")
            self._count("CallbackSecretUnavailable")
            raise CallbackUnavailable(f"callbacks from {name} cannot be verified right now; retry later")
        return secret

    def _may_refresh(self, name: str) -> bool:
        last = self._refreshed_at.get(name)
        current = time.monotonic()
        if last is not None and current - last < SECRET_REFRESH_SECONDS:
            return False
        self._refreshed_at[name] = current
        return True

    def _read(self, provider: ProviderConfig, body: bytes) -> MappedCallback:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as error:
            self._count("CallbackRefused")
            raise ValidationFailed("callback body is not valid JSON: send a JSON object") from error
        if not isinstance(payload, dict):
            self._count("CallbackRefused")
            raise ValidationFailed("callback body must be a JSON object")
        try:
            return apply_mapping(payload, provider.mapping, provider.status_map)
        except MappingRefused as refused:
            self._count("CallbackRefused")
            details = [{"field": refused.field, "problem": refused.message}]
            raise ValidationFailed(refused.message, details=details) from refused

    def _report(self, outcome: CallbackOutcome, intake: CallbackIntake) -> None:
        logger.append_keys(
            notification_id=outcome.notification_id, incident_id=outcome.incident_id, connector_id=outcome.connector_id
        )
        logger.info(
            "callback recorded",
            callback_id=outcome.callback_id,
            status=intake.status,
            duplicate=outcome.duplicate,
            matched=outcome.matched,
            ack_applied=outcome.ack_applied,
            ack_state=outcome.ack_state_after,
        )
        self._count("CallbackAccepted")
        if outcome.duplicate:
            self._count("CallbackDuplicate")
        elif not outcome.matched:
            self._count("CallbackUnmatched")
        if outcome.ack_applied:
            self._count("CallbackAckApplied")

    def _count(self, name: str) -> None:
        self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def answer(outcome: CallbackOutcome) -> dict[str, Any]:
    """The success body of a callback: what was recorded and what it changed."""
    body: dict[str, Any] = {
        "result": "duplicate" if outcome.duplicate else "recorded",
        "callback_id": outcome.callback_id,
        "duplicate": outcome.duplicate,
        "matched": outcome.matched,
        "ack_applied": outcome.ack_applied,
        "ack_state": outcome.ack_state_after,
        "notification_id": outcome.notification_id,
        "incident_id": outcome.incident_id,
        "eta_recorded": outcome.eta_recorded,
    }
    if outcome.unmatched_reason:
        body["unmatched_reason"] = outcome.unmatched_reason
    return body
