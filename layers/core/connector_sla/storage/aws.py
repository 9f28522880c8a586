"""boto3 clients, created once per process and reused across warm invocations."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Short timeouts and bounded standard retries: a handler should fail fast and let its trigger retry.
_DEFAULT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
    tcp_keepalive=True,
)


@cache
def client(service: str) -> Any:
    """The shared client for ``service`` (``dynamodb``, ``events``, ``s3``...), honouring ``AWS_ENDPOINT_URL``."""
    return boto3.client(service, config=_DEFAULT_CONFIG)
