from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Fake credentials before anything imports boto3; no test may reach AWS.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="ConnectorSlaTest",
    POWERTOOLS_SERVICE_NAME="connector-sla",
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

from tests.support import Aws, moto_stack


@pytest.fixture
def aws() -> Iterator[Aws]:
    """moto with every resource of template.yaml, and the functions' environment applied."""
    with moto_stack() as stack:
        yield stack
