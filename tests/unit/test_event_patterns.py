from __future__ import annotations

import pytest

from devstack.patterns import PatternError, matches

STATE_FILTER = {"dynamodb": {"Keys": {"sk": {"S": ["STATE"]}}}}


def record(sk: str) -> dict:
    return {"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "c1"}, "sk": {"S": sk}}}}


def test_the_state_filter_keeps_state_rows_and_drops_the_others():
    assert matches(STATE_FILTER, record("STATE"))
    assert not matches(STATE_FILTER, record("PROGRESS"))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"eventName": [{"prefix": "MOD"}]}, True),
        ({"eventName": [{"anything-but": ["MODIFY"]}]}, False),
        ({"missing": [{"exists": False}]}, True),
        ({"eventName": [{"exists": True}]}, True),
        ({"eventName": ["INSERT", "MODIFY"]}, True),
    ],
)
def test_content_filters(pattern, expected):
    assert matches(pattern, record("STATE")) is expected


def test_unsupported_operators_fail_loudly():
    with pytest.raises(PatternError):
        matches({"eventName": [{"cidr": "10.0.0.0/8"}]}, record("STATE"))
