"""The paginator's read-ahead as pure logic: a client that answers from a list of pages, no HTTP.

What users see of paging over a live server is in test_files.py; here are the orders of events that a live
server cannot be made to produce on cue: a page read ahead that fails, a loop closed while a page is read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Mapping
from typing import Any, cast

import pytest

from wandb_files.errors import NotFoundError
from wandb_files.paginator import Paginator


class _Pages:
    """A stand-in for GraphQLClient.execute: page k of `pages` for cursor "k", an exception where one is."""

    def __init__(self, pages: list[list[str] | BaseException], hold: threading.Event | None = None) -> None:
        self.pages = pages
        self.asked: list[str | None] = []
        self.hold = hold

    def execute(self, document: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
        cursor = variables["cursor"]
        self.asked.append(cursor)
        index = 0 if cursor is None else int(cursor)
        if self.hold is not None and index > 0:
            self.hold.wait(10)
        page = self.pages[index]
        if isinstance(page, BaseException):
            raise page
        more = index + 1 < len(self.pages)
        return {
            "edges": [{"node": {"name": name}} for name in page],
            "pageInfo": {"endCursor": str(index + 1), "hasNextPage": more},
        }


class _Names(Paginator[str]):
    QUERY = None  # type: ignore[assignment]  # _Pages ignores the document

    def _connection(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        return data

    def _convert_node(self, node: Mapping[str, Any]) -> str:
        return str(node["name"])


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wandb-files-_Names-pages"]


def test_a_page_read_ahead_that_fails_raises_where_the_loop_reaches_it() -> None:
    client = _Pages([["a", "b"], ["c", "d"], NotFoundError("run deleted meanwhile"), ["never"]])
    seen = []
    with pytest.raises(NotFoundError, match="deleted meanwhile"):
        for name in _Names(client, {}, per_page=2):  # type: ignore[arg-type]
            seen.append(name)
    assert seen == ["a", "b", "c", "d"]  # every file before the failed page, none after it
    assert client.asked == [None, "1", "2"]


def test_a_loop_that_ends_early_stops_its_reader() -> None:
    hold = threading.Event()
    client = _Pages([["a"], ["b"], ["c"], ["d"]], hold=hold)
    loop = cast(Generator[str, None, None], iter(_Names(client, {}, per_page=1)))  # type: ignore[arg-type]
    assert next(loop) == "a"
    hold.set()
    assert next(loop) == "b"  # page 2 read in the loop, page 3 ahead
    assert _readers()
    loop.close()  # what `break` does
    deadline = time.monotonic() + 5
    while _readers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _readers()
    assert client.asked[:2] == [None, "1"] and "3" not in client.asked  # nothing beyond the page ahead


def test_every_page_is_read_once_and_in_order() -> None:
    pages: list[list[str] | BaseException] = [[f"{p}-{i}" for i in range(3)] for p in range(7)]
    client = _Pages(pages)
    names = []
    for name in _Names(client, {}, per_page=3):  # type: ignore[arg-type]  # a loop: list() would count first
        names.append(name)
    assert names == [n for page in pages for n in page]  # type: ignore[union-attr]
    assert client.asked == [None, *[str(k) for k in range(1, 7)]]
