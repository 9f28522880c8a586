"""The streamed bundle writer: a zip written front to back, per-file SHA-256 and record counts."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector_sla.evidence.bundle import EVIDENCE_FILES, FILES_BY_NAME, BundleWriter, encode_record

NOW = datetime(2026, 12, 3, 19, 22, 5, tzinfo=UTC)


class WriteOnly:
    """A sink that can only be written to, as a multipart upload is: no seek, no tell, no read."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
records = st.lists(st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=6), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_each_file_summary_matches_what_the_zip_holds(rows):
    # Given any records, When written as one file of a bundle into a write-only sink
    sink = WriteOnly()
    writer = BundleWriter(sink, created=NOW)
    summary = writer.add_file(FILES_BY_NAME["transitions.jsonl"], rows)
    digest, size = writer.close()
    # Then the zip holds exactly one canonical line per record, and the summary's hash and count describe it
    content = zipfile.ZipFile(io.BytesIO(sink.data)).read("transitions.jsonl")
    assert content == b"".join(encode_record(row) for row in rows)
    assert summary.records == len(rows) == content.count(b"\n")
    assert summary.sha256 == hashlib.sha256(content).hexdigest()
    assert summary.bytes == len(content)
    assert (digest, size) == (hashlib.sha256(sink.data).hexdigest(), len(sink.data))


def test_entries_are_streamed_with_data_descriptors_and_compressed():
    # Given a bundle written to a sink that cannot seek
    sink = WriteOnly()
    writer = BundleWriter(sink, created=NOW)
    for file in EVIDENCE_FILES:
        writer.add_file(file, ({"n": index, "text": "x" * 40} for index in range(500)))
    writer.add_manifest({"format": "test"})
    writer.close()
    archive = zipfile.ZipFile(io.BytesIO(sink.data))
    # Then every entry carries its sizes after its data (bit 3), is deflated, and is stamped with the export time
    names = [info.filename for info in archive.infolist()]
    assert names == [file.name for file in EVIDENCE_FILES] + ["manifest.json"]
    for info in archive.infolist():
        assert info.flag_bits & 0x08
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.date_time == (2026, 12, 3, 19, 22, 4)  # zip keeps seconds in steps of two
    assert archive.testzip() is None
    assert archive.getinfo("transitions.jsonl").compress_size < archive.getinfo("transitions.jsonl").file_size / 5


def test_the_manifest_is_readable_json_written_last():
    sink = WriteOnly()
    writer = BundleWriter(sink, created=NOW)
    writer.add_file(FILES_BY_NAME["job_runs.jsonl"], [{"run_id": "run_1"}])
    body = writer.add_manifest({"files": [summary.to_manifest() for summary in writer.summaries]})
    writer.close()
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(sink.data)).read("manifest.json"))
    assert manifest["files"][0]["name"] == "job_runs.jsonl"
    assert manifest["files"][0]["records"] == 1
    assert body.startswith(b"{\n") and body.endswith(b"}\n")


def test_records_are_canonical_lines():
    # Keys sorted, no spaces, UTF-8 kept, sets as sorted lists: the same record always gives the same bytes
    assert encode_record({"b": 1, "a": "é", "s": {"y", "x"}}) == '{"a":"é","b":1,"s":["x","y"]}\n'.encode()
