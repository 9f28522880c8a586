"""Payload rules of the Replay Workbench: stored text, hashes, JSON Patch, the connector's schema, batching."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.errors import Conflict, PayloadTooLarge, ValidationFailed
from connector_sla.replay.payloads import (
    MAX_PAYLOAD_BYTES,
    apply_json_patch,
    check_against_schema,
    chunk_by_size,
    payload_sha256,
    payload_text,
    read_payload,
    schema_problems,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_a_stored_payload_reads_back_equal_and_hashes_the_same(payload):
    # Given any JSON value, When it is stored as text and read back, Then it is equal and its hash is unchanged
    text = payload_text(payload)
    assert read_payload(text) == payload
    assert payload_sha256(read_payload(text)) == payload_sha256(payload)


@given(st.dictionaries(st.text(max_size=6), st.integers(), min_size=2, max_size=6))
def test_the_hash_does_not_depend_on_key_order(mapping):
    # Given the same object with its keys in reverse order, Then both hash the same
    reversed_mapping = dict(reversed(list(mapping.items())))
    assert payload_sha256(reversed_mapping) == payload_sha256(mapping)


def test_the_stored_text_keeps_the_key_order_and_exact_numbers():
    payload = {"z": 1, "a": 12.50, "big": 123456789012345678901234567890}
    assert payload_text(payload) == '{"z":1,"a":12.5,"big":123456789012345678901234567890}'


def test_non_finite_numbers_are_refused_with_a_reason():
    with pytest.raises(ValidationFailed, match="not finite"):
        payload_text({"amount": float("nan")})


def test_a_payload_over_the_row_limit_is_refused_with_its_size():
    with pytest.raises(PayloadTooLarge, match=f"at most {MAX_PAYLOAD_BYTES} bytes"):
        payload_text({"blob": "x" * MAX_PAYLOAD_BYTES})


def test_a_patch_applies_in_order_without_touching_the_original():
    # Given a payload with a wrongly formatted amount
    original = {"order_id": "A-1", "amount": "12,50", "tags": ["x"]}
    kept = copy.deepcopy(original)

    # When a patch replaces it, adds a field and appends to a list
    patched = apply_json_patch(
        original,
        [
            {"op": "test", "path": "/amount", "value": "12,50"},
            {"op": "replace", "path": "/amount", "value": 12.5},
            {"op": "add", "path": "/currency", "value": "EUR"},
            {"op": "add", "path": "/tags/-", "value": "fixed"},
        ],
    )

    # Then the result has every change and the original is unchanged
    assert patched == {"order_id": "A-1", "amount": 12.5, "currency": "EUR", "tags": ["x", "fixed"]}
    assert original == kept


@pytest.mark.parametrize(
    ("operations", "index", "fragment"),
    [
        ([{"op": "remove", "path": "/missing"}], 0, "remove /missing"),
        ([{"op": "add", "path": "/a", "value": 1}, {"op": "test", "path": "/a", "value": 2}], 1, "test /a"),
        ([{"op": "frobnicate", "path": "/a"}], 0, "Unknown operation"),
        ([{"op": "add", "path": "no-slash", "value": 1}], 0, "must start with /"),
        ([{"op": "add", "path": "/a"}], 0, "value"),
        ([{"path": "/a"}], 0, "'op'"),
        ([{"op": "move", "from": "/list", "path": "/list/0"}], 0, "own children"),
    ],
)
def test_a_patch_that_does_not_apply_names_the_operation_and_changes_nothing(operations, index, fragment):
    original = {"list": [1, 2]}
    with pytest.raises(ValidationFailed, match=f"patch operation {index}") as refused:
        apply_json_patch(original, operations)
    assert fragment in refused.value.message
    assert refused.value.details[0]["field"] == f"body.patch.{index}"
    assert original == {"list": [1, 2]}


operation_strategy = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"])},
    optional={
        "path": st.sampled_from(["", "/", "/a", "/a/0", "/a/-", "/b/c", "/~1x", "/~9", 7]),
        "from": st.sampled_from(["/a", "/b", "/zz", "", 3]),
        "value": json_values,
    },
)


@given(json_values, st.lists(operation_strategy, max_size=4))
def test_any_patch_either_applies_or_is_refused_and_never_changes_the_input(payload, operations):
    # Given any payload and any list of (possibly malformed) operations
    kept = copy.deepcopy(payload)

    # When the patch is applied, Then it returns a result or a 400, nothing else, and the input is unchanged
    try:
        apply_json_patch(payload, operations)
    except ValidationFailed as refused:
        assert refused.message.startswith("patch operation")
    assert payload == kept


SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
}


def test_a_payload_the_schema_refuses_is_a_400_listing_each_problem_with_its_path():
    with pytest.raises(ValidationFailed, match="payload_schema of connector orders") as refused:
        check_against_schema({"amount": "12,50"}, SCHEMA, connector_id="orders")
    problems = {item["field"]: item["problem"] for item in refused.value.details}
    assert "'12,50' is not of type 'number'" in problems["payload/amount"]
    assert "'order_id' is a required property" in problems["payload"]


def test_a_conforming_payload_or_no_schema_passes():
    check_against_schema({"order_id": "A-1", "amount": 12.5}, SCHEMA, connector_id="orders")
    check_against_schema({"anything": True}, None, connector_id="orders")
    assert schema_problems({"order_id": "A-1", "amount": 1}, SCHEMA, connector_id="orders") == []


def test_the_schema_draft_is_taken_from_the_schema_itself():
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "dependencies": {"a": ["b"]}}
    assert schema_problems({"a": 1}, draft7, connector_id="orders")[0]["problem"] == "'b' is a dependency of 'a'"


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": 12}, "not a valid JSON Schema"),
        ({"$ref": "https://schemas.example.com/order.json"}, "cannot be resolved inside the schema"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "cannot be resolved inside the schema"),
    ],
)
def test_a_broken_or_remote_schema_is_the_connectors_problem_and_nothing_is_fetched(schema, fragment):
    # Sockets are disabled in tests: a fetch of the remote reference would fail differently.
    with pytest.raises(Conflict, match=fragment):
        check_against_schema({"a": 1}, schema, connector_id="orders")


@given(
    st.lists(st.integers(min_value=1, max_value=300), max_size=60),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=1000),
)
def test_batches_keep_every_entry_once_in_order_and_respect_both_limits(sizes, max_count, max_bytes):
    batches = chunk_by_size(sizes, max_count=max_count, max_bytes=max_bytes)
    assert [index for batch in batches for index in batch] == list(range(len(sizes)))
    for batch in batches:
        assert 1 <= len(batch) <= max_count
        assert len(batch) == 1 or sum(sizes[index] for index in batch) <= max_bytes


def test_the_message_body_is_json_with_the_payload_verbatim():
    from connector_sla.replay.rules import replay_message_body

    row = {
        "failure_id": "flr_01JEXAMPLE0000000000000000",
        "replay_key": "flr_01JEXAMPLE0000000000000000:2",
        "replay_attempts": 2,
        "connector_id": "orders",
        "source_id": "pg",
        "error_kind": "parse",
        "retry_count": 3,
        "payload_sha256": "0" * 64,
        "payload_json": '{"z":1,"a":12.50}',
    }
    body = replay_message_body(row, replay_id="rpl_01JEXAMPLE0000000000000000")
    assert json.loads(body)["payload"] == {"z": 1, "a": 12.5}
    assert body.endswith(',"payload":{"z":1,"a":12.50}}')
    assert json.loads(body)["replay_key"] == "flr_01JEXAMPLE0000000000000000:2"
