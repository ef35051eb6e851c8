"""Read-ahead of listing pages (server/http/readahead.py): answered from it only when nothing changed since."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from graphql import parse

from tests.support import RUN_FILES, Client, LiveServer, md5_b64, start_server, stop_server
from wandb_files.server.db.database import DataVersion
from wandb_files.server.http.graphql_endpoint import READ_AHEAD_HEADER
from wandb_files.server.http.readahead import KeptAnswers, _key, _paged_connection

PER_PAGE = 3


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of these tests' own over SQLite: read-ahead waits for an idle process, so requests other tests
    leave in flight on the shared server must not decide what these see."""
    server = start_server(tmp_path_factory.mktemp("readahead") / "data", "r" * 40)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def walk_run(sqlite_server: LiveServer, unique: str) -> tuple[Client, str, list[str]]:
    """A run of 12 files (4 pages of 3) of a user of its own."""
    client = Client(sqlite_server.base_url, sqlite_server.add_user(f"ra{unique}"))
    client.make_run("walks", "r1", entity=f"ra{unique}")
    names = [f"f{i:02d}.txt" for i in range(12)]
    for name in names:
        client.upload(f"ra{unique}", "walks", "r1", name, name.encode())
    return client, f"ra{unique}", names


def _page(
    client: Client, entity: str, cursor: str | None, api_key: str | None = None, operation: str = "RunFiles"
) -> requests.Response:
    variables = {"entity": entity, "project": "walks", "name": "r1", "fileCursor": cursor, "fileLimit": PER_PAGE}
    body = {"query": RUN_FILES, "variables": variables, "operationName": operation}
    auth = ("api", api_key or client.api_key)
    return requests.post(f"{client.base_url}/graphql", json=body, auth=auth, timeout=30)


def _files(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    files: dict[str, Any] = body["data"]["project"]["run"]["files"]
    return files


def _without_signatures(files: dict[str, Any]) -> dict[str, Any]:
    """The page with each directUrl cut to its signed payload (its stamp and signature depend on the second)."""
    edges = [
        {**edge, "node": {**edge["node"], "directUrl": edge["node"]["directUrl"].rsplit(".", 2)[0]}}
        for edge in files["edges"]
    ]
    return {**files, "edges": edges}


# "": W&B's Python layer names no operation (the document's only one), as the real wandb client sends it.
@pytest.mark.parametrize("operation", ["", "RunFiles"])
def test_a_walk_is_answered_from_pages_read_ahead_and_they_are_the_pages_themselves(
    walk_run: tuple[Client, str, list[str]], operation: str
) -> None:
    client, entity, names = walk_run
    cursor, seen, hits = None, [], []
    while True:
        response = _page(client, entity, cursor, operation=operation)
        page = _files(response)
        hits.append(response.headers.get(READ_AHEAD_HEADER))
        seen += [edge["node"]["name"] for edge in page["edges"]]
        if cursor is not None:
            again = _files(_page(client, entity, cursor, operation=operation))  # asked twice: executed afresh
            assert _without_signatures(again) == _without_signatures(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
    assert seen == names
    assert hits == [None, None, "hit", "hit"]  # from the third page on (page 2 is asked with a cursor)
    last = page["edges"][-1]["node"]
    assert requests.get(last["directUrl"], timeout=30).content == last["name"].encode()  # its URLs work


def _third_page_cursor(client: Client, entity: str) -> str:
    """Walk pages 1 and 2 (page 2 came with a cursor: page 3 is read ahead now); the cursor of page 3."""
    first = _files(_page(client, entity, None))
    second = _files(_page(client, entity, first["pageInfo"]["endCursor"]))
    cursor: str = second["pageInfo"]["endCursor"]
    return cursor


def test_a_commit_in_between_gets_a_fresh_answer(walk_run: tuple[Client, str, list[str]]) -> None:
    client, entity, names = walk_run
    doomed = names[7]  # on page 3
    node_id = client.files(entity, "walks", "r1", fileNames=[doomed], fileLimit=1)["files"]["edges"][0]["node"]["id"]
    cursor = _third_page_cursor(client, entity)
    client.gql("mutation D($files: [ID!]!) { deleteFiles(input: {files: $files}) { success } }", {"files": [node_id]})
    response = _page(client, entity, cursor)
    assert response.headers.get(READ_AHEAD_HEADER) is None
    assert [edge["node"]["name"] for edge in _files(response)["edges"]] == [names[6], names[8], names[9]]

    # A re-upload changes the bytes (and md5) under the same name.
    cursor = _third_page_cursor(client, entity)
    client.upload(entity, "walks", "r1", names[6], b"new bytes")
    response = _page(client, entity, cursor)
    assert response.headers.get(READ_AHEAD_HEADER) is None
    assert _files(response)["edges"][0]["node"]["md5"] == md5_b64(b"new bytes")

    # And without a commit, the same steps are answered from what was read ahead.
    cursor = _third_page_cursor(client, entity)
    assert _page(client, entity, cursor).headers.get(READ_AHEAD_HEADER) == "hit"


def test_a_commit_by_another_process_gets_a_fresh_answer(tmp_path: Path) -> None:
    """Commits of any other process end what was read ahead (data_version, not a count of its own writes)."""
    data = tmp_path / "data"
    server = start_server(data, "k" * 40)
    try:
        client = Client(server.base_url, "k" * 40)
        client.make_run("walks", "r1")
        for i in range(9):
            client.upload("admin", "walks", "r1", f"g{i}.txt", b"x")
        cursor = _third_page_cursor(client, "admin")
        with sqlite3.connect(data / "wandb-files.db") as db:  # another process's write, straight to the file
            db.execute("UPDATE files SET mimetype = 'text/x-changed' WHERE name = 'g6.txt'")
        response = _page(client, "admin", cursor)
        assert response.headers.get(READ_AHEAD_HEADER) is None
        assert _files(response)["edges"][0]["node"]["mimetype"] == "text/x-changed"
        assert _page(client, "admin", _third_page_cursor(client, "admin")).headers.get(READ_AHEAD_HEADER) == "hit"
    finally:
        stop_server(server)


def test_a_page_read_ahead_is_for_its_key_only(
    sqlite_server: LiveServer, walk_run: tuple[Client, str, list[str]]
) -> None:
    client, entity, _ = walk_run
    # On the server the walk runs on, so that the key is a valid one (made before: a new user is a commit,
    # which ends what was kept).
    other_key = sqlite_server.add_user(f"{entity}x")
    other = Client(sqlite_server.base_url, other_key)
    assert other.gql("{ viewer { username } }")["viewer"]["username"] == f"{entity}x"
    cursor = _third_page_cursor(client, entity)
    response = _page(client, entity, cursor, api_key=other_key)
    assert response.status_code == 200, response.text  # authenticated: refused by access, not by the key
    assert response.headers.get(READ_AHEAD_HEADER) is None
    body = response.json()
    assert body.get("errors") or body["data"]["project"] is None, body  # another user's run, as without read-ahead
    assert "f06.txt" not in response.text  # page 3 of the walk
    response = _page(client, entity, cursor)
    assert response.headers.get(READ_AHEAD_HEADER) == "hit"  # still kept for its own key


def test_the_first_page_reads_nothing_ahead(walk_run: tuple[Client, str, list[str]]) -> None:
    client, entity, _ = walk_run
    first = _files(_page(client, entity, None))
    response = _page(client, entity, first["pageInfo"]["endCursor"])
    assert response.headers.get(READ_AHEAD_HEADER) is None  # a first page is often all a caller looks at


def test_a_busy_server_reads_nothing_ahead(walk_run: tuple[Client, str, list[str]]) -> None:
    """While another request is being served (here a download held back by a slow reader), read-ahead would
    take its time: it waits for an idle server."""
    from wandb_files.testing import FaultProxy

    client, entity, _ = walk_run
    client.upload(entity, "walks", "r1", "zz-big.bin", b"b" * (16 * 1024 * 1024))  # sorts after the walk
    big = client.files(entity, "walks", "r1", fileNames=["zz-big.bin"])["files"]["edges"][0]["node"]
    with FaultProxy(client.base_url, bytes_per_second=2 * 1024 * 1024) as slow:
        reader = threading.Thread(
            target=lambda: requests.get(big["url"].replace(client.base_url, slow.url), auth=client.auth, timeout=60)
        )
        reader.start()
        time.sleep(1)  # the server is now sending it, as fast as the slow reader takes it
        try:
            response = _page(client, entity, _third_page_cursor(client, entity))
            assert response.headers.get(READ_AHEAD_HEADER) is None
        finally:
            reader.join()
    response = _page(client, entity, _third_page_cursor(client, entity))
    assert response.headers.get(READ_AHEAD_HEADER) == "hit"  # idle again


def test_postgresql_answers_every_page_afresh(live_server: LiveServer, unique: str) -> None:
    if not live_server.database_url:
        pytest.skip("the live server is over SQLite")
    client = Client(live_server.base_url, live_server.add_user(f"rp{unique}"))
    client.make_run("walks", "r1", entity=f"rp{unique}")
    for i in range(7):
        client.upload(f"rp{unique}", "walks", "r1", f"g{i}.txt", b"x")
    cursor, hits = None, []
    for _ in range(3):  # a third page: the one SQLite would read ahead
        response = _page(client, f"rp{unique}", cursor)
        hits.append(response.headers.get(READ_AHEAD_HEADER))
        cursor = _files(response)["pageInfo"]["endCursor"]
    assert hits == [None, None, None]


def test_no_read_ahead_when_it_is_turned_off(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "n" * 40, "--no-read-ahead")
    try:
        client = Client(server.base_url, "n" * 40)
        client.make_run("walks", "r1")
        for i in range(9):
            client.upload("admin", "walks", "r1", f"g{i}.txt", b"x")
        response = _page(client, "admin", _third_page_cursor(client, "admin"))
        assert response.headers.get(READ_AHEAD_HEADER) is None
        assert len(_files(response)["edges"]) == 3
    finally:
        stop_server(server)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (RUN_FILES, (("project", "run", "files"), "fileCursor", "pageInfo", "endCursor", "hasNextPage")),
        (  # aliases, inline fragments
            'query($c: String) { p: project(name: "x") { ... on Project { runs(after: $c) '
            "{ info: pageInfo { e: endCursor more: hasNextPage } } } } }",
            (("p", "runs"), "c", "info", "e", "more"),
        ),
        ("query($c: String) { models(after: $c) { pageInfo { endCursor } } }", None),  # no hasNextPage
        ('query { models(after: "x") { pageInfo { endCursor hasNextPage } } }', None),  # not a variable
        (  # two connections paged: which to read ahead is not clear
            "query($a: String, $b: String) { x: models(after: $a) { pageInfo { endCursor hasNextPage } } "
            "y: models(after: $b) { pageInfo { endCursor hasNextPage } } }",
            None,
        ),
    ],
)
def test_which_documents_page_through_a_connection(document: str, expected: tuple[Any, ...] | None) -> None:
    found = _paged_connection(parse(document), None)
    assert (None if found is None else (found.path, found.cursor_variable, found.page_info, found.end_cursor,
                                        found.has_next_page)) == expected  # fmt: skip


def test_a_kept_answer_is_served_once_young_and_unchanged(tmp_path: Path) -> None:
    """KeptAnswers itself: once, for its key only, within a tenth of the signed URLs' lifetime, while no commit."""
    version = _data_version(tmp_path)
    kept = KeptAnswers(version, max_age=1.0)  # what a signed URL lifetime of 10 s gives
    body = {"query": "{ x }", "variables": {"c": "1"}, "operationName": None}
    answer = b'{"data":{"x":1}}'
    key = _key("key", body, "http://h")
    assert key is not None
    try:
        kept.keep(key, version(), answer)
        assert kept.take(_must(_key("other key", body, "http://h"))) is None
        assert kept.take(_must(_key("key", body, "http://other"))) is None
        assert kept.take(_must(_key("key", {**body, "variables": {"c": "2"}}, "http://h"))) is None
        assert kept.take(key) == answer
        assert kept.take(key) is None  # served once

        kept.keep(key, version(), answer)
        with sqlite3.connect(tmp_path / "db.sqlite") as db:
            db.execute("INSERT INTO t VALUES (1)")
        assert kept.take(key) is None  # a commit in between

        kept.keep(key, version(), answer)
        time.sleep(1.2)
        assert kept.take(key) is None  # too old beside the URLs' lifetime
    finally:
        version.close()


def _data_version(tmp_path: Path) -> DataVersion:
    database = tmp_path / "db.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE t (x)")
    return DataVersion(str(database))


def _must(key: bytes | None) -> bytes:
    assert key is not None
    return key
