"""Verify an evidence bundle offline: every file against the manifest, and every hash chain.

    python -m connector_sla.evidence.verify bundle.zip [--manifest manifest.json] [--json]
    python verify.py bundle.zip        (this file, copied beside chain.py and bundle.py)

Checks that each file's SHA-256 and record count match the manifest, that no file is missing or added, that every
record is in its place in the file's order (so a moved record is named), that every chained record hashes to its
``record_hash`` and links to its predecessor, and (with ``--manifest``, the ``manifest.json`` object stored beside
the bundle in S3) that the bundle is byte for byte the one that was exported. It names the first record that does
not verify. Exit status: 0 verified, 1 not verified, 2 usage error.

Chains are checked whatever order their records come in (time order and chain order can differ by a few
milliseconds between writers), with chain positions kept in SQLite: memory stays flat for any bundle size.
Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from connector_sla.evidence import bundle, chain
except ImportError:  # run as a plain file: chain.py and bundle.py sit beside it
    import bundle  # type: ignore[no-redef]
    import chain  # type: ignore[no-redef]


@dataclass(frozen=True)
class Problem:
    """Something that does not verify; ``line`` is 0 for a problem with a whole file."""

    file: str
    line: int
    reason: str
    record_id: str = ""
    chain_id: str = ""
    chain_seq: int | None = None

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        if self.record_id:
            where += f" ({self.record_id})"
        if self.chain_id:
            return f"{where}: chain {self.chain_id} seq {self.chain_seq}: {self.reason}"
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "record_id": self.record_id,
            "chain_id": self.chain_id,
            "chain_seq": self.chain_seq,
            "reason": self.reason,
            "text": str(self),
        }


# Limitation: a bundle alone cannot show that records were cut from the very start or end of a chain inside the
# range (that looks like the range's edge); the locked copy in the bucket, checked with --manifest, settles it.
@dataclass(frozen=True)
class ChainReport:
    """The outcome of checking every chained record of a bundle."""

    records: int
    chains: int
    chains_before_range: int
    problems: int
    first_problem: Problem | None

    @property
    def verified(self) -> bool:
        return self.problems == 0

    def to_manifest(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "records_checked": self.records,
            "chains": self.chains,
            "chains_starting_before_range": self.chains_before_range,
            "problems": self.problems,
            "first_problem": self.first_problem.to_dict() if self.first_problem else None,
        }


def content_problem(record: Mapping[str, Any]) -> str | None:
    """Why a record's own fields do not verify (not sealed, or altered since sealing), or ``None``."""
    if not record.get("chain_id") or not isinstance(record.get("chain_seq"), int):
        return "not a sealed record (chain_id or chain_seq missing)"
    if not isinstance(record.get("prev_hash"), str) or not isinstance(record.get("record_hash"), str):
        return "not a sealed record (prev_hash or record_hash missing)"
    try:
        actual = chain.record_hash(record)
    except (TypeError, ValueError) as error:
        return f"cannot be hashed: {error}"
    if actual != record["record_hash"]:
        return "record_hash does not match the content (record altered)"
    if record["chain_seq"] < 1:
        return "chain_seq must be 1 or more"
    if record["chain_seq"] == 1 and record["prev_hash"] != chain.GENESIS_HASH:
        return "first record of the chain must follow the genesis hash"
    return None


_SCHEMA = """
CREATE TABLE link (chain TEXT, seq INTEGER, prev TEXT, hash TEXT, file INTEGER, line INTEGER, record_id TEXT,
                   PRIMARY KEY (chain, seq)) WITHOUT ROWID;
CREATE TABLE problem (file INTEGER, line INTEGER, record_id TEXT, chain TEXT, seq INTEGER, reason TEXT);
"""

_LINK_PROBLEMS = """
INSERT INTO problem
SELECT r.file, r.line, r.record_id, r.chain, r.seq,
       CASE WHEN p.chain IS NULL
            THEN 'chain_seq ' || (r.seq - 1) || ' is missing (a record was deleted)'
            ELSE 'prev_hash does not match the record_hash of chain_seq ' || p.seq || ' (' || p.record_id || ')'
       END
FROM link r
JOIN (SELECT chain, MIN(seq) AS first FROM link GROUP BY chain) f ON f.chain = r.chain
LEFT JOIN link p ON p.chain = r.chain AND p.seq = r.seq - 1
WHERE r.seq > f.first AND (p.chain IS NULL OR p.hash <> r.prev)
"""


class LinkVerifier:
    """Checks hash chains record by record, in any order; chain positions live in SQLite (``path``, or memory).

    A chain whose earliest record in the set is past position 1 starts before the exported range: it is anchored
    on that record. Every later position must be present and link to its predecessor's ``record_hash``.
    """

    def __init__(self, path: str = ":memory:", *, files: Sequence[str] = ()) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-2000")
        self.db.executescript(_SCHEMA)
        self.files = list(files) or [file.name for file in bundle.EVIDENCE_FILES]
        self.records = 0

    def check(self, record: Mapping[str, Any], *, file: str, line: int, record_id: str = "") -> Problem | None:
        """Check one record's content now and remember its link for :meth:`finish`; returns a content problem."""
        self.records += 1
        file_index = self._file_index(file)
        seq = record.get("chain_seq")
        chain_id = str(record.get("chain_id") or "")
        reason = content_problem(record)
        if reason is None or reason.startswith("record_hash does not match") or reason.startswith("first record"):
            # An altered record still holds the hash its successor links to: keep its place in the chain.
            try:
                self.db.execute(
                    "INSERT INTO link VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (chain_id, seq, record["prev_hash"], record["record_hash"], file_index, line, record_id),
                )
            except sqlite3.IntegrityError:
                reason = reason or f"chain_seq {seq} appears twice in the chain (a record was duplicated)"
        if reason is None:
            return None
        problem = Problem(file, line, reason, record_id, chain_id, seq if isinstance(seq, int) else None)
        self.db.execute(
            "INSERT INTO problem VALUES (?, ?, ?, ?, ?, ?)",
            (file_index, line, record_id, chain_id, problem.chain_seq, reason),
        )
        return problem

    def finish(self) -> ChainReport:
        """Check every link and summarize; the first problem is the earliest in bundle order."""
        self.db.execute(_LINK_PROBLEMS)
        chains, before = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(first > 1), 0) FROM (SELECT MIN(seq) AS first FROM link GROUP BY chain)"
        ).fetchone()
        problems = self.db.execute("SELECT COUNT(*) FROM problem").fetchone()[0]
        row = self.db.execute(
            "SELECT file, line, record_id, chain, seq, reason FROM problem ORDER BY file, line LIMIT 1"
        ).fetchone()
        first = None
        if row is not None:
            first = Problem(self.files[row[0]], row[1], row[5], row[2] or "", row[3] or "", row[4])
        return ChainReport(self.records, int(chains), int(before), int(problems), first)

    def close(self) -> None:
        self.db.close()

    def _file_index(self, name: str) -> int:
        if name not in self.files:
            self.files.append(name)
        return self.files.index(name)


# ------------------------------------------------------------------------------------------------ the bundle


@dataclass
class Verification:
    """What the verifier found: a line per check, and the problems."""

    lines: list[str]
    problems: list[Problem]
    chain_report: ChainReport | None = None

    @property
    def verified(self) -> bool:
        return not self.problems and self.chain_report is not None and self.chain_report.verified

    @property
    def first_record_problem(self) -> Problem | None:
        """The first record, in bundle order, that does not verify (altered, unlinked, moved or unreadable)."""
        order = {file.name: index for index, file in enumerate(bundle.EVIDENCE_FILES)}
        candidates = [problem for problem in self.problems if problem.line]
        if self.chain_report is not None and self.chain_report.first_problem is not None:
            candidates.append(self.chain_report.first_problem)
        if not candidates:
            return None
        return min(candidates, key=lambda problem: (order.get(problem.file, len(order)), problem.line))

    def to_dict(self) -> dict[str, Any]:
        first = self.first_record_problem
        return {
            "verified": self.verified,
            "first_record_problem": first.to_dict() if first else None,
            "problems": [problem.to_dict() for problem in self.problems],
            "chains": self.chain_report.to_manifest() if self.chain_report else None,
        }


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _check_file(
    archive: zipfile.ZipFile, entry: Mapping[str, Any], verifier: LinkVerifier, result: Verification
) -> None:
    name = str(entry.get("name"))
    file = bundle.FILES_BY_NAME.get(name)
    digest = hashlib.sha256()
    count = 0
    previous: tuple[bundle.RecordOrder, int, str] | None = None
    with archive.open(name) as stream:
        for count, line in enumerate(bundle.read_lines(stream), start=1):
            digest.update(line)
            if file is None:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                result.problems.append(Problem(name, count, "not valid JSON"))
                continue
            if not isinstance(record, dict):
                result.problems.append(Problem(name, count, "not a JSON object"))
                continue
            record_id = str(record.get(file.id_field) or "")
            position = bundle.record_order(record, file)
            if previous is not None and position < previous[0]:
                result.problems.append(_moved(name, count, record, record_id, previous[1:]))
            previous = (position, count, record_id)
            if file.chained:
                verifier.check(record, file=name, line=count, record_id=record_id)
    actual = digest.hexdigest()
    problems = []
    if actual != entry.get("sha256"):
        problems.append(f"sha256 {actual} differs from the manifest's {entry.get('sha256')} (file changed)")
    if count != entry.get("records"):
        problems.append(f"{count} records where the manifest says {entry.get('records')}")
    for reason in problems:
        result.problems.append(Problem(name, 0, reason))
    verdict = "FAILED" if problems else "ok"
    result.lines.append(f"{verdict:9s} {name:20s} {count:>8d} records  sha256 {actual}")


def _moved(name: str, line: int, record: Mapping[str, Any], record_id: str, before: tuple[int, str]) -> Problem:
    seq = record.get("chain_seq")
    reason = (
        f"out of order: it belongs before line {before[0]} ({before[1]}); records are in time order, then chain "
        "order (a record was moved)"
    )
    chain_id = str(record.get("chain_id") or "")
    return Problem(name, line, reason, record_id, chain_id, seq if chain_id and isinstance(seq, int) else None)


def verify_bundle(path: Path, *, stored_manifest: Path | None = None) -> Verification:
    """Check a downloaded bundle (and, optionally, the manifest object stored beside it in S3)."""
    result = Verification(lines=[], problems=[])
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        result.problems.append(Problem(path.name, 0, f"cannot be opened as a zip file: {error}"))
        return result
    with archive:
        try:
            manifest = json.loads(archive.read(bundle.MANIFEST_NAME))
        except (KeyError, ValueError) as error:
            result.problems.append(Problem(bundle.MANIFEST_NAME, 0, f"missing or not valid JSON: {error}"))
            return result
        if manifest.get("format") != bundle.BUNDLE_FORMAT:
            reason = f"format {manifest.get('format')!r} is not {bundle.BUNDLE_FORMAT!r}"
            result.problems.append(Problem(bundle.MANIFEST_NAME, 0, reason))
            return result
        query = manifest.get("query") or {}
        result.lines.append(
            f"bundle    {manifest.get('export_id')} exported {manifest.get('exported_at')} "
            f"by {manifest.get('service')} {manifest.get('service_version')}"
        )
        result.lines.append(f"query     {json.dumps(query, sort_keys=True)}")
        entries = [entry for entry in manifest.get("files", []) if isinstance(entry, dict)]
        listed = {str(entry.get("name")) for entry in entries}
        present = set(archive.namelist()) - {bundle.MANIFEST_NAME}
        for name in sorted(present - listed):
            result.problems.append(Problem(name, 0, "is in the bundle but not in the manifest"))
        for name in sorted(set(bundle.FILES_BY_NAME) - listed):
            result.problems.append(Problem(name, 0, "is missing from the manifest"))
        verifier = LinkVerifier()
        try:
            for entry in entries:
                if str(entry.get("name")) not in present:
                    result.problems.append(
                        Problem(str(entry.get("name")), 0, "is in the manifest but not in the bundle")
                    )
                    continue
                _check_file(archive, entry, verifier, result)
            result.chain_report = verifier.finish()
        finally:
            verifier.close()
    report = result.chain_report
    assert report is not None
    result.lines.append(
        f"chains    {report.chains} chains, {report.records} records checked "
        f"({report.chains_before_range} start before the range)"
    )
    first = result.first_record_problem
    if first is not None:
        result.lines.append(f"records   first record that does not verify: {first}")
    if stored_manifest is not None:
        _check_stored_manifest(path, stored_manifest, manifest, result)
    return result


def _check_stored_manifest(path: Path, stored: Path, manifest: Mapping[str, Any], result: Verification) -> None:
    try:
        document = json.loads(stored.read_text())
    except (OSError, ValueError) as error:
        result.problems.append(Problem(stored.name, 0, f"cannot be read as JSON: {error}"))
        return
    expected = (document.get("bundle") or {}).get("sha256")
    actual, size = _sha256_of(path)
    if actual != expected:
        reason = f"bundle sha256 {actual} differs from the stored manifest's {expected} (not the exported file)"
        result.problems.append(Problem(path.name, 0, reason))
    elif document.get("files") != manifest.get("files"):
        result.problems.append(Problem(stored.name, 0, "lists other files than the bundle's manifest"))
    else:
        result.lines.append(f"ok        bundle matches the stored manifest (sha256 {actual}, {size} bytes)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connector_sla.evidence.verify",
        description="Verify a compliance evidence bundle offline (file hashes, record counts, hash chains).",
    )
    parser.add_argument("bundle", type=Path, help="the downloaded bundle.zip")
    parser.add_argument("--manifest", type=Path, help="the manifest.json object stored beside the bundle in S3")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not args.bundle.is_file():
        parser.error(f"{args.bundle} is not a file")
    result = verify_bundle(args.bundle, stored_manifest=args.manifest)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for line in result.lines:
            sys.stdout.write(line + "\n")
        for problem in result.problems:
            sys.stdout.write(f"problem   {problem}\n")
        chain_problems = result.chain_report.problems if result.chain_report else 0
        total = len(result.problems) + chain_problems
        verdict = "VERIFIED" if result.verified else f"NOT VERIFIED ({total} problems)"
        sys.stdout.write(f"result    {verdict}\n")
    return 0 if result.verified else 1


if __name__ == "__main__":
    sys.exit(main())
