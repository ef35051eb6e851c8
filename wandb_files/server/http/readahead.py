"""GraphQL requests answered: on the event loop or in a thread, and the next page of a walk read ahead.

`Queries` is the one way the endpoint executes a GraphQL request. It does three things on top of
`execute_graphql`.

Where a request runs. Over SQLite with local blobs a query only computes: WAL reads never wait for a writer,
and no query field writes. Under the GIL a thread would run it no sooner, and its two thread switches cost as
much as a small page, so queries run on the event loop. But a query may be slow (a pattern or filter that
scans a big table), and the loop serves every other request meanwhile; so its SQLite statements run under a
deadline (`--inline-query-ms`, a few milliseconds from the query's start; SQLite's progress handler): past it
the query is aborted and executed again in a worker thread. The Python between and after the statements is not
cut short, but its work is proportional to the rows the statements returned, and a statement returning many
rows runs past the deadline itself, so a big page goes to a thread with the Python that builds it. Mutations,
and everything over PostgreSQL or S3 (network waits), run in the thread pool. docs/performance.md#listing has
what running on the loop saves, measured against running every query in a thread.

Read-ahead. A client walking a connection (a run's `files`, a project's `runs`, an entity's `models`) can ask
for page n+1 only once it has received and parsed page n, whose last cursor it needs. Without read-ahead the
server idles while the client receives and parses, and the client idles while the server computes. So after
answering a page of a walk that is past its first page (the request came with a cursor) and has more pages,
an otherwise idle server executes the request for the next page (the same body with the cursor variable set to
this page's `endCursor`) and keeps its encoded answer; when that request comes, it is answered from what was
kept (a request that comes while the page is still being computed waits for it).

What is kept is bounded by count (`MAX_ENTRIES`), by bytes (`MAX_BYTES`: a page bigger than that is not kept,
and the oldest go to make room) and by age: an answer is served only within `max_age` of being computed
(signed URLs in it were made then), and a timer drops it when that passes, whether asked for or not.

Why a kept answer is the answer. It is kept with the database's data version read before it was computed,
and served only while the version is still that one: SQLite's ``PRAGMA data_version`` on a connection of its
own that never writes, which changes with every commit of any other connection, in any process. So it is the
very answer executing the request now would give (signed URLs aside), whatever was uploaded, deleted or
changed since. It is served only to the same API key, for the same public URL, query text, operation name and
variables, once.

Why serving it before authenticating is safe. A kept answer is served without looking the key up again. That
relies on this invariant: everything that changes who a key belongs to (a key replaced, as `wandb-files
server --api-key` does for the admin through `db/users.py`'s `ensure_admin`; a user's row changed or removed)
is a commit to the same database, so it changes the data version, and the kept answer is not served: the
request is executed and authenticated afresh. A change that does not commit (a key table in another database,
an in-memory allow list) would break it; `take` is where it is relied on.

When read-ahead is on: `read_ahead_off_reason` says, with the reason when it is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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
from sqlalchemy import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from ..config import ServerConfig
from ..db.database import DataVersion, data_version_for
from ..graphql.documents import DocumentCache
from ..storage import BlobStore

# How long a kept answer may wait for its request at most (signed URLs in it were made when it was computed).
TTL_SECONDS = 10.0
# Answers kept at once (one per walk in progress in this process), and their encoded size together.
MAX_ENTRIES = 32
MAX_BYTES = 64 * 1024 * 1024
# On an answer that was computed ahead: for tests and for whoever wonders.
READ_AHEAD_HEADER = "X-Wandb-Files-Read-Ahead"

logger = logging.getLogger(__name__)


class TimeLimitExceeded(Exception):
    """A query executed on the event loop ran its SQLite statements past its deadline (and was aborted)."""


class Execute(Protocol):
    """`GraphQLEndpoint.execute_graphql`: authenticate and execute one request; a `deadline` (on
    `time.monotonic()`'s clock) aborts its SQLite statements past it with `TimeLimitExceeded`."""

    def __call__(
        self, api_key: str, body: dict[str, Any], public_url: str, *, deadline: float | None = None
    ) -> tuple[int, dict[str, Any]]: ...


def read_ahead_off_reason(config: ServerConfig, engine: Engine, store: BlobStore) -> str | None:
    """Why a server with these settings reads no page ahead, or None when it does.

    Args:
        config: The server's settings.
        engine: Its database engine.
        store: Its blob store.

    Returns:
        None when read-ahead is on, else the reason it is off.
    """
    if not config.read_ahead:
        return "turned off (--no-read-ahead)"
    if engine.dialect.name != "sqlite":
        return (
            f"the database is {engine.dialect.name}, not SQLite: there is no cheap way to know that nothing "
            "changed (SQLite's PRAGMA data_version), and a balancer would send the next page to another server"
        )
    if store.presigned:
        return (
            "the blobs are in S3: a server set up for scale-out, whose next page a balancer would send to "
            "another instance, and whose queries wait on the network, so they run in threads"
        )
    if data_version_for(engine) is None:
        return "the SQLite database is not a file (no other connection can see its commits)"
    return None


def _runs_inline(config: ServerConfig, engine: Engine, store: BlobStore) -> float | None:
    """The deadline (seconds) for queries on the event loop, or None when they all run in threads."""
    if config.inline_query_ms <= 0 or engine.dialect.name != "sqlite" or store.presigned:
        return None
    return config.inline_query_ms / 1000


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
    body: bytes


class KeptAnswers:
    """Encoded answers computed ahead, by request key, bounded by count, bytes and age (used on the event loop).

    Args:
        data_version: The database's change counter (see the module docstring).
        max_age: How long an answer may wait for its request, in seconds.
        max_entries: How many answers are kept at once.
        max_bytes: How many bytes they may take together; a bigger answer is not kept.
    """

    def __init__(
        self, data_version: DataVersion, max_age: float, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES
    ) -> None:
        self.data_version = data_version
        self.max_age = max_age
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._kept: OrderedDict[bytes, _Kept] = OrderedDict()  # oldest first
        self.hits = 0
        self.kept = 0

    def __len__(self) -> int:
        return len(self._kept)

    def take(self, key: bytes) -> bytes | None:
        """The answer kept under `key` (once), if it is young and nothing was committed since it was computed.

        Serving it authenticates nothing: a key revoked since was revoked by a commit, which changed the data
        version (the invariant in the module docstring), so that answer is not served.
        """
        kept = self._kept.pop(key, None)
        if kept is None:
            return None
        self.nbytes -= len(kept.body)
        if time.monotonic() - kept.made > self.max_age or kept.data_version != self.data_version():
            return None
        self.hits += 1
        return kept.body

    def keep(self, key: bytes, version: int, body: bytes) -> bool:
        """Keep `body`, computed after the database was at `version`, making room by dropping the oldest.

        Returns:
            Whether it was kept (not when it alone is over the byte bound).
        """
        if len(body) > self.max_bytes:
            return False
        old = self._kept.pop(key, None)
        if old is not None:
            self.nbytes -= len(old.body)
        while self._kept and (len(self._kept) >= self.max_entries or self.nbytes + len(body) > self.max_bytes):
            _, dropped = self._kept.popitem(last=False)
            self.nbytes -= len(dropped.body)
        self._kept[key] = _Kept(version, time.monotonic(), body)
        self.nbytes += len(body)
        self.kept += 1
        return True

    def sweep(self) -> float | None:
        """Drop the answers too old to be served.

        Returns:
            Seconds until the oldest one left expires, or None when none is left.
        """
        now = time.monotonic()
        while self._kept:
            key, oldest = next(iter(self._kept.items()))
            if now - oldest.made <= self.max_age:
                return oldest.made + self.max_age - now
            del self._kept[key]
            self.nbytes -= len(oldest.body)
        return None


class Queries:
    """The one way GraphQL requests are executed: where each runs, and the pages read ahead of walks.

    Args:
        execute: Authenticates and executes one request (`GraphQLEndpoint.execute_graphql`).
        documents: The parsed documents (which requests are queries, which walk a connection).
        config: The server's settings.
        engine: Its database engine.
        store: Its blob store.
        idle: Whether this process serves no other request than the one asking (read-ahead waits for that).
    """

    def __init__(
        self,
        execute: Execute,
        documents: DocumentCache,
        config: ServerConfig,
        engine: Engine,
        store: BlobStore,
        idle: Callable[[], bool],
    ) -> None:
        self._execute = execute
        self._documents = documents
        self._idle = idle
        self.inline_limit = _runs_inline(config, engine, store)
        self.off_reason = read_ahead_off_reason(config, engine, store)
        version = data_version_for(engine) if self.off_reason is None else None
        self.kept: KeptAnswers | None = None
        if version is not None:
            self.kept = KeptAnswers(version, min(TTL_SECONDS, config.signed_url_ttl / 10))
        self._connections: dict[tuple[int, str | None], tuple[DocumentNode, _Connection | None]] = {}
        # Pages being read ahead, by request key: their request waits for them rather than executing twice.
        self._computing: dict[bytes, asyncio.Future[None]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """Close the data version's connection and stop the sweeps."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.kept is not None:
            self.kept.data_version.close()

    async def respond(self, api_key: str, body: dict[str, Any], public_url: str) -> Response:
        """The response to one GraphQL request: kept, or executed (and the next page read ahead after it).

        Args:
            api_key: The request's API key (not checked yet).
            body: The request's JSON body.
            public_url: The base of the absolute URLs in the answer.

        Returns:
            The JSON response, with the read-ahead of the next page as its background task when there is one.
        """
        if not self._documents.is_query(body.get("query"), body.get("operationName")):
            status, result = await run_in_threadpool(self._execute, api_key, body, public_url)
            return GraphQLResponse(result, status)
        kept = self.kept
        # The common case, asked of every query: nothing kept, no hashing of the request for it.
        key = _key(api_key, body, public_url) if kept is not None and (len(kept) or self._computing) else None
        if key is not None and kept is not None:
            computing = self._computing.get(key)
            if computing is not None:  # its page is being computed: wait for it, not longer than it may be kept
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(computing), kept.max_age)
            answer = kept.take(key)
            if answer is not None:
                return Response(answer, media_type="application/json", headers={READ_AHEAD_HEADER: "hit"})
        status, result = await self._run(api_key, body, public_url)
        ahead = self._next_request(body, result) if kept is not None and status == 200 and self._idle() else None
        background = BackgroundTask(self._read_ahead, api_key, ahead, public_url) if ahead is not None else None
        return GraphQLResponse(result, status, background=background)

    async def _run(self, api_key: str, body: dict[str, Any], public_url: str) -> tuple[int, dict[str, Any]]:
        """Execute a query on the event loop under the statement deadline, else (or past it) in a thread."""
        if self.inline_limit is not None:
            try:
                return self._execute(api_key, body, public_url, deadline=time.monotonic() + self.inline_limit)
            except TimeLimitExceeded:
                logger.debug("a query ran past --inline-query-ms on the event loop: running it in a thread")
        return await run_in_threadpool(self._execute, api_key, body, public_url)

    async def _read_ahead(self, api_key: str, body: dict[str, Any], public_url: str) -> None:
        """Execute `body` (the next page of a walk) after this response went out, and keep its answer."""
        await asyncio.sleep(0)  # let the transport send what it could not at once of the page just answered
        kept = self.kept
        if kept is None or not self._idle():  # others came meanwhile: theirs come first
            return
        key = _key(api_key, body, public_url)
        if key is None or key in self._computing:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._computing[key] = done
        try:
            version = kept.data_version()  # before any read: a commit after it makes the answer unusable
            status, result = await self._run(api_key, body, public_url)
            if status == 200 and not result.get("errors") and kept.keep(key, version, orjson.dumps(result)):
                self._sweep_later()
        except Exception:  # the request itself, if it comes, is executed and reports it
            logger.debug("reading ahead failed", exc_info=True)
        finally:
            del self._computing[key]
            done.set_result(None)

    def _sweep_later(self, delay: float | None = None) -> None:
        if self._sweeper is None and self.kept is not None:
            delay = self.kept.max_age if delay is None else delay
            self._sweeper = asyncio.get_running_loop().call_later(delay + 0.01, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        if self.kept is not None:
            left = self.kept.sweep()
            if left is not None:
                self._sweep_later(left)

    def _next_request(self, body: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any] | None:
        """The body asking for the page after this answer's, if this request walks a connection past its first
        page and more pages follow; else None."""
        if result.get("errors") or not isinstance(result.get("data"), dict):
            return None
        variables = body.get("variables")
        if not isinstance(variables, dict):
            return None
        document = self._documents.parse(None, {"query": body["query"]})
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

    # -- which requests walk a connection ----------------------------------------------------------------

    def _connection(self, document: DocumentNode, operation_name: Any) -> _Connection | None:
        # W&B's Python layer sends "" for a document's only operation, as graphql-core's None.
        name = operation_name if isinstance(operation_name, str) and operation_name else None
        known = self._connections.get((id(document), name))
        if known is not None and known[0] is document:
            return known[1]
        found = _paged_connection(document, name)
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


class GraphQLResponse(JSONResponse):
    """A JSON response encoded by orjson: the very bytes of Starlette's json.dumps (compact, UTF-8, keys in
    order) for the values GraphQL results hold, several times faster on a page of files."""

    def render(self, content: Any) -> bytes:
        """The UTF-8 JSON text of `content`."""
        return orjson.dumps(content)
