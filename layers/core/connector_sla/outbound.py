"""Outbound HTTP that cannot be turned against the service's own network.

Every call the service makes on behalf of its configuration (on-call webhooks, PagerDuty, the bridge, reconcile
fetches) goes through :func:`send`: HTTPS only; the host is resolved once and every address must be public
(no loopback, private, link-local, carrier-grade NAT, multicast or cloud metadata address); the connection is
pinned to the checked address so a second DNS answer cannot swap it; redirects are followed only when asked and
each hop is checked again. The local stack may allow its own fake provider by ``host:port`` over plain HTTP
(``OUTBOUND_ALLOWED_LOCAL_TARGETS``); a deployed stack never sets it.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3

from connector_sla.config import settings

Resolver = Callable[[str, int], Sequence[str]]


class OutboundRefused(ValueError):
    """The target is not allowed; the message says why. Nothing was sent."""


class OutboundFailed(Exception):
    """The call was sent (or attempted) but did not complete: timeout, connection error, oversized answer."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    latency_ms: int
    url: str


def _system_resolver(host: str, port: int) -> Sequence[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, and the deprecated IPv4-compatible form).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a translation or tunnel (mapped, 6to4, Teredo, NAT64)."""
    found = [address for address in (ip.ipv4_mapped, ip.sixtofour) if address is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in network for network in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded:
            return all(_is_public(str(inner)) for inner in embedded)
    return bool(ip.is_global) and not ip.is_multicast


def check_target(
    url: str,
    *,
    resolver: Resolver = _system_resolver,
    allowed_local: Sequence[str] | None = None,
) -> Target:
    """Validate ``url`` as an outbound target and resolve it; raises :class:`OutboundRefused` with the reason."""
    allowed_local = settings().outbound_allowed_local if allowed_local is None else allowed_local
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host:
        raise OutboundRefused(f"{url!r} has no host; expected https://host/path")
    if parts.username or parts.password:
        raise OutboundRefused("credentials in the URL are not allowed; use the provider secret instead")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as error:
        raise OutboundRefused(f"{url!r} has an invalid port") from error
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    if f"{host}:{port}" in allowed_local and scheme in ("http", "https"):
        return Target(scheme, host, port, path, (host,))
    if scheme != "https":
        raise OutboundRefused(f"only https:// targets are allowed, got {scheme or 'no scheme'}://")
    try:
        addresses = tuple(resolver(host, port))
    except OSError as error:
        raise OutboundRefused(f"host {host!r} does not resolve") from error
    if not addresses:
        raise OutboundRefused(f"host {host!r} does not resolve")
    blocked = [address for address in addresses if not _is_public(address)]
    if blocked:
        raise OutboundRefused(
            f"host {host!r} resolves to a non-public address ({blocked[0]}); loopback, private, link-local and "
            "metadata addresses are refused"
        )
    return Target(scheme, host, port, path, addresses)


def send(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 10.0,
    max_bytes: int = 2_000_000,
    follow_redirects: int = 0,
    resolver: Resolver = _system_resolver,
    allowed_local: Sequence[str] | None = None,
) -> OutboundResponse:
    """Send one request to a checked target; raises :class:`OutboundRefused` or :class:`OutboundFailed`."""
    started = time.perf_counter()
    for _ in range(follow_redirects + 1):
        target = check_target(url, resolver=resolver, allowed_local=allowed_local)
        response = _send_pinned(method, target, body, headers or {}, connect_timeout, read_timeout, max_bytes)
        location = response.headers.get("location") or response.headers.get("Location")
        if response.status in (301, 302, 303, 307, 308) and location and follow_redirects:
            url = urljoin(url, location)
            continue
        latency = int((time.perf_counter() - started) * 1000)
        return OutboundResponse(response.status, response.headers, response.body, latency, url)
    raise OutboundFailed(f"more than {follow_redirects} redirects")


@dataclass(frozen=True)
class _Raw:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _send_pinned(
    method: str,
    target: Target,
    body: bytes | None,
    headers: Mapping[str, str],
    connect_timeout: float,
    read_timeout: float,
    max_bytes: int,
) -> _Raw:
    address = target.addresses[0]
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    pool: Any
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False)
    request_headers = {"Host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}"}
    request_headers.update(headers)
    # The read timeout bounds each socket read; this bounds the whole answer, so a trickling server cannot hold on.
    deadline = time.monotonic() + connect_timeout + read_timeout
    try:
        response = pool.urlopen(
            method, target.path, body=body, headers=request_headers, redirect=False, preload_content=False
        )
        data = _read_until(response, deadline, max_bytes + 1)
        response.release_conn()
    except urllib3.exceptions.HTTPError as error:
        raise OutboundFailed(f"{type(error).__name__}: {error}") from error
    finally:
        pool.close()
    if len(data) > max_bytes:
        raise OutboundFailed(f"the answer is larger than {max_bytes} bytes")
    return _Raw(response.status, dict(response.headers), data)


def _read_until(response: Any, deadline: float, limit: int) -> bytes:
    """The body, read in chunks, up to ``limit`` bytes; raises :class:`OutboundFailed` past ``deadline``."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = response.read1(65_536)  # returns as soon as any bytes arrived, so the deadline is checked often
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() > deadline:
            raise OutboundFailed("the answer took too long to arrive (timeout for the whole answer)")
    return b"".join(chunks)[:limit]
