"""Callback signature schemes: what passes, what is refused and why, and that a refusal never reveals a digest."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.callbacks.signatures import (
    MALFORMED,
    MISMATCH,
    MISSING,
    STALE,
    SignatureRefused,
    sign_hmac_sha256,
    sign_pagerduty_v3,
    sign_standard_webhooks,
    standard_webhooks_key,
    verify,
)

NOW = 1_796_325_720
SECRET = "s3cr3t-current"
OLD_SECRET = "s3cr3t-previous"
BODY = b'{"status": "acknowledged", "notification_id": "ntf_X"}'


def hmac_headers(body: bytes = BODY, *, secret: str = SECRET, timestamp: int = NOW) -> dict[str, str]:
    return {
        "x-callback-timestamp": str(timestamp),
        "x-callback-signature": sign_hmac_sha256(secret, str(timestamp), body),
    }


def refused(scheme: str, headers: dict[str, str], body: bytes = BODY, secrets=(SECRET,)) -> SignatureRefused:
    with pytest.raises(SignatureRefused) as caught:
        verify(scheme, headers, body, secrets, now=NOW)
    return caught.value


# ---------------------------------------------------------------------------------------------- hmac_sha256


def test_a_body_signed_with_the_provider_secret_is_verified_with_its_timestamp():
    # Given a body signed as "<timestamp>.<body>" with the provider's secret
    headers = hmac_headers()

    # When it is verified
    result = verify("hmac_sha256", headers, BODY, (SECRET,), now=NOW)

    # Then it passes and keeps the signed timestamp (the duplicate basis)
    assert result.result == "verified"
    assert result.timestamp == str(NOW)


def test_the_digest_is_the_lowercase_hex_hmac_of_timestamp_dot_body():
    # Given the HMAC computed independently of the module under test
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()

    # Then the signature header the service expects carries exactly that digest
    headers = {"x-callback-timestamp": str(NOW), "x-callback-signature": f"sha256={expected}"}
    assert sign_hmac_sha256(SECRET, str(NOW), BODY) == f"sha256={expected}"
    assert verify("hmac_sha256", headers, BODY, (SECRET,), now=NOW).result == "verified"


def test_during_a_rotation_both_the_new_and_the_old_secret_verify():
    # Given two valid secrets
    secrets = (SECRET, OLD_SECRET)

    # Then bodies signed with either pass, and a third secret does not
    assert verify("hmac_sha256", hmac_headers(secret=SECRET), BODY, secrets, now=NOW).result == "verified"
    assert verify("hmac_sha256", hmac_headers(secret=OLD_SECRET), BODY, secrets, now=NOW).result == "verified"
    assert refused("hmac_sha256", hmac_headers(secret="another"), secrets=secrets).reason == MISMATCH


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamps_within_300_seconds_either_way_are_accepted(offset):
    headers = hmac_headers(timestamp=NOW + offset)
    assert verify("hmac_sha256", headers, BODY, (SECRET,), now=NOW).result == "verified"


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
def test_timestamps_more_than_300_seconds_old_or_ahead_are_stale(offset):
    # Given a correctly signed body whose timestamp is outside the tolerance
    problem = refused("hmac_sha256", hmac_headers(timestamp=NOW + offset))

    # Then it is refused as stale, even though the digest matches
    assert problem.reason == STALE
    assert "300 seconds" in problem.message


def test_a_missing_timestamp_or_signature_is_missing():
    headers = hmac_headers()
    assert refused("hmac_sha256", {"x-callback-signature": headers["x-callback-signature"]}).reason == MISSING
    assert refused("hmac_sha256", {"x-callback-timestamp": str(NOW)}).reason == MISSING
    assert "X-Callback-Signature" in refused("hmac_sha256", {"x-callback-timestamp": str(NOW)}).message


@pytest.mark.parametrize("timestamp", ["soon", "1.5", "-1", "\uff11\uff12\uff13", "9" * 40])
def test_a_timestamp_that_is_not_whole_unix_seconds_is_malformed(timestamp):
    headers = {"x-callback-timestamp": timestamp, "x-callback-signature": sign_hmac_sha256(SECRET, timestamp, BODY)}
    assert refused("hmac_sha256", headers).reason == MALFORMED


def test_a_signature_without_the_sha256_prefix_is_malformed():
    headers = hmac_headers()
    headers["x-callback-signature"] = headers["x-callback-signature"].removeprefix("sha256=")
    assert refused("hmac_sha256", headers).reason == MALFORMED


def test_an_uppercase_digest_does_not_match():
    headers = hmac_headers()
    headers["x-callback-signature"] = "sha256=" + headers["x-callback-signature"][7:].upper()
    assert refused("hmac_sha256", headers).reason == MISMATCH


@given(body=st.binary(max_size=2048), index=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_change_to_the_signed_body_is_a_mismatch(body, index, flip):
    # Given a body signed correctly, then altered in one byte (or extended when empty)
    headers = hmac_headers(body)
    if body:
        position = index % len(body)
        tampered = body[:position] + bytes([body[position] ^ flip]) + body[position + 1 :]
    else:
        tampered = bytes([flip])

    # Then the original verifies and the altered one is a mismatch
    assert verify("hmac_sha256", headers, body, (SECRET,), now=NOW).result == "verified"
    assert refused("hmac_sha256", headers, tampered).reason == MISMATCH


@given(secret=st.text(min_size=1, max_size=64), body=st.binary(max_size=512))
def test_a_refusal_never_contains_the_expected_digest(secret, body):
    # Given a wrong signature
    headers = {"x-callback-timestamp": str(NOW), "x-callback-signature": "sha256=" + "0" * 64}
    expected = sign_hmac_sha256(secret, str(NOW), body)[7:]

    # When it is refused
    problem = refused("hmac_sha256", headers, body, secrets=(secret,))

    # Then the message says what failed and nothing about the expected value
    assert problem.reason == MISMATCH
    assert expected not in problem.message


# ---------------------------------------------------------------------------------------------- Standard Webhooks


def webhook_headers(secret: str, body: bytes = BODY, *, message_id: str = "msg_2Lb", timestamp: int = NOW):
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(secret, message_id, str(timestamp), body),
    }


def test_standard_webhooks_whsec_secrets_are_base64_after_the_prefix():
    raw_key = b"\x00\x01binary key\xff"
    secret = "whsec_" + base64.b64encode(raw_key).decode()
    assert standard_webhooks_key(secret) == raw_key


def test_standard_webhooks_signature_verifies_and_keeps_the_message_id():
    # Given a whsec_ secret and a signature over "<id>.<timestamp>.<body>"
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    headers = webhook_headers(secret)

    # When it is verified
    result = verify("standard_webhooks", headers, BODY, (secret,), now=NOW)

    # Then it passes, and the message id is what makes a redelivery a duplicate
    assert result.result == "verified"
    assert result.message_id == "msg_2Lb"


def test_standard_webhooks_accepts_any_valid_entry_among_several():
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    headers = webhook_headers(secret)
    headers["webhook-signature"] = "v1,bm90IGl0 v2,whatever " + headers["webhook-signature"]
    assert verify("standard_webhooks", headers, BODY, (secret,), now=NOW).result == "verified"


def test_standard_webhooks_signs_the_message_id_too():
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    headers = webhook_headers(secret)
    headers["webhook-id"] = "msg_other"
    assert refused("standard_webhooks", headers, secrets=(secret,)).reason == MISMATCH


def test_standard_webhooks_refuses_stale_and_missing_headers():
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert refused("standard_webhooks", webhook_headers(secret, timestamp=NOW - 600), secrets=(secret,)).reason == STALE
    headers = webhook_headers(secret)
    del headers["webhook-id"]
    assert refused("standard_webhooks", headers, secrets=(secret,)).reason == MISSING


def test_every_offered_digest_is_compared_in_constant_time_with_every_secret(monkeypatch):
    # Given compare_digest observed, and a header whose first entry already matches the first secret
    import connector_sla.callbacks.signatures as signatures

    compared: list[tuple[bytes, bytes]] = []
    constant_time = hmac.compare_digest

    def observed(left: bytes, right: bytes) -> bool:
        compared.append((left, right))
        return constant_time(left, right)

    monkeypatch.setattr(signatures.hmac, "compare_digest", observed)
    headers = hmac_headers()
    headers["x-callback-signature"] += ",sha256=" + "0" * 64

    # When it is verified against two secrets
    result = verify("hmac_sha256", headers, BODY, (SECRET, OLD_SECRET), now=NOW)

    # Then all four pairs went through compare_digest: no early exit, no plain equality that leaks timing
    assert result.result == "verified"
    assert len(compared) == 4 and len(set(compared)) == 4


# ---------------------------------------------------------------------------------------------- PagerDuty v3


def test_pagerduty_v3_accepts_one_matching_entry_among_several():
    # Given PagerDuty signing with two secrets during a rotation, one of which we hold
    header = f"{sign_pagerduty_v3('their-new-secret', BODY)},{sign_pagerduty_v3(SECRET, BODY)}"

    # Then the body verifies
    assert verify("pagerduty_v3", {"x-pagerduty-signature": header}, BODY, (SECRET,), now=NOW).result == "verified"


def test_pagerduty_v3_refuses_a_body_signed_with_another_secret_or_no_signature():
    header = sign_pagerduty_v3("not-ours", BODY)
    assert refused("pagerduty_v3", {"x-pagerduty-signature": header}).reason == MISMATCH
    assert refused("pagerduty_v3", {}).reason == MISSING


def test_scheme_none_requires_nothing():
    assert verify("none", {}, BODY, (), now=NOW).result == "not_required"
