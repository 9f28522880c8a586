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
from hypothesis import HealthCheck, given, settings
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


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


# ------------------------------------------------------------------------------------------------ tampering


def timed_chain(chain_id: str, count: int, minute: int = 0) -> list[dict]:
    """A chain of transitions one minute apart, as the export writes them (time order is chain order)."""
    head, records = ChainHead(), []
    for index in range(count):
        at = f"2026-12-03T10:{minute + index:02d}:00.000Z"
        record = head.next({"transition_id": f"trn_{chain_id}_{index + 1}", "at": at, "n": index}, chain_id)
        head = ChainHead(record["chain_seq"], record["record_hash"])
        records.append(record)
    return records


def with_manifest_rewritten(data: bytes, change) -> bytes:
    """``change`` applied to the bundle's files, and the manifest's hashes and counts recomputed to match: what a
    tamperer who knows the format does so that the file hashes alone do not give the change away."""
    files = {}

    def apply(name, content):
        if name == bundle.MANIFEST_NAME:
            return content
        files[name] = change(name, content)
        return files[name]

    changed = rewrite(data, apply)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(changed)).read(bundle.MANIFEST_NAME))
    for entry in manifest["files"]:
        content = files[entry["name"]]
        entry.update(sha256=hashlib.sha256(content).hexdigest(), records=content.count(b"\n"), bytes=len(content))
    body = bundle.manifest_bytes(manifest)
    return rewrite(changed, lambda name, content: body if name == bundle.MANIFEST_NAME else content)


def on_lines(file_name: str, edit):
    def change(name, content):
        if name != file_name:
            return content
        return b"".join(edit(content.splitlines(keepends=True)))

    return change


def tampered_bundle(tmp_path: Path, edit, *, fix_manifest: bool, file_name: str = "transitions.jsonl") -> Path:
    path = tmp_path / "bundle.zip"
    files = {"transitions.jsonl": timed_chain("transitions:orders", 3) + timed_chain("transitions:crm", 2, 10)}
    rewriter = with_manifest_rewritten if fix_manifest else rewrite
    make_bundle(path, files=files, tamper=lambda data: rewriter(data, on_lines(file_name, edit)))
    return path


def swap_second_and_third(lines: list[bytes]) -> list[bytes]:
    return [lines[0], lines[2], lines[1], *lines[3:]]


@pytest.mark.parametrize("fix_manifest", [False, True])
def test_a_reordered_record_is_named_even_when_the_manifest_was_rewritten_to_match(tmp_path, fix_manifest):
    # Given a bundle whose second and third transitions were swapped (and, for a careful tamperer, whose manifest
    # hashes were recomputed so every file hash matches)
    path = tampered_bundle(tmp_path, swap_second_and_third, fix_manifest=fix_manifest)
    # When verified, Then it does not verify, and the record found out of place is named with where it belongs
    result = verify_bundle(path)
    assert not result.verified
    first = result.first_record_problem
    assert (first.file, first.line, first.record_id) == ("transitions.jsonl", 3, "trn_transitions:orders_2")
    assert "out of order: it belongs before line 2 (trn_transitions:orders_3)" in first.reason
    file_hash_failed = any("sha256" in problem.reason for problem in result.problems)
    assert file_hash_failed is not fix_manifest
    # The chains themselves still link: only the order gives the move away
    assert result.chain_report.verified


def test_a_changed_record_is_named_when_the_manifest_was_rewritten_to_match(tmp_path):
    def change_reason(lines):
        record = json.loads(lines[1])
        record["n"] = 1000
        return [lines[0], bundle.encode_record(record), *lines[2:]]

    path = tampered_bundle(tmp_path, change_reason, fix_manifest=True)
    result = verify_bundle(path)
    assert not [problem for problem in result.problems if problem.line == 0]  # every file hash matches
    first = result.first_record_problem
    assert (first.line, first.record_id, first.chain_seq) == (2, "trn_transitions:orders_2", 2)
    assert "record altered" in first.reason


def test_a_removed_record_is_named_when_the_manifest_was_rewritten_to_match(tmp_path, capsys):
    path = tampered_bundle(tmp_path, lambda lines: [lines[0], *lines[2:]], fix_manifest=True)
    # When the command runs, Then it names the record after the gap and says one is missing
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert (
        "first record that does not verify: transitions.jsonl line 2 (trn_transitions:orders_3): "
        "chain transitions:orders seq 3: chain_seq 2 is missing" in out
    )
    assert "NOT VERIFIED" in out


def test_a_changed_file_fails_its_hash_even_where_records_are_not_chained(tmp_path):
    # Given a notification whose ACK state was edited inside the bundle (notifications are not chained)
    path = tmp_path / "bundle.zip"
    notifications = [
        {"notification_id": "ntf_1", "created_at": "2026-12-03T10:00:00.000Z", "ack_state": "unacked"},
        {"notification_id": "ntf_2", "created_at": "2026-12-03T10:01:00.000Z", "ack_state": "unacked"},
    ]
    files = {"transitions.jsonl": timed_chain("transitions:c", 2), "notifications.jsonl": notifications}
    edit = on_lines("notifications.jsonl", lambda lines: [lines[0].replace(b"unacked", b"acknowledged"), lines[1]])
    make_bundle(path, files=files, tamper=lambda data: rewrite(data, edit))
    # Then the file's SHA-256 no longer matches the manifest, and the file is named
    result = verify_bundle(path)
    (problem,) = result.problems
    assert problem.file == "notifications.jsonl" and "differs from the manifest" in problem.reason
    assert result.chain_report.verified and not result.verified


def test_the_first_record_problem_is_the_earliest_across_order_and_chain_checks(tmp_path):
    # Given a moved transition (first file) and an altered delivery (second file)
    path = tmp_path / "bundle.zip"
    deliveries = sealed_chain("deliveries:ntf_1", 2)
    deliveries[1] = {**deliveries[1], "n": 9}
    files = {"transitions.jsonl": timed_chain("transitions:c", 3), "deliveries.jsonl": deliveries}
    make_bundle(
        path, files=files, tamper=lambda data: rewrite(data, on_lines("transitions.jsonl", swap_second_and_third))
    )
    result = verify_bundle(path)
    assert result.chain_report.first_problem.file == "deliveries.jsonl"
    assert (result.first_record_problem.file, result.first_record_problem.line) == ("transitions.jsonl", 3)
    assert result.to_dict()["first_record_problem"]["line"] == 3


def test_an_exported_order_verifies_and_records_of_one_instant_follow_their_chain(tmp_path):
    # Given records of one instant from two chains, written in bundle order (chain, then position)
    at = "2026-12-03T10:00:00.000Z"
    head_a, head_b, records = ChainHead(), ChainHead(), []
    for index in range(2):
        a = head_a.next({"transition_id": f"a{index}", "at": at}, "transitions:a")
        b = head_b.next({"transition_id": f"b{index}", "at": at}, "transitions:b")
        head_a, head_b = ChainHead(a["chain_seq"], a["record_hash"]), ChainHead(b["chain_seq"], b["record_hash"])
        records += [a, b]
    ordered = sorted(records, key=lambda record: bundle.record_order(record, bundle.FILES_BY_NAME["transitions.jsonl"]))
    path = tmp_path / "bundle.zip"
    make_bundle(path, files={"transitions.jsonl": ordered})
    assert verify_bundle(path).verified
    # And the same records interleaved by chain are out of the bundle's order
    make_bundle(path, files={"transitions.jsonl": records})
    assert "out of order" in verify_bundle(path).first_record_problem.reason


# ------------------------------------------------------------------------------------------------ make target


def test_make_verify_evidence_runs_on_the_plain_interpreter(tmp_path):
    # Given a downloaded bundle and its stored manifest, in a folder whose name has a space
    make_tool = shutil.which("make")
    if make_tool is None:
        pytest.skip("make is not installed: install it (apt-get install -y make) to test `make verify-evidence`")
    folder = tmp_path / "audit 2026"
    folder.mkdir()
    path = folder / "bundle.zip"
    manifest = make_bundle(path)
    stored = folder / "manifest.json"
    stored.write_text(json.dumps({**manifest, "bundle": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}))
    root = EVIDENCE_DIR.parents[3]
    command = [make_tool, "--no-print-directory", "verify-evidence", f"BUNDLE={path}", f"PYTHON={sys.executable}"]
    # When the make target runs, Then it verifies the bundle against the stored manifest (exit 0)
    ok = subprocess.run([*command, f"MANIFEST={stored}"], capture_output=True, text=True, check=False, cwd=root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "bundle matches the stored manifest" in ok.stdout and "result    VERIFIED" in ok.stdout
    # And a bundle that does not verify fails the target, naming the record
    records = timed_chain("transitions:c", 3)
    records[2] = {**records[2], "n": 7}
    make_bundle(path, files={"transitions.jsonl": records})
    failed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=root)
    assert failed.returncode != 0
    assert "first record that does not verify: transitions.jsonl line 3" in failed.stdout
    # And without BUNDLE it says how to call it
    usage = subprocess.run(command[:3], capture_output=True, text=True, check=False, cwd=root)
    assert usage.returncode != 0 and "usage: make verify-evidence BUNDLE=" in usage.stdout
