"""Callback signature schemes, checked over the raw body before anything parses it.

Pure functions over plain values: header names lower-cased, the body as bytes, the valid secrets (several while
a secret is rotated) and ``now`` in Unix seconds. Every candidate digest is compared in constant time against
every secret, without stopping at the first match, and a refusal names what failed, never what was expected.

- ``hmac_sha256``: ``X-Callback-Timestamp: <unix seconds>`` and ``X-Callback-Signature: sha256=<hex>``, the
  lowercase hex HMAC-SHA256 of ``<timestamp>.<raw body>``.
- ``standard_webhooks``: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` with space-separated
  ``v1,<base64>`` entries over ``<id>.<timestamp>.<raw body>``; a ``whsec_`` secret is base64 after the prefix.
- ``pagerduty_v3``: ``X-PagerDuty-Signature`` with comma-separated ``v1=<hex>`` entries over the raw body.
- ``none``: nothing to check (a provider saved that way on purpose).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MISSING = "missing"
MALFORMED = "malformed"
STALE = "stale"
MISMATCH = "mismatch"

HMAC_TIMESTAMP = "x-callback-timestamp"
HMAC_SIGNATURE = "x-callback-signature"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
PAGERDUTY_SIGNATURE = "x-pagerduty-signature"

_MAX_TIMESTAMP_DIGITS = 12
_MAX_HEADER = 4096


class SignatureRefused(Exception):
    """The signature check failed; ``reason`` is missing, malformed, stale or mismatch."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class VerifiedSignature:
    """A passed check: ``result`` is ``verified`` or ``not_required``; ``timestamp`` and ``message_id`` when signed."""

    result: str
    timestamp: str | None = None
    message_id: str | None = None


def verify(
    scheme: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: int,
    tolerance_seconds: int = 300,
) -> VerifiedSignature:
    """Check ``body`` against ``scheme``; raises :class:`SignatureRefused` with the reason when it does not pass."""
    if scheme == "none":
        return VerifiedSignature("not_required")
    if scheme == "hmac_sha256":
        return _verify_hmac_sha256(headers, body, secrets, now=now, tolerance=tolerance_seconds)
    if scheme == "standard_webhooks":
        return _verify_standard_webhooks(headers, body, secrets, now=now, tolerance=tolerance_seconds)
    if scheme == "pagerduty_v3":
        return _verify_pagerduty_v3(headers, body, secrets)
    raise ValueError(f"unknown signing scheme {scheme!r}")


def sign_hmac_sha256(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Callback-Signature`` value for ``body`` sent at ``timestamp`` (used by tests and the local stack)."""
    return "sha256=" + _hex_hmac(secret.encode(), timestamp.encode() + b"." + body)


def sign_standard_webhooks(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """One ``v1,<base64>`` entry of a ``webhook-signature`` header."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_pagerduty_v3(secret: str, body: bytes) -> str:
    """One ``v1=<hex>`` entry of an ``X-PagerDuty-Signature`` header."""
    return "v1=" + _hex_hmac(secret.encode(), body)


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after an optional ``whsec_`` prefix, else the raw text."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()


# ---------------------------------------------------------------------------------------------- schemes


def _verify_hmac_sha256(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], *, now: int, tolerance: int
) -> VerifiedSignature:
    timestamp = _required(headers, HMAC_TIMESTAMP, "X-Callback-Timestamp (Unix seconds)")
    signature = _required(headers, HMAC_SIGNATURE, "X-Callback-Signature (sha256=<hex HMAC>)")
    _check_fresh(timestamp, now=now, tolerance=tolerance, header="X-Callback-Timestamp")
    offered = _entries(signature, separators=",", prefix="sha256=", header="X-Callback-Signature")
    signed = timestamp.encode() + b"." + body
    expected = [_hex_hmac(secret.encode(), signed) for secret in secrets]
    _match(offered, expected, header="X-Callback-Signature")
    return VerifiedSignature("verified", timestamp=timestamp)


def _verify_standard_webhooks(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], *, now: int, tolerance: int
) -> VerifiedSignature:
    message_id = _required(headers, WEBHOOK_ID, "webhook-id")
    timestamp = _required(headers, WEBHOOK_TIMESTAMP, "webhook-timestamp (Unix seconds)")
    signature = _required(headers, WEBHOOK_SIGNATURE, "webhook-signature (v1,<base64> entries)")
    _check_fresh(timestamp, now=now, tolerance=tolerance, header="webhook-timestamp")
    offered = _entries(signature, separators=" ", prefix="v1,", header="webhook-signature")
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = [
        base64.b64encode(hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()).decode()
        for secret in secrets
    ]
    _match(offered, expected, header="webhook-signature")
    return VerifiedSignature("verified", timestamp=timestamp, message_id=message_id)


# Limitation: PagerDuty v3 signs the body only, with no timestamp, so no freshness window applies; a replayed
# body carries the same event.id and is recorded as a duplicate that changes nothing.
def _verify_pagerduty_v3(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> VerifiedSignature:
    signature = _required(headers, PAGERDUTY_SIGNATURE, "X-PagerDuty-Signature (v1=<hex> entries)")
    offered = _entries(signature, separators=",", prefix="v1=", header="X-PagerDuty-Signature")
    expected = [_hex_hmac(secret.encode(), body) for secret in secrets]
    _match(offered, expected, header="X-PagerDuty-Signature")
    return VerifiedSignature("verified")


# ---------------------------------------------------------------------------------------------- helpers


def _hex_hmac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _required(headers: Mapping[str, str], name: str, described: str) -> str:
    value = (headers.get(name) or "").strip()
    if not value:
        raise SignatureRefused(MISSING, f"signature missing: send the {described} header")
    if len(value) > _MAX_HEADER:
        raise SignatureRefused(MALFORMED, f"signature malformed: the {name} header is too long")
    return value


def _check_fresh(timestamp: str, *, now: int, tolerance: int, header: str) -> None:
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise SignatureRefused(MALFORMED, f"signature malformed: {header} must be whole Unix seconds")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureRefused(
            STALE, f"signature stale: {header} is more than {tolerance} seconds away from the server's clock"
        )


def _entries(value: str, *, separators: str, prefix: str, header: str) -> list[str]:
    parts = value.split() if separators == " " else value.replace(separators, " ").split()
    entries = [part[len(prefix) :] for part in parts if part.startswith(prefix) and len(part) > len(prefix)]
    if not entries:
        raise SignatureRefused(MALFORMED, f"signature malformed: {header} holds no {prefix}<digest> entry")
    return entries


def _match(offered: Sequence[str], expected: Sequence[str], *, header: str) -> None:
    found = False
    for candidate in offered:
        for digest in expected:
            found |= hmac.compare_digest(candidate.encode(), digest.encode())
    if not found:
        raise SignatureRefused(MISMATCH, f"signature mismatch: no {header} entry matches a signing secret")
