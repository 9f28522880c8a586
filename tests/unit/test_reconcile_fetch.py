"""Fetching incident pages: SSRF refusals (after DNS, after redirects), auth headers, pagination."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connector_sla.jobs.endpoints import Endpoint
from connector_sla.jobs.fetch import FetchFailed, FetchRefused, IncidentSource, Paginator, auth_header, with_params
from connector_sla.jobs.mapping import compile_mapping
from devstack.fake_provider import FakeIncident, FakeProvider


@contextmanager
def serve(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


class Recorder:
    """A small HTTP peer: answers per path and remembers the headers of each request."""

    def __init__(self, answers):
        self.answers = answers
        self.requests = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.requests.append((request.full_path, dict(request.headers)))
        status, headers, body = self.answers(request)
        return Response(body, status=status, headers=headers)(environ, start_response)


def public(mapping):
    return lambda host, port: mapping[host]


def test_a_hostname_resolving_to_the_metadata_address_is_refused_before_any_request():
    # Given an https endpoint whose name resolves (through an injected resolver) to the cloud metadata address
    source = IncidentSource(
        base_dir="", allowed_local=(), resolver=public({"incidents.example.com": ["169.254.169.254"]})
    )
    url = "https://incidents.example.com/incidents"

    # When a page is read, Then it is refused for the address, not attempted (no socket to 169.254/16 is opened)
    with pytest.raises(FetchRefused, match=r"non-public address \(169\.254\.169\.254\)"):
        source.read(Endpoint("http", url), url, auth=("Authorization", "Token t"), read_timeout=2)


def test_a_redirect_to_a_private_address_is_refused_and_never_followed():
    # Given the allowed local provider answering with a redirect to a name that resolves to a private address
    peer = Recorder(lambda request: (302, {"Location": "https://internal.example.com/admin"}, b""))
    with serve(peer) as hostport:
        resolver = public({"internal.example.com": ["10.0.0.7"]})
        source = IncidentSource(base_dir="", allowed_local=(hostport,), resolver=resolver)
        url = f"http://{hostport}/incidents"

        # When the page is read, Then the redirect's target is checked again and refused
        with pytest.raises(FetchRefused, match=r"non-public address \(10\.0\.0\.7\)"):
            source.read(Endpoint("http", url), url, auth=None, read_timeout=2)
    assert len(peer.requests) == 1


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://10.1.2.3/latest/meta-data/", "only https"),
        ("http://169.254.169.254/latest/meta-data/iam/", "only https"),
        ("https://[::1]:8443/", "non-public address"),
    ],
)
def test_redirects_to_plain_http_or_loopback_are_refused(location, message):
    peer = Recorder(lambda request: (307, {"Location": location}, b""))
    with serve(peer) as hostport:
        source = IncidentSource(base_dir="", allowed_local=(hostport,), resolver=public({"::1": ["::1"]}))
        url = f"http://{hostport}/incidents"
        with pytest.raises(FetchRefused, match=message):
            source.read(Endpoint("http", url), url, auth=None, read_timeout=2)


def test_the_auth_header_is_sent_to_the_endpoint_but_not_to_another_origin_it_redirects_to():
    # Given two allowed local peers; the first redirects to the second
    second = Recorder(lambda request: (200, {"Content-Type": "application/json"}, b'{"incidents": []}'))
    with serve(second) as second_hostport:
        first = Recorder(lambda request: (302, {"Location": f"http://{second_hostport}/moved"}, b""))
        with serve(first) as first_hostport:
            source = IncidentSource(base_dir="", allowed_local=(first_hostport, second_hostport))
            url = f"http://{first_hostport}/incidents"

            # When a page is read with the provider's auth header
            document = source.read(Endpoint("http", url), url, auth=("Authorization", "Token abc"), read_timeout=2)

    # Then the endpoint got the header, the other origin did not, and the redirected page was read
    assert document == {"incidents": []}
    assert first.requests[0][1].get("Authorization") == "Token abc"
    assert "Authorization" not in second.requests[0][1]


def test_http_errors_and_non_json_pages_fail_the_fetch_with_the_reason():
    answers = {"/error": (503, {}, b"busy"), "/html": (200, {"Content-Type": "text/html"}, b"<html>")}
    peer = Recorder(lambda request: answers[request.path])
    with serve(peer) as hostport:
        source = IncidentSource(base_dir="", allowed_local=(hostport,))
        for path, message in (("/error", "answered HTTP 503"), ("/html", "not JSON")):
            url = f"http://{hostport}{path}"
            with pytest.raises(FetchFailed, match=message):
                source.read(Endpoint("http", url), url, auth=None, read_timeout=2)


def test_offset_pagination_walks_the_fake_providers_incident_list():
    # Given the local stack's fake provider holding 7 incidents
    provider = FakeProvider(secret=lambda: "s", callback_url="http://127.0.0.1:9/cb", log=lambda _: None)
    for number in range(7):
        key = f"ntf_{number}"
        provider.incidents[key] = FakeIncident(key, key, None, "inc_1", created_at=float(number))
    mapping = compile_mapping({"next_page": {"page_size": 3}})
    with serve(provider) as hostport:
        source = IncidentSource(base_dir="", allowed_local=(hostport,))
        endpoint = Endpoint("http", f"http://{hostport}/incidents")
        paginator = Paginator(endpoint.url, mapping.next_page)

        # When pages are read until the provider says there are no more
        seen, url = [], paginator.first(100)
        while url:
            document = source.read(endpoint, url, auth=None, read_timeout=2)
            incidents = mapping.incidents_of(document)
            seen.extend(incident["id"] for incident in incidents)
            url = paginator.next(url, document, len(incidents), 100 - len(seen))

    # Then every incident was read once, in order
    assert seen == [f"ntf_{number}" for number in range(7)]


def test_cursor_and_link_pagination_and_their_guards():
    cursor_rule = compile_mapping({"next_page": {"style": "cursor", "cursor": "meta.next"}}).next_page
    paginator = Paginator("https://api.example.com/v1/incidents?team=a", cursor_rule)
    first = paginator.first(50)
    assert first == "https://api.example.com/v1/incidents?team=a&limit=50"
    second = paginator.next(first, {"meta": {"next": "abc"}}, 50, 50)
    assert second == "https://api.example.com/v1/incidents?team=a&cursor=abc&limit=50"
    assert paginator.next(second, {"meta": {"next": None}}, 50, 50) is None
    with pytest.raises(FetchFailed, match="did not advance"):
        paginator.next(second, {"meta": {"next": "abc"}}, 50, 50)

    link_rule = compile_mapping({"next_page": {"style": "link", "link": "links.next"}}).next_page
    links = Paginator("https://api.example.com/v1/incidents", link_rule)
    assert links.next(links.first(10), {"links": {"next": "/v1/incidents?page=2"}}, 10, 10) == (
        "https://api.example.com/v1/incidents?page=2"
    )
    with pytest.raises(FetchRefused, match="leaves the endpoint's host"):
        links.next("https://api.example.com/v1/incidents?page=2", {"links": {"next": "https://evil.example/"}}, 1, 1)

    single = Paginator("https://api.example.com/x", compile_mapping({"next_page": {"style": "none"}}).next_page)
    assert single.next(single.first(5), {"more": True}, 5, 5) is None


def test_auth_header_values_from_the_secret():
    assert auth_header("Token token=abc") == ("Authorization", "Token token=abc")
    assert auth_header("X-Api-Key: s3cr3t") == ("X-Api-Key", "s3cr3t")
    assert auth_header("Bearer a:b") == ("Authorization", "Bearer a:b")
    assert auth_header(None) is None and auth_header("") is None


def test_params_replace_same_named_ones_and_keep_the_rest():
    assert with_params("https://h/p?offset=9&x=1", {"offset": 0, "limit": 5}) == "https://h/p?x=1&offset=0&limit=5"
    assert json.loads(json.dumps(with_params("https://h/p", {}))) == "https://h/p"
