"""Chains: the environment's default, the lookup order, storage round trips and the validation rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from connector_sla.config import Settings
from connector_sla.escalation.chains import (
    Chain,
    ChainLevel,
    ChainTarget,
    chain_problems,
    environment_chain,
    lookup_order,
    pick_chain,
    scope_problem,
    url_problem,
)
from connector_sla.escalation.maintenance import MaintenanceWindow, covering_window, window_problems
from connector_sla.timeutil import to_iso

SETTINGS = Settings(
    oncall_provider="generic",
    risk_owner_email="risk@example.com",
    platform_owner_email="platform@example.com",
    duty_manager_email="dm@example.com",
    bridge_webhook_url="https://bridge.example.com/open",
)


def valid_levels():
    return environment_chain(SETTINGS).levels


def test_the_environment_chain_follows_the_runbook_and_is_valid():
    chain = environment_chain(SETTINGS)
    assert [(level.level, [t.channel for t in level.targets]) for level in chain.levels] == [
        ("L1", ["oncall"]),
        ("L2", ["email", "email"]),
        ("L3", ["email", "bridge"]),
    ]
    assert chain_problems(chain.levels) == []


def test_an_environment_without_a_bridge_url_leaves_the_bridge_out():
    chain = environment_chain(SETTINGS._replace(bridge_webhook_url=""))
    assert [t.channel for t in chain.level("L3").targets] == ["email"]


def test_the_connector_chain_wins_over_the_team_chain_over_the_default():
    fallback = environment_chain(SETTINGS)
    stored = {
        "team#payments-data": fallback._replace(scope="team", scope_id="payments-data"),
        "default": fallback._replace(scope="default"),
        "connector#orders-db": fallback._replace(scope="connector", scope_id="orders-db"),
    }
    assert lookup_order("orders-db", "payments-data") == ["connector#orders-db", "team#payments-data", "default"]
    assert pick_chain(stored, "orders-db", "payments-data", fallback).scope == "connector"
    assert pick_chain(stored, "users-db", "payments-data", fallback).scope == "team"
    assert pick_chain(stored, "users-db", None, fallback).scope == "default"
    assert pick_chain({}, "users-db", None, fallback) is fallback


@given(
    timeouts=st.lists(st.integers(min_value=60, max_value=86_400), min_size=3, max_size=3),
    eta=st.integers(min_value=60, max_value=86_400),
    names=st.lists(st.text(max_size=20), min_size=3, max_size=3),
)
def test_a_valid_chain_survives_storage_unchanged(timeouts, eta, names):
    levels = tuple(
        ChainLevel(
            level.level,
            tuple(ChainTarget(t.channel, t.target, name) for t in level.targets),
            timeout,
            eta if level.level == "L3" else None,
            duty=level.duty,
        )
        for level, timeout, name in zip(valid_levels(), timeouts, names, strict=True)
    )
    chain = Chain(levels, "team", "payments-data", "stored", "2026-12-03T19:22:00.000Z", "me")
    assert chain_problems(levels) == []
    assert Chain.from_item(chain.to_item()) == chain


def test_every_problem_is_named():
    l1, l2, l3 = valid_levels()
    bad = (
        l1._replace(ack_timeout_seconds=10, eta_required_within_seconds=300),
        l2._replace(targets=(ChainTarget("email", "nope"), ChainTarget("email", "nope"))),
        l3._replace(targets=(), eta_required_within_seconds=None),
    )
    problems = chain_problems(bad)
    expected = [
        "level L1: ack_timeout_seconds must be between 60 and 86400",
        "level L1: eta_required_within_seconds applies to L3 only",
        "level L2 names email target 'nope' twice",
        "level L2: 'nope' is not an email address",
        "level L3 has no targets",
        "level L3: eta_required_within_seconds is required",
    ]
    for text in expected:
        assert any(text in problem for problem in problems), (text, problems)


def test_levels_must_be_l1_l2_l3_in_order():
    l1, l2, l3 = valid_levels()
    assert "in this order" in chain_problems((l2, l1, l3))[0]
    assert "in this order" in chain_problems((l1, l2))[0]


def test_bridge_urls_must_be_https_to_a_public_host_unless_allowed_locally():
    assert url_problem("https://bridge.example.com/open") is None
    assert "only HTTPS" in url_problem("http://bridge.example.com/open")
    assert "non-public" in url_problem("https://192.168.1.4/open")
    assert "non-public" in url_problem("https://[::1]/open")
    assert "credentials" in url_problem("https://user:pw@bridge.example.com/")
    assert url_problem("http://127.0.0.1:3020/bridge", allowed_local=["127.0.0.1:3020"]) is None


def test_scopes():
    assert scope_problem("default", "default") is None
    assert scope_problem("connector", "orders-db") is None
    assert "one of" in scope_problem("region", "eu")
    assert "default/default" in scope_problem("default", "x")
    assert "must match" in scope_problem("team", "Payments Data")


NOW = datetime(2026, 12, 3, 19, 22, tzinfo=UTC)


def window(scope, scope_id, start_minutes, end_minutes):
    return MaintenanceWindow(
        f"mnt_{scope_id}_{end_minutes}",
        scope,
        scope_id,
        to_iso(NOW + timedelta(minutes=start_minutes)),
        to_iso(NOW + timedelta(minutes=end_minutes)),
        "upgrade",
        to_iso(NOW),
        "me",
    )


def test_a_window_covers_its_connector_or_team_between_its_start_and_end():
    windows = [window("team", "payments-data", -10, 30), window("connector", "orders-db", -5, 60)]
    assert covering_window(windows, "orders-db", "payments-data", NOW).ends_at == windows[1].ends_at
    assert covering_window(windows, "users-db", "payments-data", NOW) is windows[0]
    assert covering_window(windows, "users-db", "growth", NOW) is None
    assert covering_window([window("team", "payments-data", 5, 30)], "x", "payments-data", NOW) is None
    assert covering_window([window("team", "payments-data", -30, 0)], "x", "payments-data", NOW) is None


def test_window_rules():
    assert window_problems(NOW, NOW + timedelta(hours=1), NOW) == []
    assert "after starts_at" in window_problems(NOW, NOW - timedelta(hours=1), NOW)[0]
    assert "at most 14 days" in window_problems(NOW, NOW + timedelta(days=15), NOW)[0]
    assert "within 90 days" in window_problems(NOW + timedelta(days=100), NOW + timedelta(days=101), NOW)[0]
