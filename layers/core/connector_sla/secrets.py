"""Provider secrets from Secrets Manager or SSM, through Powertools parameters (cached for five minutes).

A provider's secret is a JSON document at ``<PROVIDER_SECRETS_PATH>/<provider>``: ``signing_secret`` (or the list
``signing_secrets``, any of which verifies a callback while a rotation is under way; the first signs outbound
calls), ``routing_key`` (PagerDuty Events API v2) and ``api_auth_header`` (the reconcile job's fetches).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from connector_sla.config import settings

CACHE_SECONDS = 300


class SecretUnavailable(Exception):
    """The provider's secret is missing or malformed; the message names it, never its value."""


@dataclass(frozen=True)
class ProviderSecret:
    provider: str
    signing_secrets: tuple[str, ...]
    routing_key: str | None = None
    api_auth_header: str | None = None

    @property
    def outbound_signing_secret(self) -> str | None:
        return self.signing_secrets[0] if self.signing_secrets else None


class ProviderSecrets:
    """Reads provider secrets from the configured store."""

    def __init__(self, client: Any, *, store: str | None = None, path: str | None = None) -> None:
        config = settings()
        self.store = store or config.secrets_store
        self.path = (path or config.provider_secrets_path).strip("/")
        if self.store == "ssm":
            self._provider: Any = SSMProvider(boto3_client=client)
        else:
            self._provider = SecretsProvider(boto3_client=client)

    def name(self, provider: str) -> str:
        return f"/{self.path}/{provider}" if self.store == "ssm" else f"{self.path}/{provider}"

    def get(self, provider: str, *, refresh: bool = False) -> ProviderSecret:
        """The provider's secret document; raises :class:`SecretUnavailable` when it cannot be read or parsed."""
        name = self.name(provider)
        try:
            if self.store == "ssm":
                raw = self._provider.get(name, max_age=CACHE_SECONDS, decrypt=True, force_fetch=refresh)
            else:
                raw = self._provider.get(name, max_age=CACHE_SECONDS, force_fetch=refresh)
        except GetParameterError as error:
            raise SecretUnavailable(f"secret {name} cannot be read") from error
        try:
            document = json.loads(raw)
        except (TypeError, ValueError) as error:
            raise SecretUnavailable(f"secret {name} is not a JSON document") from error
        if not isinstance(document, dict):
            raise SecretUnavailable(f"secret {name} is not a JSON object")
        single = [document["signing_secret"]] if "signing_secret" in document else []
        secrets = document.get("signing_secrets") or single
        if not isinstance(secrets, list) or not all(isinstance(value, str) and value for value in secrets):
            raise SecretUnavailable(f"secret {name}: signing_secrets must be a list of non-empty strings")
        return ProviderSecret(
            provider=provider,
            signing_secrets=tuple(secrets),
            routing_key=document.get("routing_key"),
            api_auth_header=document.get("api_auth_header"),
        )
