"""Where a reconcile job reads incidents from, and the rules that keep that from becoming a way in.

Two kinds of endpoint:

- ``https://host/path?query``: a provider's incident list API. Checked here when the job is saved (HTTPS, a
  host, no credentials in the URL, no loopback/private/link-local/metadata IP literal, no ``localhost``), and
  checked again on every request by :mod:`connector_sla.outbound` after DNS resolution and on every redirect.
  Plain ``http://`` only for a ``host:port`` the local stack allows (``OUTBOUND_ALLOWED_LOCAL_TARGETS``).
- ``file:incidents.json`` (relative) or ``file:///<base>/incidents.json`` (absolute): a JSON file read only from
  one base directory (``RECONCILE_FILE_BASE_DIR``). ``..`` components, absolute paths outside the base, and
  symlinks that lead out of it are refused; the file is opened without following a final symlink. A deployment
  that sets no base directory has no file endpoints at all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_FILE_BYTES = 2_000_000
MAX_ENDPOINT_LENGTH = 2048


class EndpointRefused(ValueError):
    """The endpoint is not allowed; the message says why and what is expected. Nothing was read or sent."""


@dataclass(frozen=True)
class Endpoint:
    """A checked endpoint: ``kind`` is ``http`` (HTTPS, or HTTP to an allowed local target) or ``file``."""

    kind: str
    url: str
    path: Path | None = None


def check_endpoint(endpoint: str, *, base_dir: str, allowed_local: Sequence[str]) -> Endpoint:
    """Validate ``endpoint`` without touching the network; raises :class:`EndpointRefused` with the reason."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise EndpointRefused("endpoint is empty; expected https://host/path or file:<name>.json")
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise EndpointRefused(f"endpoint is longer than {MAX_ENDPOINT_LENGTH} characters")
    if any(ord(char) < 0x20 or char in "\x7f\\" for char in endpoint):
        raise EndpointRefused("endpoint contains control characters or backslashes")
    scheme = endpoint.split(":", 1)[0].lower() if ":" in endpoint else ""
    if scheme == "file":
        return Endpoint("file", endpoint, resolve_file(endpoint, base_dir))
    if scheme in ("http", "https"):
        _check_url(endpoint, allowed_local)
        return Endpoint("http", endpoint)
    raise EndpointRefused(
        f"endpoint scheme {scheme or '(none)'!r} is not supported; expected https://host/path or file:<name>.json"
    )


def _check_url(url: str, allowed_local: Sequence[str]) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise EndpointRefused(f"{url!r} has no host; expected https://host/path")
    if parts.username or parts.password:
        raise EndpointRefused("credentials in the endpoint URL are not allowed; put the auth header in the secret")
    if parts.fragment:
        raise EndpointRefused("the endpoint URL must not have a #fragment")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as error:
        raise EndpointRefused(f"{url!r} has an invalid port") from error
    if f"{host}:{port}" in allowed_local:
        return
    if parts.scheme.lower() != "https":
        raise EndpointRefused("only https:// endpoints are allowed (plain http only for targets the stack allows)")
    if host == "localhost" or host.endswith((".localhost", ".internal")):
        raise EndpointRefused(f"host {host!r} is a local name; loopback and internal hosts are refused")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        raise EndpointRefused(
            f"host {host} is not a public address; loopback, private, link-local and metadata addresses are refused"
        )


def resolve_file(endpoint: str, base_dir: str) -> Path:
    """The real path a ``file:`` endpoint names, proven to lie inside ``base_dir``; raises :class:`EndpointRefused`."""
    if not base_dir:
        raise EndpointRefused("file: endpoints are disabled in this deployment (RECONCILE_FILE_BASE_DIR is not set)")
    rest = endpoint[len("file:") :]
    if rest.startswith("//"):
        authority, _, rest = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            raise EndpointRefused("a file: endpoint cannot name a remote host; expected file:///path or file:name")
        rest = "/" + rest
    if not rest or "\x00" in rest:
        raise EndpointRefused("the file: endpoint names no file; expected file:<name>.json")
    if ".." in Path(rest).parts:
        raise EndpointRefused("'..' is not allowed in a file: endpoint; name a file inside the allowed directory")
    base = Path(os.path.realpath(base_dir))
    candidate = Path(rest) if rest.startswith("/") else base / rest
    real = Path(os.path.realpath(candidate))
    if not (candidate.is_relative_to(base) or candidate.is_relative_to(Path(base_dir).absolute())):
        raise EndpointRefused("the file: endpoint is an absolute path outside the allowed directory")
    if not real.is_relative_to(base) or real == base:
        raise EndpointRefused("the file: endpoint leads outside the allowed directory (through a symlink)")
    return real


def read_file_page(endpoint: str, base_dir: str) -> Any:
    """Read a ``file:`` endpoint's JSON document, checking the path again (the directory may have changed)."""
    path = resolve_file(endpoint, base_dir)
    # Limitation: only the last path component is opened without following symlinks; someone who can write to the
    # base directory could swap a parent directory for a symlink between the check and the open. The base
    # directory is part of the deployment (read-only to the function), so nobody at run time can.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError as error:
        raise EndpointRefused(f"the file {path.name!r} does not exist in the allowed directory") from error
    except OSError as error:
        raise EndpointRefused(f"the file {path.name!r} cannot be opened ({error.strerror})") from error
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise EndpointRefused(f"{path.name!r} is not a regular file")
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise EndpointRefused(f"the file {path.name!r} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return json.loads(data)
    except ValueError as error:
        raise EndpointRefused(f"the file {path.name!r} is not a JSON document") from error
