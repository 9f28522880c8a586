from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from connector_sla.outbound import OutboundFailed, OutboundRefused, check_target, send


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
        ("::127.0.0.1", "IPv4-compatible loopback"),
        ("64:ff9b::a9fe:a9fe", "NAT64 of the metadata address"),
        ("64:ff9b:1::a00:1", "local-use NAT64 of a private address"),
        ("2002:7f00:1::1", "6to4 of loopback"),
        ("2002:a9fe:a9fe::1", "6to4 of the metadata address"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_non_public_addresses_are_refused_after_resolution(address, label):
    with pytest.raises(OutboundRefused, match="non-public address"):
        check_target(
            "https://hooks.example.com/x", resolver=resolver({"hooks.example.com": [address]}), allowed_local=()
        )


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822"])
def test_public_addresses_and_nat64_of_a_public_address_are_accepted(address):
    target = check_target(
        "https://hooks.example.com/x", resolver=resolver({"hooks.example.com": [address]}), allowed_local=()
    )
    assert target.addresses == (address,)


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
        if self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):  # one byte every 50 ms: each read is quick, the whole answer takes 5 s
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
            return
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


def test_a_server_that_trickles_its_answer_is_cut_off_by_the_whole_answer_timeout(local_server):
    # Given a server whose every byte arrives within the read timeout but whose answer takes 5 s
    started = time.monotonic()

    # When the service calls it with a 0.2 s connect and 0.5 s read timeout
    with pytest.raises(OutboundFailed, match="too long"):
        send(
            "POST",
            f"http://{local_server}/trickle",
            body=b"x",
            allowed_local=(local_server,),
            connect_timeout=0.2,
            read_timeout=0.5,
        )

    # Then it gave up after about the sum of the two, not after the whole answer
    assert time.monotonic() - started < 2.0
