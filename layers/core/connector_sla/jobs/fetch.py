"""Fetching a provider's incident list, page by page, through the guarded outbound client or from a file.

Every HTTP request goes through :func:`connector_sla.outbound.send` (HTTPS only, public addresses only after DNS
resolution, connection pinned to the checked address). Redirects are followed here, a few at most, each one
checked again by ``send``; the auth header is dropped as soon as a redirect leaves the endpoint's origin, so a
provider's credentials are never handed to another host. Pagination follows the template's ``next_page`` rule
and stops on a repeated page, at the run's limit, or after :data:`MAX_PAGES`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from connector_sla import outbound
from connector_sla.jobs.endpoints import Endpoint, EndpointRefused, read_file_page
from connector_sla.jobs.mapping import PageRule, read_value

MAX_PAGES = 200
MAX_REDIRECTS = 3
MAX_PAGE_BYTES = 2_000_000
CONNECT_TIMEOUT_SECONDS = 3.0
_HEADER_LINE = re.compile(r"^([A-Za-z0-9-]+):\s*(\S.*)$")

Send = Callable[..., outbound.OutboundResponse]


class FetchRefused(Exception):
    """The endpoint (or a redirect or page link) is not allowed; nothing was sent there."""


class FetchFailed(Exception):
    """A page could not be fetched or read (timeout, HTTP error, not JSON); the message says which."""


@dataclass(frozen=True)
class Page:
    number: int
    url: str
    document: Any


def auth_header(value: str | None) -> tuple[str, str] | None:
    """The header a secret's ``api_auth_header`` stands for: ``"Name: value"``, or a bare value for Authorization."""
    if not value:
        return None
    line = _HEADER_LINE.match(value.strip())
    if line and " " not in line.group(1):
        return line.group(1), line.group(2)
    return "Authorization", value.strip()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def with_params(url: str, params: Mapping[str, Any]) -> str:
    """``url`` with ``params`` set in its query string (replacing same-named ones, keeping the others)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in params]
    query.extend((key, str(value)) for key, value in params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


class Paginator:
    """Decides the URL of each page from the endpoint, the template's page rule and the page just read."""

    def __init__(self, endpoint_url: str, rule: PageRule) -> None:
        self.endpoint_url = endpoint_url
        self.rule = rule
        self.offset = 0
        self.seen: set[str] = set()

    def first(self, wanted: int) -> str:
        size = min(self.rule.page_size, max(wanted, 1))
        if self.rule.style == "offset":
            return with_params(self.endpoint_url, {self.rule.offset_param: 0, self.rule.limit_param: size})
        if self.rule.style == "cursor":
            return with_params(self.endpoint_url, {self.rule.limit_param: size})
        return self.endpoint_url

    def next(self, current_url: str, document: Any, received: int, wanted: int) -> str | None:
        """The next page's URL, or ``None`` when the list is done; raises :class:`FetchFailed` on a loop."""
        self.seen.add(current_url)
        size = min(self.rule.page_size, max(wanted, 1))
        url: str | None = None
        if self.rule.style == "offset":
            if received == 0 or not read_value(self.rule.has_more, document):
                return None
            self.offset += received
            url = with_params(self.endpoint_url, {self.rule.offset_param: self.offset, self.rule.limit_param: size})
        elif self.rule.style == "cursor":
            cursor = read_value(self.rule.cursor, document)
            if cursor in (None, "") or isinstance(cursor, dict | list | bool):
                return None
            url = with_params(self.endpoint_url, {self.rule.cursor_param: cursor, self.rule.limit_param: size})
        elif self.rule.style == "link":
            link = read_value(self.rule.link, document)
            if not isinstance(link, str) or not link:
                return None
            url = urljoin(current_url, link)
            if _origin(url) != _origin(self.endpoint_url):
                raise FetchRefused("the next-page link leaves the endpoint's host; only same-origin links are followed")
        if url is None:
            return None
        if url in self.seen:
            raise FetchFailed("pagination did not advance (the next page is one already read)")
        return url


class IncidentSource:
    """Reads pages from an endpoint: over HTTP(S) through ``send``, or a file from the allowed directory."""

    def __init__(
        self,
        *,
        base_dir: str,
        allowed_local: Sequence[str],
        send: Send = outbound.send,
        resolver: outbound.Resolver | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.allowed_local = tuple(allowed_local)
        self.send = send
        self.resolver = resolver

    def read(self, endpoint: Endpoint, url: str, *, auth: tuple[str, str] | None, read_timeout: float) -> Any:
        """One page's JSON document; raises :class:`FetchRefused` or :class:`FetchFailed`."""
        if endpoint.kind == "file":
            try:
                return read_file_page(endpoint.url, self.base_dir)
            except EndpointRefused as error:
                raise FetchRefused(str(error)) from error
        return self._get_json(endpoint.url, url, auth=auth, read_timeout=read_timeout)

    def _get_json(self, endpoint_url: str, url: str, *, auth: tuple[str, str] | None, read_timeout: float) -> Any:
        origin = _origin(endpoint_url)
        response = None
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Accept": "application/json", "User-Agent": "connector-sla-reconcile/1"}
            if auth is not None and _origin(url) == origin:
                headers[auth[0]] = auth[1]
            response = self._send(url, headers, read_timeout)
            location = response.headers.get("location") or response.headers.get("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            break
        else:
            raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")
        assert response is not None
        host = urlsplit(url).hostname
        if not 200 <= response.status < 300:
            raise FetchFailed(f"{host} answered HTTP {response.status}")
        try:
            return json.loads(response.body)
        except ValueError as error:
            raise FetchFailed(f"{host} answered with a body that is not JSON") from error

    def _send(self, url: str, headers: dict[str, str], read_timeout: float) -> outbound.OutboundResponse:
        extra: dict[str, Any] = {"resolver": self.resolver} if self.resolver is not None else {}
        try:
            return self.send(
                "GET",
                url,
                headers=headers,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=read_timeout,
                max_bytes=MAX_PAGE_BYTES,
                follow_redirects=0,
                allowed_local=self.allowed_local,
                **extra,
            )
        except outbound.OutboundRefused as error:
            raise FetchRefused(str(error)) from error
        except outbound.OutboundFailed as error:
            raise FetchFailed(str(error)) from error
