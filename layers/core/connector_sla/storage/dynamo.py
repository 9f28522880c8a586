"""DynamoDB items as plain Python values, expression building and the few table operations the service uses.

Numbers come back as ``int`` when they are whole and ``float`` otherwise, never ``Decimal``: records hash and
serialize the same way whether they were just built or read back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from connector_sla.errors import ValidationFailed

Item = dict[str, Any]


class ConditionFailed(Exception):
    """A conditional write found the row in another state than expected."""


class TransactionCanceled(Exception):
    """A transaction was refused; ``reasons`` holds one cancellation code per action (``None`` when it passed)."""

    def __init__(self, reasons: list[str | None]) -> None:
        super().__init__(f"transaction canceled: {reasons}")
        self.reasons = reasons

    @property
    def condition_failed(self) -> bool:
        return "ConditionalCheckFailed" in self.reasons


# ---------------------------------------------------------------------------------------------- (de)serialization


def serialize(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(key): serialize(inner) for key, inner in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [serialize(inner) for inner in value]}
    if isinstance(value, set | frozenset):
        if all(isinstance(inner, str) for inner in value):
            return {"SS": sorted(value)}
        return {"NS": sorted(str(inner) for inner in value)}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def _number(text: str) -> int | float:
    if "." in text or "e" in text or "E" in text:
        number = float(text)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return int(text)


def deserialize(attribute: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value as a plain Python value."""
    ((kind, raw),) = attribute.items()
    if kind == "S":
        return raw
    if kind == "N":
        return _number(raw)
    if kind == "M":
        return {key: deserialize(inner) for key, inner in raw.items()}
    if kind == "L":
        return [deserialize(inner) for inner in raw]
    if kind == "BOOL":
        return raw
    if kind == "NULL":
        return None
    if kind == "B":
        return raw if isinstance(raw, bytes) else base64.b64decode(raw)
    if kind == "SS":
        return set(raw)
    if kind == "NS":
        return {_number(inner) for inner in raw}
    if kind == "BS":
        return set(raw)
    raise TypeError(f"unknown DynamoDB attribute type {kind}")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """A Python mapping as a DynamoDB item; ``None`` values are left out rather than stored as NULL."""
    return {key: serialize(value) for key, value in values.items() if value is not None}


def from_item(item: Mapping[str, Any]) -> Item:
    """A DynamoDB item as a plain dict."""
    return {key: deserialize(value) for key, value in item.items()}


# ---------------------------------------------------------------------------------------------- expressions


@dataclass
class Expression:
    """Placeholders shared by the key condition, filter, condition and update parts of one request."""

    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        """A ``#n`` placeholder for a (possibly dotted) attribute path."""
        parts = []
        for part in attribute.split("."):
            placeholder = f"#n{len(self.names)}"
            for existing, original in self.names.items():
                if original == part:
                    placeholder = existing
                    break
            self.names[placeholder] = part
            parts.append(placeholder)
        return ".".join(parts)

    def value(self, value: Any) -> str:
        """A ``:v`` placeholder for a value."""
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = serialize(value)
        return placeholder

    def update(
        self,
        *,
        set_: Mapping[str, Any] | None = None,
        remove: Sequence[str] = (),
        add: Mapping[str, int] | None = None,
    ) -> str:
        """An UpdateExpression from attributes to set, remove and add to."""
        clauses = []
        if set_:
            clauses.append("SET " + ", ".join(f"{self.name(key)} = {self.value(val)}" for key, val in set_.items()))
        if remove:
            clauses.append("REMOVE " + ", ".join(self.name(key) for key in remove))
        if add:
            clauses.append("ADD " + ", ".join(f"{self.name(key)} {self.value(val)}" for key, val in add.items()))
        return " ".join(clauses)

    def params(self) -> dict[str, Any]:
        """The ``ExpressionAttributeNames/Values`` request parameters, omitting empty ones."""
        params: dict[str, Any] = {}
        if self.names:
            params["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            params["ExpressionAttributeValues"] = dict(self.values)
        return params


# ---------------------------------------------------------------------------------------------- table access


class Table:
    """One DynamoDB table through the low-level client."""

    def __init__(self, name: str, dynamodb: Any) -> None:
        self.name = name
        self.dynamodb = dynamodb

    def get(self, key: Mapping[str, Any], *, consistent: bool = False) -> Item | None:
        response = self.dynamodb.get_item(TableName=self.name, Key=to_item(key), ConsistentRead=consistent)
        item = response.get("Item")
        return from_item(item) if item else None

    def put(self, item: Mapping[str, Any], *, condition: str | None = None, expr: Expression | None = None) -> None:
        params: dict[str, Any] = {"TableName": self.name, "Item": to_item(item)}
        if condition:
            params["ConditionExpression"] = condition
            params.update((expr or Expression()).params())
        try:
            self.dynamodb.put_item(**params)
        except ClientError as error:
            _raise_condition(error)
            raise

    def update(
        self,
        key: Mapping[str, Any],
        expr: Expression,
        update_expression: str,
        *,
        condition: str | None = None,
        return_values: str = "NONE",
    ) -> Item | None:
        params: dict[str, Any] = {
            "TableName": self.name,
            "Key": to_item(key),
            "UpdateExpression": update_expression,
            "ReturnValues": return_values,
            **expr.params(),
        }
        if condition:
            params["ConditionExpression"] = condition
        try:
            response = self.dynamodb.update_item(**params)
        except ClientError as error:
            _raise_condition(error)
            raise
        attributes = response.get("Attributes")
        return from_item(attributes) if attributes else None

    def delete(self, key: Mapping[str, Any], *, condition: str | None = None, expr: Expression | None = None) -> None:
        params: dict[str, Any] = {"TableName": self.name, "Key": to_item(key)}
        if condition:
            params["ConditionExpression"] = condition
            params.update((expr or Expression()).params())
        try:
            self.dynamodb.delete_item(**params)
        except ClientError as error:
            _raise_condition(error)
            raise

    def query_page(
        self,
        expr: Expression,
        key_condition: str,
        *,
        index: str | None = None,
        filter_expression: str | None = None,
        limit: int | None = None,
        start_key: Mapping[str, Any] | None = None,
        newest_first: bool = False,
        consistent: bool = False,
    ) -> tuple[list[Item], Item | None]:
        """One page of a query: its items and the key to continue from (``None`` when done)."""
        params: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ScanIndexForward": not newest_first,
            **expr.params(),
        }
        if index:
            params["IndexName"] = index
        if filter_expression:
            params["FilterExpression"] = filter_expression
        if limit:
            params["Limit"] = limit
        if start_key:
            params["ExclusiveStartKey"] = to_item(start_key)
        if consistent:
            params["ConsistentRead"] = True
        response = self.dynamodb.query(**params)
        last = response.get("LastEvaluatedKey")
        return [from_item(item) for item in response.get("Items", [])], (from_item(last) if last else None)

    def query_all(self, expr: Expression, key_condition: str, **kwargs: Any) -> Iterator[Item]:
        """Every item of a query, page after page."""
        start_key = kwargs.pop("start_key", None)
        while True:
            items, start_key = self.query_page(expr, key_condition, start_key=start_key, **kwargs)
            yield from items
            if start_key is None:
                return

    def scan_pages(
        self,
        *,
        segment: int | None = None,
        total_segments: int | None = None,
        raw: bool = False,
    ) -> Iterator[list[Any]]:
        """The whole table (or one parallel-scan segment), a page at a time."""
        params: dict[str, Any] = {"TableName": self.name}
        if total_segments and total_segments > 1:
            params.update(Segment=segment or 0, TotalSegments=total_segments)
        while True:
            response = self.dynamodb.scan(**params)
            items = response.get("Items", [])
            yield items if raw else [from_item(item) for item in items]
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def batch_get(self, keys: Sequence[Mapping[str, Any]], *, consistent: bool = False) -> list[Item]:
        """The items found for up to 100 keys (missing keys are simply absent), retrying unprocessed keys."""
        found: list[Item] = []
        request: dict[str, Any] = {self.name: {"Keys": [to_item(key) for key in keys], "ConsistentRead": consistent}}
        while request:
            response = self.dynamodb.batch_get_item(RequestItems=request)
            found.extend(from_item(item) for item in response.get("Responses", {}).get(self.name, []))
            request = response.get("UnprocessedKeys") or {}
        return found


def transact(dynamodb: Any, actions: list[dict[str, Any]], *, token: str | None = None) -> None:
    """Run TransactWriteItems; a refusal raises :class:`TransactionCanceled` with one reason per action."""
    params: dict[str, Any] = {"TransactItems": actions}
    if token:
        params["ClientRequestToken"] = token
    try:
        dynamodb.transact_write_items(**params)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            raise
        reasons = [
            None if reason.get("Code") in (None, "None") else reason.get("Code")
            for reason in error.response.get("CancellationReasons", [])
        ]
        raise TransactionCanceled(reasons) from error


def _raise_condition(error: ClientError) -> None:
    if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
        raise ConditionFailed(error.response["Error"].get("Message", "condition failed")) from error


# ---------------------------------------------------------------------------------------------- cursors


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    """An opaque pagination cursor for the key a page stopped at."""
    if last_key is None:
        return None
    raw = json.dumps(dict(last_key), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, expected_keys: set[str]) -> Item | None:
    """The key a cursor stands for; a cursor that was not produced by this API is refused with a 400."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except ValueError as error:
        raise ValidationFailed("cursor is not valid: pass the next_cursor of a previous page unchanged") from error
    if not isinstance(key, dict) or set(key) != expected_keys:
        raise ValidationFailed("cursor is not valid for this list: pass the next_cursor of a previous page unchanged")
    return key
