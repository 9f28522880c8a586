"""Provider mappings: JMESPath expressions that read the correlation keys, status, event id, ETA and actor out of a
provider's own payload, and the status map that turns the provider's words into ours.

JMESPath is a query language with no way to run code, read files or reach the network; only its built-in
functions exist here. Mappings are checked when a provider is saved (:func:`check_mapping`) and applied to each
callback (:func:`apply_mapping`), which refuses values of the wrong type with a message naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.functions import Functions

from connector_sla.callbacks.intake import NORMALIZED_STATUSES
from connector_sla.timeutil import parse_iso, to_iso

MAPPING_FIELDS = ("notification_id", "delivery_id", "status", "event_id", "incident_id", "connector_id", "eta", "actor")
CORRELATION_FIELDS = ("notification_id", "delivery_id")
MAX_EXPRESSION = 512
MAX_STATUS_MAP = 200
MAX_VALUE = 200

_FUNCTIONS = Functions().FUNCTION_TABLE

# A PagerDuty v3 webhook, read natively: the escalation sends dedup_key = notification_id, which PagerDuty
# returns as the incident's incident_key.
PAGERDUTY_V3_MAPPING: dict[str, str] = {
    "notification_id": "event.data.incident_key",
    "status": "event.event_type",
    "event_id": "event.id",
    "actor": "event.agent.summary",
}
PAGERDUTY_V3_STATUS_MAP: dict[str, str] = {
    "incident.triggered": "triggered",
    "incident.acknowledged": "acknowledged",
    "incident.unacknowledged": "unacknowledged",
    "incident.resolved": "resolved",
    "incident.reopened": "reopened",
    "incident.escalated": "escalated",
    "incident.reassigned": "reassigned",
    "incident.delegated": "delegated",
    "incident.annotated": "annotated",
    "incident.priority_updated": "priority_changed",
    "incident.responder.added": "responder_added",
    "incident.status_update_published": "status_update",
}


class MappingRefused(Exception):
    """A callback's payload does not yield what the mapping promises; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class MappedCallback(NamedTuple):
    """The values a mapping read from one payload, typed and normalized."""

    status: str
    raw_status: str
    notification_id: str | None = None
    delivery_id: str | None = None
    incident_id: str | None = None
    event_id: str | None = None
    eta: str | None = None
    actor: str | None = None
    connector_id: str | None = None


# ---------------------------------------------------------------------------------------------- saving


def check_mapping(mapping: Mapping[str, Any], status_map: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every problem of a mapping and status map, as ``{"field", "problem"}`` entries; empty when it is valid.

    Each expression must be a string that compiles and calls only JMESPath's built-in functions with the right
    number of arguments; ``status`` and one of ``notification_id``/``delivery_id`` must be mapped; the status map
    may only produce known statuses.
    """
    problems: list[dict[str, str]] = []
    for name, expression in mapping.items():
        where = f"mapping.{name}"
        if name not in MAPPING_FIELDS:
            problems.append({"field": where, "problem": f"unknown field; mappable: {', '.join(MAPPING_FIELDS)}"})
        elif not isinstance(expression, str) or not expression.strip():
            problems.append({"field": where, "problem": "must be a non-empty JMESPath expression"})
        elif len(expression) > MAX_EXPRESSION:
            problems.append({"field": where, "problem": f"longer than {MAX_EXPRESSION} characters"})
        else:
            problem = _expression_problem(expression)
            if problem:
                problems.append({"field": where, "problem": problem})
    if "status" not in mapping:
        problems.append({"field": "mapping.status", "problem": "required: the expression that reads the status"})
    if not any(name in mapping for name in CORRELATION_FIELDS):
        problems.append({"field": "mapping", "problem": "map notification_id or delivery_id (or both)"})
    if len(status_map) > MAX_STATUS_MAP:
        problems.append({"field": "status_map", "problem": f"at most {MAX_STATUS_MAP} entries"})
    for raw, normalized in status_map.items():
        if not raw or len(raw) > MAX_VALUE:
            problems.append({"field": "status_map", "problem": f"provider values are 1 to {MAX_VALUE} characters"})
        elif normalized not in NORMALIZED_STATUSES:
            problems.append(
                {"field": f"status_map.{raw}", "problem": f"must be one of {', '.join(NORMALIZED_STATUSES)}"}
            )
    return problems


def _expression_problem(expression: str) -> str | None:
    try:
        parsed = jmespath.compile(expression).parsed
    except JMESPathError as error:
        return f"does not compile as JMESPath: {str(error).splitlines()[0]}"
    for node in _nodes(parsed):
        if node.get("type") != "function_expression":
            continue
        name = node.get("value")
        entry = _FUNCTIONS.get(name)
        if entry is None:
            return f"unknown function {name}(); only JMESPath's built-in functions exist"
        signature = entry["signature"]
        arguments = len(node.get("children", []))
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        if arguments < len(signature) or (arguments > len(signature) and not variadic):
            return f"{name}() takes {len(signature)} argument(s), got {arguments}"
    return None


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.get("children", []):
            yield from _nodes(child)
    elif isinstance(node, list):
        for child in node:
            yield from _nodes(child)


# ---------------------------------------------------------------------------------------------- applying


def apply_mapping(payload: Any, mapping: Mapping[str, str], status_map: Mapping[str, str]) -> MappedCallback:
    """Read a callback's values out of ``payload``; raises :class:`MappingRefused` naming the field at fault."""
    values = {
        name: _search(name, expression, payload) for name, expression in mapping.items() if name in MAPPING_FIELDS
    }
    raw_status = _text(values.get("status"), "status")
    if raw_status is None:
        raise MappingRefused("status", f"callback has no status (read with {mapping.get('status')!r})")
    mapped = MappedCallback(
        status=normalize_status(raw_status, status_map),
        raw_status=raw_status,
        notification_id=_text(values.get("notification_id"), "notification_id"),
        delivery_id=_text(values.get("delivery_id"), "delivery_id"),
        incident_id=_text(values.get("incident_id"), "incident_id"),
        event_id=_event_id(values.get("event_id")),
        eta=_eta(values.get("eta")),
        actor=_text(values.get("actor"), "actor"),
        connector_id=_text(values.get("connector_id"), "connector_id"),
    )
    if not (mapped.notification_id or mapped.delivery_id):
        read_with = "; ".join(f"{name} from {mapping[name]!r}" for name in CORRELATION_FIELDS if name in mapping)
        raise MappingRefused(
            "notification_id",
            "callback names no notification: send a correlation key, notification_id or delivery_id; this "
            f"provider reads {read_with or 'neither'}",
        )
    return mapped


def normalize_status(raw: str, status_map: Mapping[str, str]) -> str:
    """Our status for a provider's value: the status map first (exact, then case-insensitive), else our own word."""
    normalized = status_map.get(raw) or status_map.get(raw.lower()) or raw.strip().lower()
    if normalized not in NORMALIZED_STATUSES:
        shown = raw if len(raw) <= 60 else raw[:60] + "..."
        raise MappingRefused(
            "status",
            f"status {shown!r} is not known: expected one of {', '.join(NORMALIZED_STATUSES)}, or a value of the "
            "provider's status_map",
        )
    return normalized


def _search(name: str, expression: str, payload: Any) -> Any:
    try:
        return jmespath.search(expression, payload)
    except JMESPathError as error:
        raise MappingRefused(name, f"the {name} mapping cannot be applied to this payload: {error}") from error


def _text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MappingRefused(name, f"{name} must be a string, got {_json_type(value)}")
    if len(value) > MAX_VALUE or not value.isprintable():
        raise MappingRefused(name, f"{name} must be printable text of at most {MAX_VALUE} characters")
    return value


def _event_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        # A number of thousands of digits is no event id (and Python refuses to print the longest ones).
        if abs(value) >= 10 ** (MAX_VALUE - 1):
            raise MappingRefused("event_id", f"event_id must be text or a number of at most {MAX_VALUE - 1} digits")
        return _text(str(value), "event_id")
    return _text(value, "event_id")


def _eta(value: Any) -> str | None:
    text = _text(value, "eta")
    if text is None:
        return None
    try:
        return to_iso(parse_iso(text))
    except (ValueError, OverflowError) as error:
        raise MappingRefused(
            "eta", "eta must be an ISO 8601 time with a UTC offset, e.g. 2026-12-03T19:22:00Z"
        ) from error


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
