"""One lazy, cursor-paginated sequence that every collection (files, runs) is built on.

A collection says only which query it sends, how to build the variables of a page, where the connection sits
in the answer and how a node becomes an object. Everything else lives here:

- Pages are fetched on demand. `len()`, indexing and slicing fetch only as far as they must.
- Each `for` loop walks the pages with its own cursor, so two nested loops over one collection do not
  disturb each other, and a loop does not keep every object it has yielded (memory stays flat on huge runs).
- Pages fetched for indexing are kept, so `files[3]` after `files[2]` costs no request. So are the first
  pages a count of a filtered collection walks (up to `KEEP_WHEN_COUNTING` objects): `list(files)` asks
  `len()` first, and then walks a small collection once, not twice.
- A loop that has gone past its first page reads one page ahead: the next page is requested in the background
  as soon as the cursor of the current one is known, so the server works on it while the loop converts and
  uses the current one. A loop that stops within the first page costs no extra request; one that stops later
  may leave one page fetched for nothing.
- The W&B names (`variables`, `last_response`, `cursor`, `more`, `update_variables()`, `convert_objects()`)
  keep their meaning, for code written against `wandb.apis.public`.
"""

from __future__ import annotations

import abc
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

if TYPE_CHECKING:
    from gql import GraphQLRequest

    from wandb_files.graphql import GraphQLClient

T = TypeVar("T")
_R = TypeVar("_R")

#: The largest page the server gives (and W&B's servers accept).
MAX_PER_PAGE = 10_000
#: How many objects of a filtered collection a count keeps for the loop that usually follows it (`list()`).
KEEP_WHEN_COUNTING = 10_000
#: How many names or ids one request carries (a listing by names, createRunFiles, deleteFiles, …).
BATCH_SIZE = 500


def batches(items: Iterable[T], size: int = BATCH_SIZE) -> Iterator[list[T]]:
    """`items` in lists of at most `size`, read lazily."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_per_page(per_page: object) -> int:
    """Return `per_page` if it is a usable page size.

    Raises:
        TypeError: it is not an int.
        ValueError: it is not between 1 and `MAX_PER_PAGE`.
    """
    if isinstance(per_page, bool) or not isinstance(per_page, int):
        raise TypeError(f"per_page must be an int, not {type(per_page).__name__}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
    return per_page


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a connection: its objects, the cursor after it, and whether more follow."""

    objects: list[T]
    cursor: str | None
    has_next: bool
    total: int | None


class Paginator(Generic[T], abc.ABC):
    """A lazy sequence over a GraphQL connection.

    Args:
        client: The GraphQL client (`Api.client`).
        variables: The query's variables other than the cursor and page size.
        per_page: How many objects one request fetches.

    Raises:
        TypeError, ValueError: `per_page` is not an int from 1 to 10,000.
    """

    QUERY: ClassVar[GraphQLRequest]
    #: The names of the query's cursor and page-size variables.
    CURSOR_VARIABLE: ClassVar[str] = "cursor"
    LIMIT_VARIABLE: ClassVar[str] = "perPage"

    def __init__(self, client: GraphQLClient, variables: Mapping[str, Any], per_page: int = 50) -> None:
        self.client = client
        self.per_page = check_per_page(per_page)
        self.variables: dict[str, Any] = dict(variables)
        self.last_response: dict[str, Any] | None = None
        self.objects: list[T] = []
        self._last_page: Page[T] | None = None  # last_response, parsed once
        self._length: int | None = None

    def _mark_empty(self) -> None:
        """Know without asking that the collection is empty (e.g. a `names` filter that names nothing)."""
        self._last_page = Page(objects=[], cursor=None, has_next=False, total=0)
        self._length = 0

    # -- what a collection says -----------------------------------------------------------------------

    @abc.abstractmethod
    def _connection(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """The connection (`edges`, `pageInfo`) inside a response; raise NotFoundError where it is null."""

    @abc.abstractmethod
    def _convert_node(self, node: Mapping[str, Any]) -> T:
        """Turn one edge's node into an object."""

    def _total(self, data: Mapping[str, Any]) -> int | None:
        """The exact size of the whole collection when the response tells it, else None."""
        return None

    # -- W&B's names --------------------------------------------------------------------------------

    @property
    def cursor(self) -> str | None:
        """The cursor of the last edge fetched into `objects` (None before the first page)."""
        return self._last_page.cursor if self._last_page is not None else None

    @property
    def more(self) -> bool:
        """True while pages beyond those in `objects` may exist."""
        return self._last_page is None or self._last_page.has_next

    @property
    def length(self) -> int:
        """The exact number of objects in the collection (fetches what it needs to know it)."""
        if self._length is None:
            if self._last_page is None:
                self._load_page()
            assert self._last_page is not None
            total = self._last_page.total
            if total is None:
                # A filtered collection: walk it to count. The first KEEP_WHEN_COUNTING objects are kept, so that
                # list(files), which asks len() first, walks a small collection once; the rest are counted only.
                while self.more and len(self.objects) < KEEP_WHEN_COUNTING and self._load_page():
                    pass
                total = len(self.objects) + (sum(1 for _ in self._walk(self.cursor)) if self.more else 0)
            self._length = total
        return self._length

    def update_variables(self) -> None:
        """Set the page size and cursor variables for the next page after `objects`."""
        self.variables.update(self._page_variables(self.cursor))

    def convert_objects(self) -> list[T]:
        """The objects of `last_response`'s edges."""
        return self._page(self.last_response).objects if self.last_response is not None else []

    # -- the machinery --------------------------------------------------------------------------------

    def _page_variables(self, cursor: str | None) -> dict[str, Any]:
        return {self.CURSOR_VARIABLE: cursor, self.LIMIT_VARIABLE: self.per_page}

    def _page(self, data: Mapping[str, Any]) -> Page[T]:
        edges, cursor, has_next = self._edges(data)
        return Page(
            objects=[self._convert_node(edge["node"]) for edge in edges],
            cursor=cursor,
            has_next=has_next,
            total=self._total(data),
        )

    def _edges(self, data: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], str | None, bool]:
        """A page's edges, the cursor after it and whether more follow, without converting a node."""
        connection = self._connection(data)
        edges = connection.get("edges") or []
        info = connection.get("pageInfo") or {}
        # W&B's client continues from the last edge's cursor; endCursor is the fallback.
        cursor = edges[-1].get("cursor") if edges else None
        return edges, cursor or info.get("endCursor"), bool(info.get("hasNextPage")) and bool(edges)

    def _fetch(self, cursor: str | None) -> dict[str, Any]:
        return self.client.execute(self.QUERY, {**self.variables, **self._page_variables(cursor)})

    def _load_page(self) -> bool:
        """Fetch the page after `objects` into `objects`; False when there was none."""
        if not self.more:
            return False
        self.update_variables()
        self.last_response = self.client.execute(self.QUERY, self.variables)
        self._last_page = self._page(self.last_response)
        self.objects.extend(self._last_page.objects)
        return True

    def _walk(self, cursor: str | None) -> Iterator[T]:
        """Yield every object after `cursor`, page by page, keeping none of them, one page read ahead."""
        ahead: _ReadAhead | None = None
        try:
            data = self._fetch(cursor)
            while True:
                edges, cursor, has_next = self._edges(data)
                pending: Future[dict[str, Any]] | None = None
                if has_next:
                    ahead = ahead or _ReadAhead(f"{type(self).__name__}-pages")
                    pending = ahead.submit(self._fetch, cursor)
                for edge in edges:
                    yield self._convert_node(edge["node"])
                if pending is None:
                    return
                data = pending.result()  # the page's own error (NotFoundError, TransportError, ...) surfaces here
        finally:
            if ahead is not None:
                ahead.close()

    def __iter__(self) -> Iterator[T]:
        if self._last_page is None:
            self._load_page()
        index = 0
        while index < len(self.objects):  # re-read each time: indexing elsewhere may extend the cache
            yield self.objects[index]
            index += 1
        if self.more:
            yield from self._walk(self.cursor)

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return self._slice(index)
        if isinstance(index, bool):
            raise TypeError("indices must be integers or slices, not bool")
        try:
            index = operator.index(index)  # numpy integers too
        except TypeError:
            raise TypeError(f"indices must be integers or slices, not {type(index).__name__}") from None
        position = index + len(self) if index < 0 else index
        while position >= len(self.objects) and self._load_page():
            pass
        if not 0 <= position < len(self.objects):
            raise IndexError(f"index {index} is out of range")
        return self.objects[position]

    def _slice(self, index: slice) -> list[T]:
        start, stop, step = (None if v is None else operator.index(v) for v in (index.start, index.stop, index.step))
        if step == 0:
            raise ValueError("slice step cannot be zero")
        if (step or 1) > 0 and (start or 0) >= 0 and stop is not None and stop >= 0:
            # A bounded forward slice needs no count: fetch the pages up to `stop`, no further.
            while len(self.objects) < stop and self._load_page():
                pass
            return self.objects[start:stop:step]
        return [self[i] for i in range(*slice(start, stop, step).indices(len(self)))]

    def _known_count(self) -> str:
        """The count for a repr, without fetching anything."""
        if self._length is not None:
            return str(self._length)
        if self._last_page is not None:
            if self._last_page.total is not None:
                return str(self._last_page.total)
            return f"{len(self.objects)}+" if self.more else str(len(self.objects))
        return "?"


class _ReadAhead:
    """One daemon thread running the page fetches of one loop, one at a time.

    A daemon, not a `ThreadPoolExecutor` worker: the interpreter joins those at exit, so Ctrl-C during a
    loop would wait for a slow page's timeout. A loop that ends early closes it; a fetch already running is
    left to finish in the background and its result dropped.
    """

    def __init__(self, name: str) -> None:
        self._jobs: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"wandb-files-{name}", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., _R], *args: Any) -> Future[_R]:
        future: Future[_R] = Future()
        with self._ready:
            self._jobs.append((future, fn, args))
            self._ready.notify()
        return future

    def close(self) -> None:
        with self._ready:
            for job in self._jobs:
                if job is not None:
                    job[0].cancel()
            self._jobs[:] = [None]
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs:
                    self._ready.wait()
                job = self._jobs.pop(0)
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001  # handed to the loop, which raises it where it waits
                future.set_exception(exc)
            else:
                future.set_result(result)
