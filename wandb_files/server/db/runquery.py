"""A short form of run filters for people, ``config.lr = 0.01 and summary.acc > 0.5 and tags in a,b``, compiled
to W&B's filter document, which `runfilters` then checks and compiles to SQL (so one compiler serves all).

Conditions are ``KEY OP VALUE`` joined by ``and``. Keys are those of filter documents (``state``, ``tags``,
``config.KEY``, ``summary_metrics.KEY``, ...), and ``summary.KEY`` for ``summary_metrics.KEY``. Operators:
``=`` (or ``==``), ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``~`` (a regular expression), ``in`` and ``not in``
(a comma-separated list), and ``exists`` / ``missing`` (no value). A value is JSON when it reads as JSON
(``0.01``, ``true``, ``null``, ``"a string, quoted"``, ``[1, 2]``), else the text as it stands; the values of
``state``, ``tags`` and the other run fields, which are text, stay text unless quoted (``tags in 2024,v1``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .runfilters import RunFilterError

_CONDITION = re.compile(
    r"\s*(?P<key>[^\s=!<>~]+)\s*(?P<op>==|!=|>=|<=|=|>|<|~|not\s+in\b|in\b|exists\b|missing\b)\s*", re.IGNORECASE
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)
_OPERATORS = {"!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte", "~": "$regex", "in": "$in"}
_OPERATORS["not in"] = "$nin"
#: The argument's name in errors.
PATH = "filter"


def _error(text: str, pos: int, message: str) -> RunFilterError:
    near = text[pos : pos + 20]
    return RunFilterError(PATH, f"at character {pos + 1}{f' ({near!r})' if near else ''}: {message}")


def _scalar(raw: str) -> Any:
    """`raw` as JSON when it is a JSON value, else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _value(text: str, pos: int, op: str, typed: bool) -> tuple[Any, int]:
    """The value starting at `pos` (bare words read as JSON when `typed`), and where it ends."""
    if pos < len(text) and text[pos] in '"[':
        try:
            value, end = json.JSONDecoder().raw_decode(text, pos)
        except ValueError as exc:
            raise _error(text, pos, f"a value starting with {text[pos]} must be JSON ({exc.args[0]})") from None
        if op in ("in", "not in") and not isinstance(value, list):
            value = [value]
        return value, end
    found = _AND.search(text, pos)
    end = found.start() if found else len(text)
    raw = text[pos:end].strip()
    if not raw:
        raise _error(text, pos, "a value is missing")
    alternative = _OR.search(text, pos, end)
    if alternative is not None:
        raise _error(
            text,
            alternative.start() + 1,
            "only 'and' joins conditions here: quote a value holding ' or ', or use JSON's $or",
        )
    read = _scalar if typed else str
    if op in ("in", "not in"):
        return [read(item.strip()) for item in raw.split(",") if item.strip()], end
    return (raw if op == "~" else read(raw)), end


def query_filters(text: str) -> dict[str, Any]:
    """The filter document a ``key op value and ...`` text stands for.

    Args:
        text: The text, e.g. ``config.lr = 0.01 and summary.acc > 0.5 and tags in a,b``.

    Returns:
        The document, e.g. ``{"$and": [{"config.lr": 0.01}, {"summary_metrics.acc": {"$gt": 0.5}},
        {"tags": {"$in": ["a", "b"]}}]}``; ``{}`` for blank text.

    Raises:
        RunFilterError: the text does not read as conditions (the message says at which character and why).
    """
    conditions: list[dict[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _CONDITION.match(text, pos)
        if match is None:
            raise _error(text, pos, "expected KEY OP VALUE, e.g. config.lr = 0.01 or tags in a,b")
        key = match["key"]
        if key.startswith("summary."):
            key = "summary_metrics." + key.removeprefix("summary.")
        op = " ".join(match["op"].lower().split())
        pos = match.end()
        if op in ("exists", "missing"):
            conditions.append({key: {"$exists": op == "exists"}})
        else:
            value, pos = _value(text, pos, op, key.startswith(("config.", "summary_metrics.")))
            conditions.append({key: value if op in ("=", "==") else {_OPERATORS[op]: value}})
        if pos < len(text):
            joined = _AND.match(text, pos) or re.compile(r"\s*and\s+", re.IGNORECASE).match(text, pos)
            if joined is None:
                raise _error(text, pos, "expected 'and' before the next condition")
            pos = joined.end()
    if not conditions:
        return {}
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def filters_text(text: str | None) -> str | None:
    """A filter as the web page's box takes it, as the JSON text `runfilters.selection` takes.

    Args:
        text: JSON (a filter document, starting with ``{``) or the ``key op value`` form; None or blank for none.

    Returns:
        The JSON text, or None for no filter.

    Raises:
        RunFilterError: the ``key op value`` form does not read (JSON is checked by `runfilters.parse_filters`).
    """
    if text is None or not text.strip():
        return None
    if text.lstrip().startswith("{"):
        return text
    return json.dumps(query_filters(text))
