from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from connector_sla.outbound import OutboundRefused, check_target, send


def resolver(mapping):
    return lambda host, port: mapping[host]


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("::1", "IPv6 loopback"),
        ("fd00:ec2::254", "IPv6 metadata"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_non_public_addresses_are_refused_after_resolution(address, label):
    with pytest.raises(OutboundRefused, match="non-public address"):
        check_target(
            "https://hooks.example.com/x", resolver=resolver({"hooks.example.com": [address]}), allowed_local=()
        )


def test_one_bad_address_among_good_ones_is_enough_to_refuse():
    mixed = resolver({"hooks.example.com": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(OutboundRefused):
        check_target("https://hooks.example.com/x", resolver=mixed, allowed_local=())


def test_public_https_targets_are_accepted_and_pinned_to_their_addresses():
    target = check_target(
        "https://hooks.example.com/v1/alerts?x=1",
        resolver=resolver({"hooks.example.com": ["93.184.216.34"]}),
        allowed_local=(),
    )
    assert (target.host, target.port, target.path, target.addresses) == (
        "hooks.example.com",
        443,
        "/v1/alerts?x=1",
        ("93.184.216.34",),
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/x", "only https"),
        ("file:///etc/passwd", "has no host"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https:///x", "has no host"),
    ],
)
def test_malformed_or_insecure_urls_are_refused(url, message):
    with pytest.raises(OutboundRefused, match=message):
        check_target(url, resolver=resolver({"hooks.example.com": ["93.184.216.34"]}), allowed_local=())


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        self.send_response(302 if self.path == "/redirect" else 202)
        if self.path == "/redirect":
            self.send_header("Location", "http://10.0.0.1/internal")
        self.end_headers()
        self.wfile.write(b"echo:" + body)

    def log_message(self, *_):
        pass


@pytest.fixture
def local_server():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_explicitly_allowed_local_target_is_reachable_over_http(local_server):
    response = send("POST", f"http://{local_server}/hook", body=b"hi", allowed_local=(local_server,))
    assert response.status == 202 and response.body == b"echo:hi"


def test_the_same_local_target_is_refused_when_not_allowed(local_server):
    with pytest.raises(OutboundRefused):
        send("POST", f"http://{local_server}/hook", body=b"hi", allowed_local=())


def test_redirects_are_checked_again_at_every_hop(local_server):
    with pytest.raises(OutboundRefused, match="only https"):
        send("POST", f"http://{local_server}/redirect", body=b"x", allowed_local=(local_server,), follow_redirects=2)
