"""Escalation chains: who hears about an incident at each level, through which channel, and how long they have.

A chain has the three levels ``L1``, ``L2`` and ``L3``, each with its targets (``oncall`` provider, ``email``
address or ``bridge`` webhook URL) and its ack timeout; ``L3`` also says how soon a recovery ETA is required.
Chains are stored in SettingsTable (``pk = CHAIN``, ``sk = default | connector#<id> | team#<team>``); the
connector's chain wins over its team's, which wins over the saved default, which wins over the deployment's
default built from the environment. NamedTuples: the stream consumer reads them on its cold path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from connector_sla.alerts.records import CHANNELS, LEVELS
from connector_sla.config import Settings

CHAIN_PK = "CHAIN"
SCOPES = ("default", "connector", "team")
MIN_TIMEOUT_SECONDS = 60
MAX_TIMEOUT_SECONDS = 86_400
MAX_TARGETS_PER_LEVEL = 10

DEFAULT_ACK_TIMEOUTS = {"L1": 900, "L2": 1800, "L3": 1800}
DEFAULT_ETA_REQUIRED_WITHIN = 900

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_SCOPE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")

LEVEL_DUTIES = {
    "L1": "confirm the connector's status and start diagnosis",
    "L2": "critical repeat: assess the business and data platform impact",
    "L3": "escalated stage: open the bridge and commit to a recovery ETA",
}


class ChainTarget(NamedTuple):
    channel: str
    target: str
    name: str = ""

    def label(self) -> str:
        return self.name or self.target


class ChainLevel(NamedTuple):
    level: str
    targets: tuple[ChainTarget, ...]
    ack_timeout_seconds: int
    eta_required_within_seconds: int | None = None
    duty: str = ""


class Chain(NamedTuple):
    levels: tuple[ChainLevel, ...]
    scope: str = "default"
    scope_id: str = "default"
    source: str = "environment"  # where it came from: "environment" or "stored"
    updated_at: str | None = None
    updated_by: str | None = None

    def level(self, name: str) -> ChainLevel | None:
        return next((level for level in self.levels if level.level == name), None)

    def to_item(self) -> dict[str, Any]:
        return {
            "pk": CHAIN_PK,
            "sk": chain_key(self.scope, self.scope_id),
            "scope": self.scope,
            "scope_id": self.scope_id,
            "levels": [_level_to_item(level) for level in self.levels],
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Chain:
        return cls(
            levels=tuple(_level_from_item(level) for level in item.get("levels") or []),
            scope=str(item["scope"]),
            scope_id=str(item["scope_id"]),
            source="stored",
            updated_at=item.get("updated_at"),
            updated_by=item.get("updated_by"),
        )


def chain_key(scope: str, scope_id: str) -> str:
    """The SettingsTable sort key of a chain scope."""
    return "default" if scope == "default" else f"{scope}#{scope_id}"


def lookup_order(connector_id: str, owner_team: str | None) -> list[str]:
    """The chain keys that apply to a connector, the most specific first."""
    keys = [chain_key("connector", connector_id)]
    if owner_team:
        keys.append(chain_key("team", owner_team))
    keys.append(chain_key("default", "default"))
    return keys


def pick_chain(stored: Mapping[str, Chain], connector_id: str, owner_team: str | None, fallback: Chain) -> Chain:
    """The chain that applies to a connector among the stored chains, else ``fallback`` (the environment's)."""
    for key in lookup_order(connector_id, owner_team):
        if key in stored:
            return stored[key]
    return fallback


def environment_chain(config: Settings) -> Chain:
    """The deployment's default chain: L1 pages the on-call provider, L2 emails the risk and data platform owners,
    L3 emails the duty manager and opens the bridge. Empty addresses are left out."""
    l1 = [ChainTarget("oncall", config.oncall_provider, "on-call IM group")] if config.oncall_provider else []
    l2 = [
        ChainTarget("email", address, name)
        for address, name in (
            (config.risk_owner_email, "risk owner"),
            (config.platform_owner_email, "data platform owner"),
        )
        if address
    ]
    l3 = [ChainTarget("email", config.duty_manager_email, "duty manager")] if config.duty_manager_email else []
    if config.bridge_webhook_url:
        l3.append(ChainTarget("bridge", config.bridge_webhook_url, "duty manager bridge"))
    return Chain(
        levels=(
            ChainLevel("L1", tuple(l1), DEFAULT_ACK_TIMEOUTS["L1"], duty=LEVEL_DUTIES["L1"]),
            ChainLevel("L2", tuple(l2), DEFAULT_ACK_TIMEOUTS["L2"], duty=LEVEL_DUTIES["L2"]),
            ChainLevel(
                "L3", tuple(l3), DEFAULT_ACK_TIMEOUTS["L3"], DEFAULT_ETA_REQUIRED_WITHIN, duty=LEVEL_DUTIES["L3"]
            ),
        )
    )


# ---------------------------------------------------------------------------------------------- validation


def scope_problem(scope: str, scope_id: str) -> str | None:
    """Why a chain scope is not valid, or ``None``."""
    if scope not in SCOPES:
        return f"scope must be one of {', '.join(SCOPES)}; got {scope!r}"
    if scope == "default" and scope_id != "default":
        return "the default chain's scope id is 'default': use /alerts/chains/default/default"
    if scope != "default" and not _SCOPE_ID.fullmatch(scope_id):
        return f"{scope} id must match {_SCOPE_ID.pattern} (lower-case letters, digits, '.', '_', '-')"
    return None


def target_problem(target: ChainTarget, *, allowed_local: Iterable[str] = ()) -> str | None:
    """Why one target cannot be delivered to, judged from its text alone (providers are checked by the store)."""
    if target.channel == "email":
        return None if _EMAIL.fullmatch(target.target) else f"{target.target!r} is not an email address"
    if target.channel == "oncall":
        if _PROVIDER.fullmatch(target.target):
            return None
        return f"on-call provider name {target.target!r} must match {_PROVIDER.pattern}"
    if target.channel == "bridge":
        return url_problem(target.target, allowed_local=allowed_local)
    return f"channel must be one of {', '.join(CHANNELS)}; got {target.channel!r}"


def url_problem(url: str, *, allowed_local: Iterable[str] = ()) -> str | None:
    """Why a webhook URL would be refused at send time, as far as can be told without resolving it."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"{url!r} has an invalid port"
    if not host:
        return f"{url!r} has no host; expected https://host/path"
    if parts.username or parts.password:
        return f"{url!r} carries credentials; keep secrets out of URLs"
    if f"{host}:{port}" in set(allowed_local) and parts.scheme in ("http", "https"):
        return None
    if parts.scheme != "https":
        return f"{url!r} is not https://; only HTTPS webhooks are allowed"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if not address.is_global:
        return f"{url!r} points at a non-public address; loopback, private and link-local targets are refused"
    return None


def chain_problems(levels: Sequence[ChainLevel], *, allowed_local: Iterable[str] = ()) -> list[str]:
    """Every reason the chain cannot be used, each saying what is expected; empty when it is valid."""
    problems: list[str] = []
    names = [level.level for level in levels]
    if names != list(LEVELS):
        problems.append(f"levels must be L1, L2 and L3, in this order, each once; got {names}")
    for level in levels:
        where = f"level {level.level}"
        if not level.targets:
            problems.append(f"{where} has no targets; give it at least one")
        if len(level.targets) > MAX_TARGETS_PER_LEVEL:
            problems.append(f"{where} has {len(level.targets)} targets; at most {MAX_TARGETS_PER_LEVEL} are allowed")
        seen: set[tuple[str, str]] = set()
        for target in level.targets:
            key = (target.channel, target.target)
            if key in seen:
                problems.append(f"{where} names {target.channel} target {target.target!r} twice")
            seen.add(key)
            problem = target_problem(target, allowed_local=allowed_local)
            if problem:
                problems.append(f"{where}: {problem}")
        if not MIN_TIMEOUT_SECONDS <= level.ack_timeout_seconds <= MAX_TIMEOUT_SECONDS:
            problems.append(
                f"{where}: ack_timeout_seconds must be between {MIN_TIMEOUT_SECONDS} and {MAX_TIMEOUT_SECONDS}"
            )
        eta = level.eta_required_within_seconds
        if level.level != "L3" and eta is not None:
            problems.append(f"{where}: eta_required_within_seconds applies to L3 only")
        if level.level == "L3" and (eta is None or not MIN_TIMEOUT_SECONDS <= eta <= MAX_TIMEOUT_SECONDS):
            problems.append(
                f"{where}: eta_required_within_seconds is required, between {MIN_TIMEOUT_SECONDS} and "
                f"{MAX_TIMEOUT_SECONDS}"
            )
    return problems


def oncall_providers(levels: Iterable[ChainLevel]) -> set[str]:
    """The on-call provider names a chain pages."""
    return {target.target for level in levels for target in level.targets if target.channel == "oncall"}


def _level_to_item(level: ChainLevel) -> dict[str, Any]:
    item: dict[str, Any] = {
        "level": level.level,
        "targets": [{"channel": t.channel, "target": t.target, "name": t.name} for t in level.targets],
        "ack_timeout_seconds": level.ack_timeout_seconds,
        "duty": level.duty,
    }
    if level.eta_required_within_seconds is not None:
        item["eta_required_within_seconds"] = level.eta_required_within_seconds
    return item


def _level_from_item(item: Mapping[str, Any]) -> ChainLevel:
    return ChainLevel(
        level=str(item["level"]),
        targets=tuple(
            ChainTarget(str(t["channel"]), str(t["target"]), str(t.get("name") or "")) for t in item["targets"]
        ),
        ack_timeout_seconds=int(item["ack_timeout_seconds"]),
        eta_required_within_seconds=(
            int(item["eta_required_within_seconds"]) if item.get("eta_required_within_seconds") is not None else None
        ),
        duty=str(item.get("duty") or LEVEL_DUTIES.get(str(item["level"]), "")),
    )
