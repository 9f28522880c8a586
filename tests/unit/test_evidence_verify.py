"""The chain verifier (any record order, SQLite state) and the offline bundle verifier, its CLI and exit codes."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.evidence import bundle, chain, verify
from connector_sla.evidence.bundle import EVIDENCE_FILES, BundleWriter
from connector_sla.evidence.chain import GENESIS_HASH, ChainHead, record_hash
from connector_sla.evidence.verify import LinkVerifier, content_problem, main, verify_bundle

EVIDENCE_DIR = Path(verify.__file__).parent
NOW = datetime(2026, 12, 3, 19, 22, tzinfo=UTC)


def sealed_chain(chain_id: str, count: int, **extra) -> list[dict]:
    head = ChainHead()
    records = []
    for index in range(count):
        record = head.next({"transition_id": f"trn_{chain_id}_{index + 1}", "n": index, **extra}, chain_id)
        head = ChainHead(record["chain_seq"], record["record_hash"])
        records.append(record)
    return records


def check_all(records: list[dict], file: str = "transitions.jsonl") -> verify.ChainReport:
    verifier = LinkVerifier()
    for line, record in enumerate(records, start=1):
        verifier.check(record, file=file, line=line, record_id=str(record.get("transition_id", "")))
    report = verifier.finish()
    verifier.close()
    return report


# ------------------------------------------------------------------------------------------------ chain checks


@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_intact_chains_verify_in_any_order(order, rnd):
    # Given interleaved chains, delivered in any order (time order and chain order may differ)
    heads = {name: ChainHead() for name in "abc"}
    records = []
    for name in order:
        record = heads[name].next({"x": len(records)}, name)
        heads[name] = ChainHead(record["chain_seq"], record["record_hash"])
        records.append(record)
    rnd.shuffle(records)
    # When checked, Then every chain verifies and starts at the genesis
    report = check_all(records)
    assert report.verified
    assert report.chains == len(set(order))
    assert report.chains_before_range == 0
    assert report.records == len(records)


@given(st.integers(min_value=2, max_value=8), st.integers(min_value=0, max_value=7))
def test_a_range_cut_out_of_a_longer_chain_is_anchored_on_its_first_record(length, cut):
    # Given the tail of a chain (the records before the range are not in the bundle)
    records = sealed_chain("c", length)[min(cut, length - 1) :]
    # Then it verifies, and counts as starting before the range when it does not start at position 1
    report = check_all(records)
    assert report.verified
    assert report.chains_before_range == (1 if records[0]["chain_seq"] > 1 else 0)


def test_an_altered_record_is_named_with_its_file_line_and_id():
    # Given a chain whose third record was edited after sealing
    records = sealed_chain("transitions:orders", 5)
    records[2] = {**records[2], "n": 99}
    # When verified, Then the third record is the first that does not verify, and only it
    report = check_all(records)
    assert not report.verified
    assert report.problems == 1
    problem = report.first_problem
    assert (problem.file, problem.line, problem.record_id) == ("transitions.jsonl", 3, "trn_transitions:orders_3")
    assert problem.chain_seq == 3
    assert "record altered" in problem.reason
    assert "transitions.jsonl line 3 (trn_transitions:orders_3)" in str(problem)


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link():
    # Given an attacker who edits a record and recomputes its own record_hash
    records = sealed_chain("c", 4)
    forged = {**records[1], "n": 42}
    forged["record_hash"] = record_hash(forged)
    records[1] = forged
    # Then the record after it no longer links to it
    report = check_all(records)
    assert report.first_problem.line == 3
    assert "prev_hash does not match the record_hash of chain_seq 2" in report.first_problem.reason


def test_a_deleted_record_is_reported_at_its_successor():
    records = sealed_chain("c", 5)
    del records[2]
    report = check_all(records)
    assert report.first_problem.chain_seq == 4
    assert "chain_seq 3 is missing" in report.first_problem.reason


def test_a_duplicated_record_is_reported():
    records = sealed_chain("c", 3)
    records.append(dict(records[1]))
    report = check_all(records)
    assert report.first_problem.line == 4
    assert "appears twice" in report.first_problem.reason


def test_a_first_record_that_does_not_follow_the_genesis_hash_is_reported():
    record = chain.seal({"x": 1}, chain_id="c", seq=1, prev_hash="f" * 64)
    assert content_problem(record) == "first record of the chain must follow the genesis hash"
    assert not check_all([record]).verified


def test_an_unsealed_record_is_reported():
    assert "not a sealed record" in content_problem({"x": 1})
    assert "not a sealed record" in content_problem({"chain_id": "c", "chain_seq": 1})


def test_the_first_problem_is_the_earliest_in_bundle_order():
    # Given problems in two files, reported out of order
    deliveries = sealed_chain("deliveries:n1", 2)
    deliveries[1] = {**deliveries[1], "n": 7}
    transitions = sealed_chain("transitions:c", 3)
    transitions[2] = {**transitions[2], "n": 7}
    verifier = LinkVerifier()
    verifier.check(deliveries[0], file="deliveries.jsonl", line=1)
    verifier.check(deliveries[1], file="deliveries.jsonl", line=2)
    for line, record in enumerate(transitions, start=1):
        verifier.check(record, file="transitions.jsonl", line=line)
    report = verifier.finish()
    # Then the transitions file (first in the bundle) holds the first problem
    assert report.problems == 2
    assert (report.first_problem.file, report.first_problem.line) == ("transitions.jsonl", 3)


def test_chain_state_on_disk_keeps_working(tmp_path):
    records = sealed_chain("c", 50)
    verifier = LinkVerifier(str(tmp_path / "chains.sqlite"))
    for line, record in enumerate(reversed(records), start=1):
        verifier.check(record, file="transitions.jsonl", line=line)
    assert verifier.finish().verified
    verifier.close()


def test_unsealed_fields_and_null_values_do_not_change_the_hash():
    # Given a sealed record, When the store adds a duplicate count, an outbox flag, or drops a null value
    record = chain.seal({"a": 1, "incident_id": None}, chain_id="c", seq=1, prev_hash=GENESIS_HASH)
    stored = {key: value for key, value in record.items() if value is not None}
    # Then it still hashes to the same record_hash
    assert record_hash({**stored, "duplicate_count": 3, "event_pending": "1"}) == record["record_hash"]
    assert content_problem(stored) is None


# ------------------------------------------------------------------------------------------------ bundles


class Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data) -> int:
        self.data += data
        return len(data)


def make_bundle(path: Path, *, files: dict[str, list[dict]] | None = None, tamper=None) -> dict:
    """A bundle as the export writes it (with the real writer and verifier), optionally tampered afterwards."""
    files = files if files is not None else {"transitions.jsonl": sealed_chain("transitions:c", 3)}
    sink = Sink()
    writer = BundleWriter(sink, created=NOW)
    checker = LinkVerifier()
    for file in EVIDENCE_FILES:
        records = files.get(file.name, [])
        for line, record in enumerate(records, start=1):
            if file.chained:
                checker.check(record, file=file.name, line=line)
        writer.add_file(file, records)
    manifest = {
        "format": bundle.BUNDLE_FORMAT,
        "export_id": "exp_TEST",
        "files": [summary.to_manifest() for summary in writer.summaries],
        "chain_verification": checker.finish().to_manifest(),
    }
    writer.add_manifest(manifest)
    digest, size = writer.close()
    data = bytes(sink.data)
    assert hashlib.sha256(data).hexdigest() == digest and len(data) == size
    if tamper:
        data = tamper(data)
    path.write_bytes(data)
    return manifest


def rewrite(data: bytes, change) -> bytes:
    """The bundle with its entries passed through ``change(name, content) -> content | None`` (None drops it)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = change(info.filename, source.read(info.filename))
            if content is not None:
                target.writestr(info.filename, content)
    return out.getvalue()


def test_an_intact_bundle_verifies(tmp_path):
    path = tmp_path / "bundle.zip"
    make_bundle(path)
    result = verify_bundle(path)
    assert result.verified
    assert result.chain_report.records == 3
    assert any(line.startswith("ok        transitions.jsonl") for line in result.lines)


def test_an_edited_line_fails_its_file_hash_and_names_the_record(tmp_path):
    # Given a bundle whose second transition was edited inside the zip
    def edit(name, content):
        if name != "transitions.jsonl":
            return content
        lines = content.splitlines(keepends=True)
        record = json.loads(lines[1])
        record["n"] = 1000
        lines[1] = bundle.encode_record(record)
        return b"".join(lines)

    path = tmp_path / "bundle.zip"
    make_bundle(path, tamper=lambda data: rewrite(data, edit))
    # When verified, Then the file hash differs and the edited record is the first that does not verify
    result = verify_bundle(path)
    assert not result.verified
    assert any("sha256" in problem.reason and problem.file == "transitions.jsonl" for problem in result.problems)
    assert result.chain_report.first_problem.line == 2
    assert main([str(path)]) == 1


def test_a_removed_line_fails_the_record_count_and_the_chain(tmp_path):
    def drop_middle(name, content):
        if name != "transitions.jsonl":
            return content
        lines = content.splitlines(keepends=True)
        return lines[0] + lines[2]

    path = tmp_path / "bundle.zip"
    make_bundle(path, tamper=lambda data: rewrite(data, drop_middle))
    result = verify_bundle(path)
    assert any("2 records where the manifest says 3" in problem.reason for problem in result.problems)
    assert "chain_seq 2 is missing" in result.chain_report.first_problem.reason


def test_a_missing_or_added_file_is_reported(tmp_path):
    path = tmp_path / "bundle.zip"
    make_bundle(path, tamper=lambda data: rewrite(data, lambda n, c: None if n == "callbacks.jsonl" else c))
    result = verify_bundle(path)
    assert any("in the manifest but not in the bundle" in problem.reason for problem in result.problems)

    extra = tmp_path / "extra.zip"
    make_bundle(extra)
    data = extra.read_bytes()
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("notes.txt", b"added later")
    extra.write_bytes(buffer.getvalue())
    result = verify_bundle(extra)
    assert any(problem.file == "notes.txt" for problem in result.problems)


def test_a_file_that_is_not_a_bundle_is_refused(tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_bytes(b"not a zip at all")
    result = verify_bundle(path)
    assert not result.verified
    assert "cannot be opened as a zip" in result.problems[0].reason
    assert main([str(path)]) == 1


def test_a_missing_path_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nope.zip")])
    assert exit_info.value.code == 2


def test_the_stored_manifest_pins_the_exact_bundle(tmp_path):
    # Given the manifest object stored beside the bundle (with the bundle's SHA-256)
    path = tmp_path / "bundle.zip"
    manifest = make_bundle(path)
    stored = tmp_path / "manifest.json"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stored.write_text(json.dumps({**manifest, "bundle": {"sha256": digest}}))
    # Then the bundle matches it, and another bundle does not
    assert main([str(path), "--manifest", str(stored)]) == 0
    other = tmp_path / "other.zip"
    make_bundle(other, files={"transitions.jsonl": sealed_chain("transitions:d", 2)})
    result = verify_bundle(other, stored_manifest=stored)
    assert any("differs from the stored manifest" in problem.reason for problem in result.problems)


def test_json_output_lists_the_problems(tmp_path, capsys):
    path = tmp_path / "bundle.zip"
    records = sealed_chain("transitions:c", 2)
    records[0] = {**records[0], "n": -1}
    make_bundle(path, files={"transitions.jsonl": records})
    assert main([str(path), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["verified"] is False
    assert document["chains"]["first_problem"]["line"] == 1


def test_the_verifier_runs_as_a_plain_file_with_the_standard_library_only(tmp_path):
    # Given verify.py copied beside chain.py and bundle.py, outside the package, and Python without site-packages
    # (-S), environment (-E) or user site (-s)
    for name in ("verify.py", "chain.py", "bundle.py"):
        shutil.copy(EVIDENCE_DIR / name, tmp_path / name)
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    make_bundle(good)
    records = sealed_chain("transitions:c", 3)
    records[1] = {**records[1], "n": 5}
    make_bundle(bad, files={"transitions.jsonl": records})
    # When it runs, Then it verifies the good bundle (exit 0) and names the bad record (exit 1)
    command = [sys.executable, "-S", "-E", "-s", str(tmp_path / "verify.py")]
    ok = subprocess.run([*command, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "result    VERIFIED" in ok.stdout
    failed = subprocess.run([*command, str(bad)], capture_output=True, text=True, check=False)
    assert failed.returncode == 1, failed.stderr
    assert "transitions.jsonl line 2" in failed.stdout
    assert "NOT VERIFIED" in failed.stdout


def test_the_verifier_runs_as_a_module(tmp_path):
    path = tmp_path / "bundle.zip"
    make_bundle(path)
    layer = str(EVIDENCE_DIR.parents[1])
    completed = subprocess.run(
        [sys.executable, "-S", "-m", "connector_sla.evidence.verify", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=layer,
    )
    assert completed.returncode == 0, completed.stderr
