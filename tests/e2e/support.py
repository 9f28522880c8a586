"""What the end-to-end tests share: free loopback ports and the options of a local stack that uses them."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from devstack.stack import StackOptions


def free_port() -> int:
    """A loopback port nothing listens on (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stack_options(state_dir: Path, **overrides: Any) -> StackOptions:
    """Options of a local stack on free ports, so several stacks (and a developer's `make run`) never collide."""
    ports = {"port": free_port(), "moto_port": free_port(), "provider_port": free_port()}
    return StackOptions(**{**ports, "state_dir": state_dir, **overrides})
