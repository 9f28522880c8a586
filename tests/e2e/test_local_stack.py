"""Boot the whole local stack, as `make run` does, and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import to_iso, utcnow
from devstack.stack import LocalStack, PortInUse, StackOptions
from tests.e2e.support import free_port, stack_options
from tests.support import ROOT, unacked_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = stack_options(tmp_path_factory.mktemp("devstack"), speed=60)
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


def readme_block_containing(marker: str) -> str:
    """The README's fenced code block that contains ``marker`` (so the test runs what the README says)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    [block] = [block for block in blocks if marker in block]
    return textwrap.dedent(block)


def test_the_readmes_signed_callback_recipe_acknowledges_the_page(stack):
    # Given an unacked on-call page of an open incident
    notification_id = "ntf_01README" + "0" * 16
    notifications = Table(stack.template.attribute("NotificationsTable", "Ref"), stack.client("dynamodb"))
    notifications.put(
        unacked_page(notification_id, incident_id="inc_01README", connector_id="orders-readme", at=to_iso(utcnow()))
    )

    # When the README's recipe (secret, openssl HMAC, curl) runs as written, against this stack's ports
    script = readme_block_containing("X-Callback-Signature: sha256=$SIG")
    script = script.replace(".venv/bin/python", sys.executable)
    script = script.replace("devstack.secret generic", f"devstack.secret generic --moto-port {stack.options.moto_port}")
    env = {**os.environ, "API": stack.api_url, "NOTIFICATION": notification_id}
    command = ["bash", "-euo", "pipefail", "-c", script]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)

    # Then the callback was verified and applied, and runbook steps 5 and 6 hold
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert (answer["result"], answer["ack_applied"], answer["ack_state"]) == ("recorded", True, "acknowledged")
    _, unacked = get_json(f"{stack.api_url}/alerts/notifications?only_unacked=true&connector_id=orders-readme")
    assert unacked["items"] == []
    _, history = get_json(f"{stack.api_url}/alerts/oncall/events?incident_id=inc_01README")
    assert [(item["status"], item["signature"]) for item in history["items"]] == [("acknowledged", "verified")]


def start_cli(tmp_path, *extra: str, **chosen: int) -> tuple[subprocess.Popen, dict[str, int]]:
    ports = {"--port": free_port(), "--moto-port": free_port(), "--provider-port": free_port()}
    ports.update({f"--{name.replace('_', '-')}": port for name, port in chosen.items()})
    command = [sys.executable, "-m", "devstack", "--state-dir", str(tmp_path), *extra]
    for option, port in ports.items():
        command += [option, str(port)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, ports


def test_the_command_line_stack_serves_then_stops_cleanly_on_ctrl_c(tmp_path):
    # Given `python -m devstack` (what `make run` runs) started on free ports
    process, ports = start_cli(tmp_path, "--speed", "30")
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if " ready " in line:
                break
        status, _ = get_json(f"http://127.0.0.1:{ports['--port']}/events/connectors/overview")
        assert status == 200

        # When Ctrl-C reaches it
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    # Then it stopped everything and exited 0, and its ports are free again
    assert process.returncode == 0, err[-2000:]
    assert out.rstrip().splitlines()[-1].endswith("stopped")
    for port in ports.values():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def test_the_command_line_names_a_busy_port_in_one_line_and_starts_nothing(tmp_path):
    # Given the API port already taken by someone else
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        process, _ = start_cli(tmp_path, port=busy)
        out, err = process.communicate(timeout=60)

    # Then it exits 2 with one line that names the port and the option that changes it
    assert process.returncode == 2
    assert err.strip().splitlines() == [
        f"error: port {busy} on 127.0.0.1 is already in use; choose another with --port N"
    ]
    assert out == ""
