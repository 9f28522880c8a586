"""The dashboard page: one self-contained HTML document (inline CSS and JS, nothing loaded from elsewhere).

The page holds no data: it fetches ``<its own URL>/data`` and renders it, so it works under an API stage prefix.
How operators authenticate comes from the sign-in settings document: with ``COGNITO`` the page signs them in with
the hosted UI (authorization code with PKCE) and sends the ID token on every request; with ``IAM`` it explains
that requests must be SigV4-signed when the API refuses them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

REFRESH_SECONDS = 15
_CLIENT_ID = re.compile(r"[\w+]{1,128}", re.ASCII)  # Cognito's pattern for app client ids
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class SignIn:
    """How the page authenticates operators; ``problem`` explains a setting that cannot be used."""

    mode: str
    domain: str | None = None
    client_id: str | None = None
    problem: str | None = None


def parse_sign_in(raw: str | None) -> SignIn:
    """The sign-in settings from the parameter's JSON (``{"mode", "domain", "client_id"}``), checked.

    The hosted UI domain must be an HTTPS origin (plain HTTP only on a loopback address, for local tests).
    """
    if raw is None:
        return SignIn("IAM", problem="the sign-in settings could not be read; assuming IAM (SigV4) authorization")
    try:
        document = json.loads(raw)
    except ValueError:
        return SignIn("IAM", problem="the sign-in settings are not JSON; assuming IAM (SigV4) authorization")
    mode = str(document.get("mode", "")).upper() if isinstance(document, dict) else ""
    if mode == "IAM":
        return SignIn("IAM")
    if mode != "COGNITO":
        return SignIn("IAM", problem=f"sign-in mode {mode!r} is neither IAM nor COGNITO; assuming IAM")
    domain = _origin(str(document.get("domain", "")))
    client_id = str(document.get("client_id", ""))
    if domain is None:
        return SignIn("COGNITO", problem="the Cognito domain of the sign-in settings is not an https:// origin")
    if not _CLIENT_ID.fullmatch(client_id):
        return SignIn("COGNITO", problem="the Cognito app client id of the sign-in settings is missing or malformed")
    return SignIn("COGNITO", domain=domain, client_id=client_id)


def _origin(url: str) -> str | None:
    parts = urlsplit(url.strip().rstrip("/"))
    if parts.path or parts.query or parts.fragment or not parts.hostname:
        return None
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
    return f"{parts.scheme}://{parts.netloc}" if secure else None


@cache
def _template() -> str:
    return resources.files("connector_sla.dashboard").joinpath("page.html").read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    # JSON inside <script>: escape what could close the element or start markup.
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(sign_in: SignIn, *, nonce: str) -> str:
    """The page's HTML, with its settings embedded and its inline style and script bound to ``nonce``."""
    config = {
        "mode": sign_in.mode,
        "domain": sign_in.domain,
        "client_id": sign_in.client_id,
        "problem": sign_in.problem,
        "refresh_seconds": REFRESH_SECONDS,
    }
    return _template().replace("{{nonce}}", nonce).replace("{{config}}", _script_json(config))


def page_headers(sign_in: SignIn, *, nonce: str) -> dict[str, str]:
    """Security headers: only the page's own nonce-bound style and script run; data comes from this API (and,
    with Cognito, tokens from the hosted UI's origin); nothing is cached or framed, and no referrer leaks."""
    connect = "'self'" + (f" {sign_in.domain}" if sign_in.domain else "")
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src {connect}; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }
