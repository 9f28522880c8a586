"""Boot the whole local stack, as `make run` does, and talk to it over HTTP."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from devstack.stack import LocalStack, PortInUse, StackOptions

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = StackOptions(
        port=free_port(),
        moto_port=free_port(),
        provider_port=free_port(),
        speed=60,
        state_dir=tmp_path_factory.mktemp("devstack"),
    )
    local = LocalStack(options, log=lambda _: None)
    started = time.monotonic()
    local.start()
    local.startup_seconds = local.wait_until_ready() + (time.monotonic() - started)
    yield local
    local.stop()


def get_json(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_the_overview_is_served_as_json_soon_after_start(stack):
    status, body = get_json(f"{stack.api_url}/events/connectors/overview")
    assert status == 200
    assert isinstance(body["items"], list)
    assert stack.startup_seconds < 30


def test_schedules_fire_on_the_fast_clock(stack):
    fired = stack.scheduler.fired
    time.sleep(2.5)
    assert stack.scheduler.fired > fired


def test_a_port_in_use_is_named_with_the_option_that_changes_it(stack):
    options = StackOptions(port=stack.options.port, moto_port=free_port(), provider_port=free_port())
    with pytest.raises(PortInUse, match=rf"port {stack.options.port} .* --port"):
        LocalStack(options, log=lambda _: None).start()
