"""Read-ahead of keyset pages: the next page of a walk, computed while the client is still reading this one.

A client walking a connection (a run's `files`, a project's `runs`, an entity's `models`) can ask for page
n+1 only once it has received and parsed page n, whose last cursor it needs. Without read-ahead the server
idles while the client receives and parses, and the client idles while the server computes. So after
answering a page of a walk that is past its first page (the request came with a cursor) and has more pages,
the server executes the request for the next page (the same body with the cursor variable set to this
page's `endCursor`) and keeps the answer; when that request comes, it is answered from what was kept.

An answer is kept only with the database's data version read before it was computed, and served only while
the version is still that one: SQLite's ``PRAGMA data_version`` on a connection of its own that never
writes, which changes with every commit of any other connection, in any process. So a kept answer is the
very answer executing the request now would give (signed URLs aside: they were signed a few milliseconds
earlier), whatever was uploaded, deleted or revoked since. It is served only to the same API key, for the
same public URL, query text, operation name and variables, once, and within `TTL_SECONDS`.

Read-ahead needs the database to say cheaply whether anything changed: it is on for SQLite (the embedded
server), off for PostgreSQL, and never runs while other requests are being served (it must not take
a busy server's time for a page that may not be asked for).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

from ..db.database import DataVersion

# How long a kept answer may wait for its request (signed URLs in it were made when it was computed).
TTL_SECONDS = 10.0
# Answers kept at once (one per walk in progress in this process).
MAX_ENTRIES = 32


@dataclass(frozen=True)
class _Connection:
    """A connection field paged by a cursor variable: where it sits in the answer, and its pageInfo keys."""

    path: tuple[str, ...]
    cursor_variable: str
    page_info: str
    end_cursor: str
    has_next_page: str


@dataclass(frozen=True)
class _Kept:
    data_version: int
    made: float
    result: dict[str, Any]


class ReadAhead:
    """The answers computed ahead, and the analysis of which requests page through a connection.

    Args:
        data_version: The database's change counter (see the module docstring).
        signed_url_ttl: The lifetime of the signed URLs in answers: a kept answer is served only while it is
            young beside it (a tenth of it at most, and `TTL_SECONDS`).
    """

    def __init__(self, data_version: DataVersion, signed_url_ttl: float = 3600.0) -> None:
        self.data_version = data_version
        self.max_age = min(TTL_SECONDS, signed_url_ttl / 10)
        self._kept: OrderedDict[bytes, _Kept] = OrderedDict()
        self._connections: dict[tuple[int, str | None], tuple[DocumentNode, _Connection | None]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.kept = 0

    # -- answering -----------------------------------------------------------------------------------

    def take(self, api_key: str, body: Mapping[str, Any], public_url: str) -> dict[str, Any] | None:
        """The answer kept for this request, if one is and nothing was committed since it was computed."""
        if not self._kept:
            return None  # the common case, asked of every query: no hashing of the request for it
        key = _key(api_key, body, public_url)
        if key is None:
            return None
        with self._lock:
            kept = self._kept.pop(key, None)
        if kept is None or time.monotonic() - kept.made > self.max_age or kept.data_version != self.data_version():
            return None
        self.hits += 1
        return kept.result

    def next_request(
        self, document: DocumentNode, body: Mapping[str, Any], result: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The body asking for the page after this answer's, if this request walks a connection past its first
        page and more pages follow; else None."""
        if result.get("errors") or not isinstance(result.get("data"), dict):
            return None
        variables = body.get("variables")
        if not isinstance(variables, dict):
            return None
        connection = self._connection(document, body.get("operationName"))
        if connection is None or variables.get(connection.cursor_variable) is None:
            return None  # not a walk, or its first page: a look at it (files[0], a count) often stops there
        node: Any = result["data"]
        for key in (*connection.path, connection.page_info):
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node.get(connection.has_next_page) is not True:
            return None
        cursor = node.get(connection.end_cursor)
        if not isinstance(cursor, str):
            return None
        return {**body, "variables": {**variables, connection.cursor_variable: cursor}}

    def keep(
        self, api_key: str, body: Mapping[str, Any], public_url: str, version: int, result: dict[str, Any]
    ) -> None:
        """Keep `result`, computed for `body` after the database was at `version`."""
        key = _key(api_key, body, public_url)
        if key is None or result.get("errors"):
            return
        with self._lock:
            self._kept[key] = _Kept(version, time.monotonic(), result)
            self._kept.move_to_end(key)
            while len(self._kept) > MAX_ENTRIES:
                self._kept.popitem(last=False)
            self.kept += 1

    # -- which requests walk a connection ----------------------------------------------------------------

    def _connection(self, document: DocumentNode, operation_name: Any) -> _Connection | None:
        # W&B's Python layer sends "" for a document's only operation, as graphql-core's None.
        name = operation_name if isinstance(operation_name, str) and operation_name else None
        with self._lock:
            known = self._connections.get((id(document), name))
        if known is not None and known[0] is document:
            return known[1]
        found = _paged_connection(document, name)
        with self._lock:
            if len(self._connections) > 4 * MAX_ENTRIES:
                self._connections.clear()
            self._connections[(id(document), name)] = (document, found)
        return found


def _key(api_key: str, body: Mapping[str, Any], public_url: str) -> bytes | None:
    try:
        request = orjson.dumps(
            [body.get("query"), body.get("operationName") or None, body.get("variables") or {}],
            option=orjson.OPT_SORT_KEYS,
        )
    except TypeError:
        return None
    return hashlib.sha256(b"\0".join([api_key.encode(), public_url.encode(), request])).digest()


def _paged_connection(document: DocumentNode, operation_name: str | None) -> _Connection | None:
    """The one field of the operation whose `after` argument is a variable and that selects pageInfo's
    endCursor and hasNextPage, outside lists; None when there is not exactly one."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if len(operations) != 1:
        return None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    found: list[_Connection] = []

    def fields(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> list[FieldNode]:
        out: list[FieldNode] = []
        for selection in selection_set.selections if selection_set is not None else ():
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                out += fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    out += fields(fragment.selection_set, seen | {selection.name.value})
        return out

    def key(field: FieldNode) -> str:
        return field.alias.value if field.alias is not None else field.name.value

    def walk(selection_set: SelectionSetNode | None, path: tuple[str, ...]) -> None:
        for field in fields(selection_set, frozenset()):
            after = next((a for a in field.arguments or () if a.name.value == "after"), None)
            if after is not None and isinstance(after.value, VariableNode):
                info = [f for f in fields(field.selection_set, frozenset()) if f.name.value == "pageInfo"]
                if len(info) == 1:
                    sub = {f.name.value: key(f) for f in fields(info[0].selection_set, frozenset())}
                    if "endCursor" in sub and "hasNextPage" in sub:
                        found.append(
                            _Connection(
                                (*path, key(field)),
                                after.value.name.value,
                                key(info[0]),
                                sub["endCursor"],
                                sub["hasNextPage"],
                            )
                        )
                continue
            walk(field.selection_set, (*path, key(field)))

    walk(operations[0].selection_set, ())
    return found[0] if len(found) == 1 else None
