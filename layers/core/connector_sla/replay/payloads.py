"""Failure payloads as the workbench handles them: stored text, hashes, JSON Patch and the connector's schema.

A payload is kept as JSON text (compact, key order as reported), not as a DynamoDB map: it reads back exactly as
it was written, whatever its numbers, nesting or size, so a hash recorded in a row's history can always be
recomputed from what is stored. Hashes are the SHA-256 of the canonical form (sorted keys, no spaces, UTF-8), so
they do not depend on key order.

Pure functions, no AWS. Refusals raise :mod:`connector_sla.errors` exceptions whose message says what to fix.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import jsonpointer

from connector_sla.errors import Conflict, PayloadTooLarge, ValidationFailed

# A row holds its payload, its original and its patches; these bounds keep it far below DynamoDB's 400 KB item.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PATCH_BYTES = 16 * 1024
MAX_SCHEMA_PROBLEMS = 20

_PATCH_ERRORS = (
    jsonpatch.JsonPatchException,
    jsonpointer.JsonPointerException,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
)


def payload_text(payload: Any, *, what: str = "payload") -> str:
    """The payload as compact JSON text (key order kept); refuses what JSON cannot hold or what is too large."""
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as error:
        raise ValidationFailed(f"{what} holds a number that is not finite (NaN or Infinity); JSON has none") from error
    size = len(text.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"{what} is {size} bytes as JSON; at most {MAX_PAYLOAD_BYTES} bytes are kept per dead-letter row"
        )
    return text


def canonical_bytes(payload: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes a payload hash is taken over."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def payload_sha256(payload: Any) -> str:
    """The SHA-256 (hex) of a payload's canonical JSON; the same for any key order."""
    return hashlib.sha256(canonical_bytes(payload)).hexdigest()


def read_payload(text: str) -> Any:
    """A stored payload back as a JSON value."""
    return json.loads(text)


def patch_text(operations: Sequence[Mapping[str, Any]]) -> str:
    """The patch operations as JSON text, as they are recorded in the row's patch log."""
    text = payload_text(list(operations), what="patch")
    size = len(text.encode())
    if size > MAX_PATCH_BYTES:
        raise PayloadTooLarge(f"patch is {size} bytes as JSON; at most {MAX_PATCH_BYTES} bytes are accepted")
    return text


def apply_json_patch(payload: Any, operations: Sequence[Mapping[str, Any]]) -> Any:
    """The payload after the RFC 6902 patch; the payload given is never modified.

    Operations are applied in order by the ``jsonpatch`` library; the first one that does not apply (a missing
    path, a failed ``test``, a malformed operation) is named in a 400 and nothing of the patch takes effect.
    """
    document = copy.deepcopy(payload)
    for index, operation in enumerate(operations):
        try:
            document = jsonpatch.JsonPatch([dict(operation)]).apply(document, in_place=True)
        except _PATCH_ERRORS as error:
            described = _describe_operation(operation)
            raise ValidationFailed(
                f"patch operation {index} ({described}) does not apply: {error}; "
                "nothing was changed (RFC 6902 operations: add, remove, replace, move, copy, test)",
                details=[{"field": f"body.patch.{index}", "problem": str(error)}],
            ) from error
    return document


def _describe_operation(operation: Mapping[str, Any]) -> str:
    op = operation.get("op")
    path = operation.get("path")
    return f"{op if isinstance(op, str) else '?'} {path if isinstance(path, str) else '?'}"


def schema_problems(payload: Any, schema: Mapping[str, Any], *, connector_id: str) -> list[dict[str, str]]:
    """Every way (up to 20) the payload breaks the connector's JSON Schema; an empty list when it conforms.

    The schema's own ``$schema`` picks the draft (2020-12 when absent). References are resolved inside the schema
    only: nothing is fetched. A schema that is itself invalid is the connector's configuration problem (409).
    """
    # jsonschema is heavy to import and only needed when a connector has a schema: keep it off the cold path.
    from jsonschema import SchemaError  # noqa: PLC0415
    from jsonschema.validators import validator_for  # noqa: PLC0415
    from referencing.exceptions import Unresolvable  # noqa: PLC0415

    document = dict(schema)
    try:
        validator_class = validator_for(document)
        validator_class.check_schema(document)
        errors = sorted(validator_class(document).iter_errors(payload), key=lambda error: list(error.absolute_path))
        problems = []
        for error in errors[:MAX_SCHEMA_PROBLEMS]:
            pointer = "".join(f"/{part}" for part in error.absolute_path)
            problems.append({"field": f"payload{pointer}", "problem": error.message})
    except SchemaError as error:
        raise Conflict(
            f"connector {connector_id} has a payload_schema that is not a valid JSON Schema ({error.message}); "
            f"fix it with PUT /events/connectors/{connector_id}"
        ) from error
    except Unresolvable as error:
        raise Conflict(
            f"connector {connector_id} has a payload_schema with a reference that cannot be resolved inside the "
            f"schema ({error}); fix it with PUT /events/connectors/{connector_id}"
        ) from error
    return problems


def check_against_schema(payload: Any, schema: Mapping[str, Any] | None, *, connector_id: str) -> None:
    """Refuse (400) a payload the connector's schema refuses; every payload passes when there is no schema."""
    if schema is None:
        return
    problems = schema_problems(payload, schema, connector_id=connector_id)
    if problems:
        shown = "; ".join(f"{problem['field']}: {problem['problem']}" for problem in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValidationFailed(
            f"the patched payload does not satisfy the payload_schema of connector {connector_id}: {shown}{more}; "
            "nothing was changed",
            details=problems,
        )


def chunk_by_size(sizes: Sequence[int], *, max_count: int, max_bytes: int) -> list[list[int]]:
    """Indexes of ``sizes`` grouped in order into batches of at most ``max_count`` entries and ``max_bytes``.

    An entry larger than ``max_bytes`` on its own still gets a batch of its own (the service refuses it).
    """
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index, size in enumerate(sizes):
        if current and (len(current) >= max_count or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        batches.append(current)
    return batches
