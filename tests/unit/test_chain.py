from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.evidence.chain import (
    GENESIS_HASH,
    ChainHead,
    ChainVerifier,
    SqliteChainState,
    record_hash,
    seal,
)


def build_chain(chain_id: str, count: int) -> list[dict]:
    head = ChainHead()
    records = []
    for index in range(count):
        record = head.next({"event": f"e{index}", "n": index}, chain_id)
        head = ChainHead(record["chain_seq"], record["record_hash"])
        records.append(record)
    return records


def test_a_sealed_chain_verifies_record_by_record():
    records = build_chain("transitions:c1", 5)
    verifier = ChainVerifier()
    assert [verifier.check(record, f"r{i}") for i, record in enumerate(records)] == [None] * 5
    assert records[0]["prev_hash"] == GENESIS_HASH
    assert records[1]["prev_hash"] == records[0]["record_hash"]


def test_an_altered_record_is_named():
    # Given a chain whose third record was changed after sealing
    records = build_chain("c", 4)
    records[2] = {**records[2], "event": "forged"}
    # When verified, Then the problem names that record and says it was altered
    verifier = ChainVerifier()
    problems = [verifier.check(record, f"line {i + 1}") for i, record in enumerate(records)]
    first = next(problem for problem in problems if problem)
    assert first.location == "line 3"
    assert "altered" in first.reason


def test_a_missing_record_breaks_the_link():
    records = build_chain("c", 4)
    del records[1]
    verifier = ChainVerifier()
    problems = [verifier.check(record, f"r{i}") for i, record in enumerate(records)]
    assert problems[0] is None
    assert problems[1] is not None and "expected chain_seq 2" in problems[1].reason


def test_a_recomputed_hash_after_editing_still_breaks_the_next_link():
    # Given an attacker who edits a record and recomputes its own hash
    records = build_chain("c", 3)
    forged = {**records[1], "event": "forged"}
    forged["record_hash"] = record_hash(forged)
    records[1] = forged
    verifier = ChainVerifier()
    problems = [verifier.check(record, f"r{i}") for i, record in enumerate(records)]
    # Then the following record no longer links to it
    assert problems[1] is None
    assert problems[2] is not None and "prev_hash" in problems[2].reason


def test_a_time_range_cut_from_a_longer_chain_is_anchored_on_its_first_record():
    records = build_chain("c", 6)[3:]
    verifier = ChainVerifier()
    assert all(verifier.check(record, "x") is None for record in records)
    assert verifier.anchored == {"c": 4}


def test_floats_are_refused_because_they_do_not_hash_stably():
    with pytest.raises(TypeError, match="float"):
        seal({"lag": 1.5}, chain_id="c", seq=1, prev_hash=GENESIS_HASH)


def test_unsealed_operational_fields_do_not_change_the_hash():
    record = seal({"a": 1}, chain_id="c", seq=1, prev_hash=GENESIS_HASH)
    assert record_hash({**record, "event_pending": "1"}) == record["record_hash"]


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=30))
def test_interleaved_chains_verify_with_sqlite_state(order):
    # Given several chains whose records interleave in any order
    heads = {name: ChainHead() for name in "abc"}
    records = []
    for name in order:
        record = heads[name].next({"x": len(records)}, name)
        heads[name] = ChainHead(record["chain_seq"], record["record_hash"])
        records.append(record)
    # Then they verify with chain heads kept in SQLite
    state = SqliteChainState()
    verifier = ChainVerifier(state)
    assert all(verifier.check(record, "x") is None for record in records)
    assert len(state) == len(set(order))
    state.close()
