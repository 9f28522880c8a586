"""Hash chains over the records that enter the evidence: SLA transitions, deliveries and callbacks.

Each record belongs to one chain (``chain_id``), has a position in it (``chain_seq``, from 1), the hash of its
predecessor (``prev_hash``, or 64 zeros for the first) and its own ``record_hash``: the SHA-256 of its canonical
JSON without ``record_hash``, without the operational attributes in :data:`UNSEALED_FIELDS` and without
top-level ``None`` values. Changing, removing or reordering any record breaks the chain at that record.

Standard library only: auditors run the verifier offline with nothing installed but Python.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import sqlite3

GENESIS_HASH = "0" * 64
CHAIN_FIELDS = ("chain_id", "chain_seq", "prev_hash", "record_hash")
# Attributes a storage adapter may change after sealing (the SLA event outbox flag, the count of repeated callback
# deliveries); never part of the hash or the bundle.
UNSEALED_FIELDS = frozenset({"record_hash", "event_pending", "duplicate_count"})


def _check_values(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise TypeError(f"{path} is a float; evidence records hold integers and strings only")
    if isinstance(value, dict):
        for key, inner in value.items():
            _check_values(inner, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            _check_values(inner, f"{path}[{index}]")


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that are hashed."""
    _check_values(dict(record), "record")
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sealed_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as it is hashed and exported: without the unsealed operational attributes.

    Top-level ``None`` values are left out too: a DynamoDB item does not store them, so a record hashes the same
    before it is written and after it is read back.
    """
    return {key: value for key, value in record.items() if key not in UNSEALED_FIELDS and value is not None}


def record_hash(record: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a record's sealed view."""
    return hashlib.sha256(canonical_json(sealed_view(record))).hexdigest()


def seal(record: Mapping[str, Any], *, chain_id: str, seq: int, prev_hash: str) -> dict[str, Any]:
    """The record placed at position ``seq`` of ``chain_id`` after a predecessor hashing to ``prev_hash``."""
    if seq < 1:
        raise ValueError("chain positions start at 1")
    sealed = {**record, "chain_id": chain_id, "chain_seq": seq, "prev_hash": prev_hash}
    sealed.pop("record_hash", None)
    sealed["record_hash"] = record_hash(sealed)
    return sealed


class ChainHead(NamedTuple):
    """The last sealed position of a chain, kept on the row that owns the chain."""

    seq: int = 0
    hash: str = GENESIS_HASH

    def next(self, record: Mapping[str, Any], chain_id: str) -> dict[str, Any]:
        return seal(record, chain_id=chain_id, seq=self.seq + 1, prev_hash=self.hash)


class ChainProblem(NamedTuple):
    """The first record that does not verify, and why."""

    location: str
    chain_id: str
    chain_seq: int
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: chain {self.chain_id} seq {self.chain_seq}: {self.reason}"


class ChainVerifier:
    """Checks records one at a time, in chain order within each chain; chains may interleave.

    A chain whose first record in the set has ``chain_seq`` > 1 is anchored on that record's ``prev_hash`` (the
    set is a time range cut out of a longer chain). ``state`` may be any mutable mapping, e.g.
    :class:`SqliteChainState` to keep memory flat for very many chains.
    """

    def __init__(self, state: MutableMapping[str, tuple[int, str]] | None = None) -> None:
        self.state: MutableMapping[str, tuple[int, str]] = {} if state is None else state
        self.records = 0
        self.anchored: dict[str, int] = {}

    def check(self, record: Mapping[str, Any], location: str) -> ChainProblem | None:
        """Verify one record; return the problem, or ``None`` when it verifies."""
        self.records += 1
        chain_id = str(record.get("chain_id", ""))
        seq = record.get("chain_seq")
        if not chain_id or not isinstance(seq, int) or "prev_hash" not in record or "record_hash" not in record:
            return ChainProblem(location, chain_id or "?", seq if isinstance(seq, int) else -1, "not a sealed record")
        try:
            actual = record_hash(record)
        except (TypeError, ValueError) as error:
            return ChainProblem(location, chain_id, seq, str(error))
        if actual != record.get("record_hash"):
            return ChainProblem(location, chain_id, seq, "record_hash does not match the content (record altered)")
        previous = self.state.get(chain_id)
        if previous is None:
            if seq == 1 and record["prev_hash"] != GENESIS_HASH:
                return ChainProblem(location, chain_id, seq, "first record of the chain must follow the genesis hash")
            if seq > 1:
                self.anchored[chain_id] = seq
        else:
            last_seq, last_hash = previous
            if seq != last_seq + 1:
                reason = f"expected chain_seq {last_seq + 1} after {last_seq} (record missing or out of order)"
                return ChainProblem(location, chain_id, seq, reason)
            if record["prev_hash"] != last_hash:
                return ChainProblem(location, chain_id, seq, "prev_hash does not match the previous record's hash")
        self.state[chain_id] = (seq, str(record["record_hash"]))
        return None

    @property
    def chains(self) -> int:
        return len(self.state)


class SqliteChainState(MutableMapping[str, tuple[int, str]]):
    """Chain heads in a SQLite file: constant memory however many chains a bundle holds."""

    def __init__(self, path: str = ":memory:") -> None:
        # Only the export keeps chain heads on disk; the functions that seal records do not load sqlite3.
        import sqlite3  # noqa: PLC0415

        self.db: sqlite3.Connection = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-2000")
        self.db.execute("CREATE TABLE IF NOT EXISTS head (chain TEXT PRIMARY KEY, seq INTEGER, hash TEXT)")

    def __getitem__(self, chain: str) -> tuple[int, str]:
        row = self.db.execute("SELECT seq, hash FROM head WHERE chain = ?", (chain,)).fetchone()
        if row is None:
            raise KeyError(chain)
        return int(row[0]), str(row[1])

    def __setitem__(self, chain: str, head: tuple[int, str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO head VALUES (?, ?, ?)", (chain, head[0], head[1]))

    def __delitem__(self, chain: str) -> None:
        self.db.execute("DELETE FROM head WHERE chain = ?", (chain,))

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self.db.execute("SELECT chain FROM head"))

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM head").fetchone()[0])

    def close(self) -> None:
        self.db.close()
