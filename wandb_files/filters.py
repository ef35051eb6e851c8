"""W&B's run filters (MongoDB-style documents): checked before they are sent, and serialised as W&B's client does.

The server evaluates a filter; what is checked here is only what is visibly wrong in the document itself, so
the mistake is reported with its place in the document (``filters["$and"][1]["config.lr"]["$gtt"]``) before
any request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["FIELD_OPERATORS", "LOGICAL_OPERATORS", "OPERATORS", "filters_json"]

#: Operators that combine whole filter documents: ``{"$or": [doc, doc]}``.
LOGICAL_OPERATORS = frozenset(("$and", "$or", "$nor"))
#: Operators that compare one field: ``{"config.lr": {"$gt": 0.01}}``.
FIELD_OPERATORS = frozenset(("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex"))
#: Every operator W&B documents for `Api.runs(filters=...)`.
OPERATORS = LOGICAL_OPERATORS | FIELD_OPERATORS


def filters_json(filters: Mapping[str, Any] | None) -> str:
    """The `filters` variable W&B's client sends: ``json.dumps(filters)``, ``"{}"`` for none.

    Args:
        filters: A filter document, e.g. ``{"config.model": "resnet", "summary_metrics.acc": {"$gt": 0.5}}``.

    Returns:
        The document as a JSON string.

    Raises:
        TypeError: `filters` is not a dict (or other mapping).
        ValueError: the document is malformed: an unknown operator, an operator where a field belongs (or the
            reverse), a key that is not a string, a value that is not JSON (a set, an object, NaN), or an operand
            of the wrong kind (``$in`` without a list, ``$exists`` without a bool, ``$regex`` without a string).
            The message names the place, e.g. ``filters["$and"][1]["config.lr"]["$gtt"]``.
    """
    if filters is None:
        return "{}"
    if not isinstance(filters, Mapping):
        raise TypeError(f"filters must be a dict such as {{'state': 'finished'}}, not {type(filters).__name__}")
    return json.dumps(_document(filters, "filters"))


def _at(path: str, key: object) -> str:
    # JSON quoting shows keys as the server will see them (and tells "1" from 1).
    return f"{path}[{json.dumps(key) if isinstance(key, str) else repr(key)}]"


def _keys(node: Mapping[Any, Any], path: str) -> None:
    for key in node:
        if not isinstance(key, str):
            raise ValueError(f"{_at(path, key)}: keys must be strings, not {type(key).__name__}")
        if not key:
            raise ValueError(f"{path}: a key is the empty string")


def _document(node: object, path: str) -> dict[str, Any]:
    """A filter document: field conditions and logical operators, ANDed."""
    if not isinstance(node, Mapping):
        raise ValueError(f"{path} must be a filter document (a dict), not {type(node).__name__}")
    _keys(node, path)
    checked: dict[str, Any] = {}
    for key, value in node.items():
        where = _at(path, key)
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"{where} must be a non-empty list of filter documents")
            checked[key] = [_document(item, f"{where}[{i}]") for i, item in enumerate(value)]
        elif key in FIELD_OPERATORS:
            raise ValueError(f'{where}: {key} compares a field; write {{"<field>": {{"{key}": ...}}}}')
        elif key.startswith("$"):
            raise ValueError(f"{where}: unknown operator {key!r}; the operators are {', '.join(sorted(OPERATORS))}")
        else:
            checked[key] = _condition(value, where)
    return checked


def _condition(value: object, path: str) -> Any:
    """What a field is compared with: a value (equality) or an object of field operators."""
    if not (isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in value)):
        return _value(value, path)
    _keys(value, path)
    checked: dict[str, Any] = {}
    for op, operand in value.items():
        where = _at(path, op)
        if op not in FIELD_OPERATORS:
            if op in LOGICAL_OPERATORS:
                raise ValueError(f"{where}: {op} combines filter documents and cannot compare a field")
            if op.startswith("$"):
                known = ", ".join(sorted(FIELD_OPERATORS))
                raise ValueError(f"{where}: unknown operator {op!r}; a field's operators are {known}")
            raise ValueError(f"{where}: a field's operators cannot be mixed with plain keys")
        if op in ("$in", "$nin") and not isinstance(operand, (list, tuple)):
            raise ValueError(f"{where} must be a list of values, not {type(operand).__name__}")
        if op == "$exists" and not isinstance(operand, bool):
            raise ValueError(f"{where} must be true or false, not {operand!r}")
        if op == "$regex" and not isinstance(operand, str):
            raise ValueError(f"{where} must be a regular expression string, not {type(operand).__name__}")
        checked[op] = _value(operand, where)
    return checked


def _value(value: object, path: str) -> Any:
    """A JSON value, as plain dicts and lists."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} is not a JSON number")
        return value
    if isinstance(value, (list, tuple)):
        return [_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        _keys(value, path)
        return {key: _value(item, _at(path, key)) for key, item in value.items()}
    raise ValueError(f"{path}: a {type(value).__name__} is not a JSON value")
