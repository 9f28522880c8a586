"""The reconcile job's mapping template: JMESPath expressions that read a provider's incident list.

A template says where the incident list is in a page, how to reach the next page, and how one remote incident
maps to the service's correlation keys (``notification_id``, ``delivery_id``), its ``incident_id`` and a
normalized status (through a value map). JMESPath is a query language over the JSON already fetched: it has no
way to run code, open a file or reach the network, and only its built-in functions exist here (no custom
function table is ever registered), so a template can do nothing but read the page it is given.

Plain values in, plain values out: no AWS, no pydantic (the job runner imports this on its cold path).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath import functions as jmespath_functions
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

MAX_EXPRESSION_LENGTH = 512
MAX_ID_LENGTH = 256

# Statuses a remote incident can map to. Only the ACK-like ones (``alerts.ack.ACK_LIKE``) can change anything.
REMOTE_STATUSES = ("triggered", "acknowledged", "resolved", "closed")
DEFAULT_STATUS_MAP: dict[str, str] = {
    "triggered": "triggered",
    "open": "triggered",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
    "closed": "closed",
}
PAGE_STYLES = ("offset", "cursor", "link", "none")

DEFAULT_TEMPLATE: dict[str, Any] = {
    "incidents": "incidents",
    "notification_id": "custom_details.notification_id || notification_id",
    "delivery_id": "custom_details.delivery_id || delivery_id",
    "incident_id": "custom_details.incident_id || incident_id",
    "status": "status",
    "remote_id": "id || incident_key",
    "status_map": {},
    "next_page": {
        "style": "offset",
        "has_more": "more",
        "offset_param": "offset",
        "limit_param": "limit",
        "cursor": "next_cursor",
        "cursor_param": "cursor",
        "link": "next",
        "page_size": 100,
    },
}
EXPRESSION_FIELDS = ("incidents", "notification_id", "delivery_id", "incident_id", "status", "remote_id")
PAGE_EXPRESSION_FIELDS = ("has_more", "cursor", "link")
_BUILTIN_FUNCTIONS = frozenset(getattr(jmespath_functions.Functions, "FUNCTION_TABLE", {}))


class MappingError(ValueError):
    """A template expression does not compile or names something that does not exist; the message says which."""


@dataclass(frozen=True)
class MappedIncident:
    """One remote incident read through a template: its correlation keys and its normalized status."""

    position: int
    remote_id: str | None
    notification_id: str | None
    delivery_id: str | None
    incident_id: str | None
    status: str
    raw_status: str


@dataclass(frozen=True)
class MappingProblem:
    """A remote incident the template could not read; ``reason`` says what was wrong with it."""

    position: int
    remote_id: str | None
    reason: str


@dataclass(frozen=True)
class PageRule:
    """How the next page is found: by offset, by a cursor from the page, by a link in the page, or not at all."""

    style: str
    has_more: ParsedResult
    offset_param: str
    limit_param: str
    cursor: ParsedResult
    cursor_param: str
    link: ParsedResult
    page_size: int


@dataclass(frozen=True)
class CompiledMapping:
    """A validated template, ready to read pages."""

    incidents: ParsedResult
    fields: Mapping[str, ParsedResult | None]
    status_map: Mapping[str, str]
    next_page: PageRule
    source: Mapping[str, Any] = field(default_factory=dict)

    def incidents_of(self, page: Any) -> list[Any]:
        """The incident list of a page; raises :class:`MappingError` when the expression finds no list there."""
        try:
            found = self.incidents.search(page)
        except JMESPathError as error:
            raise MappingError(f"the incidents expression failed on this page: {error}") from error
        if found is None:
            return []
        if not isinstance(found, list):
            raise MappingError(f"the incidents expression found a {type(found).__name__}, expected a list")
        return found

    def read(self, incident: Any, position: int) -> MappedIncident | MappingProblem:
        """Map one remote incident; a problem (no key, unknown status, wrong type) is returned, never raised."""
        remote_id = _safe_text(self.fields["remote_id"], incident)
        try:
            values = {
                name: _text(name, expression, incident)
                for name, expression in self.fields.items()
                if name != "remote_id"
            }
        except MappingError as error:
            return MappingProblem(position, remote_id, str(error))
        if not values["notification_id"] and not values["delivery_id"]:
            return MappingProblem(position, remote_id, "no notification_id or delivery_id in this incident")
        raw_status = values["status"]
        if raw_status is None:
            return MappingProblem(position, remote_id, "the status expression found nothing")
        status = self.status_map.get(raw_status)
        if status is None:
            known = ", ".join(sorted(self.status_map))
            return MappingProblem(position, remote_id, f"status {raw_status!r} is not in status_map (known: {known})")
        return MappedIncident(
            position=position,
            remote_id=remote_id,
            notification_id=values["notification_id"],
            delivery_id=values["delivery_id"],
            incident_id=values["incident_id"],
            status=status,
            raw_status=raw_status,
        )


def compile_expression(name: str, expression: str) -> ParsedResult:
    """Compile one JMESPath expression, refusing unknown functions and overlong text (checked before any run)."""
    if not isinstance(expression, str) or not expression.strip():
        raise MappingError(f"{name}: expected a non-empty JMESPath expression")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise MappingError(f"{name}: the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        parsed = jmespath.compile(expression)
    except JMESPathError as error:
        detail = str(error).splitlines()[0]
        raise MappingError(f"{name}: {expression!r} is not a valid JMESPath expression ({detail})") from error
    unknown = sorted(set(_function_names(parsed.parsed)) - _BUILTIN_FUNCTIONS)
    if unknown:
        raise MappingError(f"{name}: unknown JMESPath function {unknown[0]}(); only the built-in functions exist")
    return parsed


def compile_mapping(template: Mapping[str, Any]) -> CompiledMapping:
    """Compile a whole template (missing entries take :data:`DEFAULT_TEMPLATE`); raises :class:`MappingError`."""
    merged = resolve_template(template)
    fields: dict[str, ParsedResult | None] = {}
    for name in EXPRESSION_FIELDS[1:]:
        expression = merged.get(name)
        fields[name] = None if expression is None else compile_expression(name, expression)
    if fields["notification_id"] is None and fields["delivery_id"] is None:
        raise MappingError("the template must map notification_id or delivery_id (or both)")
    if fields["status"] is None:
        raise MappingError("status: expected a JMESPath expression for the incident's status")
    status_map = {**DEFAULT_STATUS_MAP, **dict(merged.get("status_map") or {})}
    for raw, status in status_map.items():
        if status not in REMOTE_STATUSES:
            raise MappingError(f"status_map[{raw!r}]: {status!r} is not one of {', '.join(REMOTE_STATUSES)}")
    return CompiledMapping(
        incidents=compile_expression("incidents", merged["incidents"]),
        fields=fields,
        status_map=status_map,
        next_page=_page_rule(merged["next_page"]),
        source=merged,
    )


def resolve_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template with every missing entry (and missing ``next_page`` entry) taken from the defaults."""
    merged = {**DEFAULT_TEMPLATE, **dict(template)}
    merged["next_page"] = {**DEFAULT_TEMPLATE["next_page"], **dict(template.get("next_page") or {})}
    return merged


def _page_rule(raw: Mapping[str, Any]) -> PageRule:
    style = raw["style"]
    if style not in PAGE_STYLES:
        raise MappingError(f"next_page.style: {style!r} is not one of {', '.join(PAGE_STYLES)}")
    page_size = raw["page_size"]
    if not isinstance(page_size, int) or not 1 <= page_size <= 500:
        raise MappingError("next_page.page_size: expected a whole number from 1 to 500")
    return PageRule(
        style=style,
        has_more=compile_expression("next_page.has_more", raw["has_more"]),
        offset_param=str(raw["offset_param"]),
        limit_param=str(raw["limit_param"]),
        cursor=compile_expression("next_page.cursor", raw["cursor"]),
        cursor_param=str(raw["cursor_param"]),
        link=compile_expression("next_page.link", raw["link"]),
        page_size=page_size,
    )


def _function_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            yield str(node.get("value"))
        for child in node.get("children", []):
            yield from _function_names(child)
    elif isinstance(node, list):
        for child in node:
            yield from _function_names(child)


def _text(name: str, expression: ParsedResult | None, incident: Any) -> str | None:
    if expression is None:
        return None
    try:
        value = expression.search(incident)
    except JMESPathError as error:
        raise MappingError(f"{name}: the expression failed on this incident ({error})") from error
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MappingError(f"{name}: expected a string, found a {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise MappingError(f"{name}: the value is longer than {MAX_ID_LENGTH} characters")
    return text


def _safe_text(expression: ParsedResult | None, incident: Any) -> str | None:
    try:
        return _text("remote_id", expression, incident)
    except MappingError:
        return None


def read_value(expression: ParsedResult, page: Any) -> Any:
    """Evaluate a page-level expression (``has_more``, ``cursor``, ``link``); a failing one reads as ``None``."""
    try:
        return expression.search(page)
    except JMESPathError:
        return None
