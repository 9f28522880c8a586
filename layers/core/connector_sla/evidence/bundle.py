"""The evidence bundle: JSON Lines files and a manifest in one zip, written as a stream.

Why a zip: the export writes each file once, front to back, into a multipart upload, and a zip written to a stream
records each entry's sizes and CRC after its data (data descriptors), so nothing has to be known, buffered or
rewritten in advance; a tar needs each size before the data. Auditors open a zip with the tools of any desktop, can
read one file without unpacking the others, and the verifier reads it with Python's standard library alone.

Layout of a bundle::

    transitions.jsonl    SLA state transitions       (hash-chained per connector)
    deliveries.jsonl     alert delivery attempts     (hash-chained per notification)
    callbacks.jsonl      on-call callback records    (hash-chained per notification or provider)
    notifications.jsonl  notifications and ACK state (as they were at export time; not chained)
    job_runs.jsonl       scheduled job runs          (not chained)
    manifest.json        per-file SHA-256 and record count, the query, export time, service version, chain summary

One record per line, in canonical JSON (sorted keys, no spaces, UTF-8), in :func:`record_order`: oldest first,
records of one instant by chain position, then by id. That order is total, so an export is reproducible and the
verifier names a record that was moved. Standard library only: the offline verifier imports this module.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Protocol

BUNDLE_FORMAT = "connector-sla-evidence/1"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class EvidenceFile:
    """One JSON Lines file of the bundle: where its records come from and how they are named."""

    name: str
    time_field: str
    id_field: str
    chained: bool


EVIDENCE_FILES = (
    EvidenceFile("transitions.jsonl", time_field="at", id_field="transition_id", chained=True),
    EvidenceFile("deliveries.jsonl", time_field="at", id_field="delivery_id", chained=True),
    EvidenceFile("callbacks.jsonl", time_field="received_at", id_field="callback_id", chained=True),
    EvidenceFile("notifications.jsonl", time_field="created_at", id_field="notification_id", chained=False),
    EvidenceFile("job_runs.jsonl", time_field="created_at", id_field="run_id", chained=False),
)
FILES_BY_NAME = {file.name: file for file in EVIDENCE_FILES}

RecordOrder = tuple[str, str, int, str]


def record_order(record: Mapping[str, Any], file: EvidenceFile) -> RecordOrder:
    """Where a record belongs in its file: by its time, then by chain and chain position, then by its id."""
    seq = record.get("chain_seq")
    position = seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
    return (
        str(record.get(file.time_field) or ""),
        str(record.get("chain_id") or ""),
        position,
        str(record.get(file.id_field) or ""),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot write a {type(value).__name__} to the evidence")


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record as a line of the bundle: canonical JSON and a newline."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)
    return text.encode() + b"\n"


@dataclass(frozen=True)
class FileSummary:
    """What the manifest says about one file."""

    name: str
    records: int
    sha256: str
    bytes: int
    chained: bool

    def to_manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "records": self.records,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "chained": self.chained,
        }


class ByteSink(Protocol):
    def write(self, data: bytes) -> Any: ...


class _CountingStream:
    """Passes bytes to the sink while hashing and counting them: the bundle's own SHA-256 and size."""

    def __init__(self, sink: ByteSink) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class BundleWriter:
    """Writes the bundle's files one after another to ``sink`` (anything with ``write(bytes)``), never seeking.

    Memory stays flat: each record is encoded, hashed and compressed as it passes. ``created`` stamps the entries.
    """

    def __init__(self, sink: ByteSink, *, created: datetime) -> None:
        self._stream = _CountingStream(sink)
        self._zip = zipfile.ZipFile(self._stream, mode="w", compression=zipfile.ZIP_DEFLATED)
        self._stamp = (created.year, created.month, created.day, created.hour, created.minute, created.second)
        self.summaries: list[FileSummary] = []

    def _entry(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self._stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def add_file(self, file: EvidenceFile, records: Iterable[Mapping[str, Any]]) -> FileSummary:
        """Write ``records`` as ``file``; returns its record count and SHA-256."""
        digest = hashlib.sha256()
        count = size = 0
        with self._zip.open(self._entry(file.name), mode="w", force_zip64=True) as entry:
            for record in records:
                line = encode_record(record)
                digest.update(line)
                entry.write(line)
                count += 1
                size += len(line)
        summary = FileSummary(file.name, count, digest.hexdigest(), size, file.chained)
        self.summaries.append(summary)
        return summary

    def add_manifest(self, manifest: Mapping[str, Any]) -> bytes:
        """Write the manifest (last, once every file is summarized) and return its bytes."""
        body = manifest_bytes(manifest)
        self._zip.writestr(self._entry(MANIFEST_NAME), body)
        return body

    def abandon(self) -> None:
        """Give up a bundle that will not be finished: nothing more is written to the sink, not even on cleanup."""
        self._zip.fp = None

    def close(self) -> tuple[str, int]:
        """Finish the zip; returns the SHA-256 and size of the whole bundle."""
        self._zip.close()
        return self._stream.digest.hexdigest(), self._stream.size


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as written: indented JSON with sorted keys, so a person can read it."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def read_lines(stream: IO[bytes]) -> Iterable[bytes]:
    """The lines of a bundle file, newline included, without reading it whole."""
    yield from iter(stream.readline, b"")
