from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.errors import ValidationFailed
from connector_sla.storage.dynamo import (
    Expression,
    decode_cursor,
    deserialize,
    encode_cursor,
    from_item,
    serialize,
    to_item,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_plain_values_survive_a_round_trip_through_dynamodb_attribute_values(value):
    # Given any JSON-like value, When serialized and read back, Then it is unchanged (ints stay ints)
    assert deserialize(serialize(value)) == value


def test_whole_numbers_come_back_as_int_and_fractions_as_float():
    assert deserialize({"N": "42"}) == 42
    assert isinstance(deserialize({"N": "42"}), int)
    assert deserialize({"N": "1.5"}) == 1.5


def test_none_values_are_left_out_of_items():
    item = to_item({"pk": "a", "missing": None, "count": 3})
    assert item == {"pk": {"S": "a"}, "count": {"N": "3"}}
    assert from_item(item) == {"pk": "a", "count": 3}


def test_unsupported_types_are_refused():
    with pytest.raises(TypeError, match="cannot store a object"):
        serialize(object())


def test_expression_builds_set_remove_and_add_with_placeholders():
    expr = Expression()
    update = expr.update(set_={"status": "open", "sources.primary": 3}, remove=["due_at"], add={"count": 1})
    assert update == "SET #n0 = :v0, #n1.#n2 = :v1 REMOVE #n3 ADD #n4 :v2"
    assert expr.params()["ExpressionAttributeNames"] == {
        "#n0": "status",
        "#n1": "sources",
        "#n2": "primary",
        "#n3": "due_at",
        "#n4": "count",
    }


def test_expression_reuses_the_placeholder_of_a_name_it_already_has():
    expr = Expression()
    assert expr.name("status") == expr.name("status")


def test_cursors_round_trip_and_foreign_cursors_are_refused():
    key = {"pk": "c-1", "sk": "STATE"}
    cursor = encode_cursor(key)
    assert decode_cursor(cursor, expected_keys={"pk", "sk"}) == key
    assert encode_cursor(None) is None
    with pytest.raises(ValidationFailed, match="cursor is not valid"):
        decode_cursor("not-base64-json!!", expected_keys={"pk", "sk"})
    with pytest.raises(ValidationFailed, match="not valid for this list"):
        decode_cursor(encode_cursor({"other": 1}), expected_keys={"pk", "sk"})
