"""EventBridge event patterns, as Lambda applies them to a mapping's FilterCriteria."""

from __future__ import annotations

from typing import Any

_MISSING = object()


class PatternError(ValueError):
    """The pattern uses an operator the local stack does not implement."""


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Whether ``event`` matches ``pattern`` (every key present and matching; a list means any of)."""
    if not isinstance(event, dict):
        return False
    for key, expected in pattern.items():
        actual = event.get(key, _MISSING)
        if isinstance(expected, dict):
            if actual is _MISSING or not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if not _any_matches(expected, actual):
                return False
        else:
            raise PatternError(f"pattern value for {key!r} must be an object or a list")
    return True


def _any_matches(options: list[Any], actual: Any) -> bool:
    values = actual if isinstance(actual, list) else [actual]
    return any(_value_matches(option, value) for option in options for value in values)


def _value_matches(option: Any, value: Any) -> bool:
    if not isinstance(option, dict):
        return value is not _MISSING and option == value
    ((operator, argument),) = option.items()
    if operator == "exists":
        return (value is not _MISSING) == bool(argument)
    if value is _MISSING:
        return False
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == str(argument).lower()
    if operator == "anything-but":
        excluded = argument if isinstance(argument, list) else [argument]
        return value not in excluded
    raise PatternError(f"filter operator {operator!r} is not supported by the local stack")
