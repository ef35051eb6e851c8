"""Read-ahead of listing pages (server/http/readahead.py): answered from it only when nothing changed since."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from graphql import parse

from tests.support import CREATE_FILES, RUN_FILES, UPSERT, Client, LiveServer, md5_b64, start_server, stop_server
from wandb_files.server.config import ServerConfig
from wandb_files.server.db.database import DataVersion
from wandb_files.server.db.users import ensure_admin
from wandb_files.server.http.app import create_app
from wandb_files.server.http.readahead import (
    READ_AHEAD_HEADER,
    KeptAnswers,
    _key,
    _paged_connection,
    read_ahead_off_reason,
)

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


# -- what is kept: a byte bound besides the count, and expiry ------------------------------------------------


def test_a_page_over_the_byte_bound_is_not_kept_and_older_ones_make_room(tmp_path: Path) -> None:
    version = _data_version(tmp_path)
    kept = KeptAnswers(version, max_age=10.0, max_entries=8, max_bytes=100)
    try:
        assert not kept.keep(b"big", version(), b"x" * 101)  # over the bound by itself: not kept
        assert len(kept) == 0 and kept.nbytes == 0 and kept.take(b"big") is None
        for name in (b"a", b"b", b"c"):
            assert kept.keep(name, version(), name * 40)
        assert len(kept) == 2 and kept.nbytes == 80  # "a" went to make room for "c" (120 bytes > 100)
        assert kept.take(b"a") is None
        assert kept.take(b"b") == b"b" * 40 and kept.take(b"c") == b"c" * 40
        assert kept.nbytes == 0
    finally:
        version.close()


def test_the_entry_count_bound_drops_the_oldest(tmp_path: Path) -> None:
    version = _data_version(tmp_path)
    kept = KeptAnswers(version, max_age=10.0, max_entries=2)
    try:
        for name in (b"a", b"b", b"c"):
            kept.keep(name, version(), name)
        assert len(kept) == 2 and kept.take(b"a") is None and kept.take(b"c") == b"c"
    finally:
        version.close()


def test_expired_answers_go_without_being_asked_for(tmp_path: Path) -> None:
    """A walk that stops leaves its page read ahead behind: a timer drops it once it can no longer be served."""
    app = create_app(ServerConfig(data_dir=tmp_path / "data", signed_url_ttl=3))  # kept answers live 0.3 s
    server = app.state.server
    key = "e" * 40
    with server.sessions() as session:
        ensure_admin(session, key)

    async def walk_two_pages_then_wait() -> tuple[int, int, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", auth=("api", key)) as http:

            async def gql(query: str, variables: dict[str, Any]) -> dict[str, Any]:
                response = await http.post("/graphql", json={"query": query, "variables": variables})
                assert response.status_code == 200, response.text
                data: dict[str, Any] = response.json()["data"]
                return data

            await gql(UPSERT, {"project": "walks", "name": "r1"})
            names = [f"g{i}" for i in range(9)]
            created = await gql(CREATE_FILES, {"entity": "admin", "project": "walks", "run": "r1", "files": names})
            for file in created["createRunFiles"]["files"]:
                assert (await http.put(file["uploadUrl"], content=b"x")).status_code == 200
            variables = {"entity": "admin", "project": "walks", "name": "r1", "fileLimit": PER_PAGE}
            first = await gql(RUN_FILES, {**variables, "fileCursor": None})
            await gql(RUN_FILES, {**variables, "fileCursor": first["project"]["run"]["files"]["pageInfo"]["endCursor"]})
            kept = server.queries.kept
            before = len(kept), kept.nbytes  # page 3, read ahead after page 2
            await asyncio.sleep(0.8)
            return (*before, len(kept), kept.nbytes)

    try:
        entries, nbytes, entries_after, nbytes_after = asyncio.run(walk_two_pages_then_wait())
    finally:
        server.queries.close()
        server.engine.dispose()
    assert entries == 1 and nbytes > 0
    assert entries_after == 0 and nbytes_after == 0  # swept, though nobody asked for it


# -- when read-ahead is on ---------------------------------------------------------------------------------


def test_read_ahead_is_on_for_sqlite_with_local_blobs_only(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from wandb_files.server.db.database import create_db_engine
    from wandb_files.server.storage import open_blob_store

    def reason(config: ServerConfig, engine: Any) -> str | None:
        store = open_blob_store(
            config.blob_store, local_root=config.blob_dir, endpoint_url=config.s3_endpoint_url, url_ttl=60
        )
        return read_ahead_off_reason(config, engine, store)

    (tmp_path / "data").mkdir()
    local = ServerConfig(data_dir=tmp_path / "data")
    sqlite = create_db_engine(local.database)
    # A PostgreSQL engine as the server makes it from --database-url (never connected to here).
    postgres = create_engine("postgresql+psycopg://wandb@127.0.0.1:9/wandb_files")
    try:
        assert reason(local, sqlite) is None
        off = reason(ServerConfig(data_dir=tmp_path / "data", read_ahead=False), sqlite)
        assert off is not None and "--no-read-ahead" in off
        s3 = ServerConfig(
            data_dir=tmp_path / "data", blob_store="s3://bucket/blobs", s3_endpoint_url="http://127.0.0.1:9"
        )
        off = reason(s3, sqlite)
        assert off is not None and "S3" in off
        pg = ServerConfig(data_dir=tmp_path / "data", database_url="postgresql+psycopg://wandb@127.0.0.1:9/wandb_files")
        off = reason(pg, postgres)
        assert off is not None and "postgresql" in off
    finally:
        sqlite.dispose()
        postgres.dispose()


# -- serving a kept page before authenticating -------------------------------------------------------------


def test_a_kept_page_is_never_served_after_its_key_was_revoked(tmp_path: Path) -> None:
    """Revoking a key is a commit (the invariant in readahead.py's docstring): the page kept for it is dropped,
    and the request is authenticated afresh."""
    from wandb_files.server.db.database import create_db_engine, make_session_factory

    data = tmp_path / "data"
    old_key, new_key = "o" * 40, "n" * 40
    server = start_server(data, old_key, "--key-cache-seconds", "0")  # the key cache would trust it a while
    try:
        client = Client(server.base_url, old_key)
        client.make_run("walks", "r1")
        for i in range(9):
            client.upload("admin", "walks", "r1", f"g{i}.txt", b"x")
        cursor = _third_page_cursor(client, "admin")  # page 3 is kept for the old key now
        # The admin's key replaced, as `wandb-files server --api-key NEW` does (db/users.py).
        engine = create_db_engine(ServerConfig(data_dir=data).database)
        try:
            with make_session_factory(engine)() as session:
                ensure_admin(session, new_key)
        finally:
            engine.dispose()
        response = _page(client, "admin", cursor)
        assert response.status_code == 401, response.text
        assert response.headers.get(READ_AHEAD_HEADER) is None
        assert "g6.txt" not in response.text
        new = _files(_page(Client(server.base_url, new_key), "admin", cursor))
        assert [edge["node"]["name"] for edge in new["edges"]] == ["g6.txt", "g7.txt", "g8.txt"]
    finally:
        stop_server(server)


# -- nothing holds up the event loop -----------------------------------------------------------------------


def test_a_slow_query_does_not_hold_up_other_requests(tmp_path: Path) -> None:
    """A query whose statements run past --inline-query-ms is moved off the event loop: /healthz is answered
    while it runs (here a page of 5,000 files, with a limit of 1 ms)."""
    data = tmp_path / "data"
    key = "s" * 40
    server = start_server(data, key, "--inline-query-ms", "1")
    try:
        client = Client(server.base_url, key)
        client.make_run("walks", "r1")
        with sqlite3.connect(data / "wandb-files.db") as db:  # the rows uploads would leave, without their time
            (run_id,) = db.execute("SELECT id FROM runs WHERE name = 'r1'").fetchone()
            db.executemany(
                "INSERT INTO files (run_id, name, size_bytes, md5, mimetype, blob_key, updated_at) "
                "VALUES (?, ?, 1, '1B2M2Y8AsgTpgAmY7PhCfg==', 'text/plain', ?, '2026-01-01 00:00:00')",
                [(run_id, f"f{i:05d}.txt", f"k{i:05d}") for i in range(5_000)],
            )
        listings: list[tuple[float, float]] = []

        def list_big_pages() -> None:
            for _ in range(2):
                start = time.monotonic()
                files = client.files("admin", "walks", "r1", fileLimit=5_000)["files"]
                assert len(files["edges"]) == 5_000
                listings.append((start, time.monotonic()))

        lister = threading.Thread(target=list_big_pages)
        lister.start()
        answered = []
        while lister.is_alive():
            assert requests.get(f"{server.base_url}/healthz", timeout=30).status_code == 200
            answered.append(time.monotonic())
            time.sleep(0.005)
        lister.join()
        assert len(listings) == 2
        # On the event loop, no /healthz is answered while a page is computed: one sent meanwhile waits for all
        # of it. Counted in the first 80% of the longer listing (the rest is the client reading the page), which
        # a pause of the machine cannot fake as a single long wait could.
        start, end = max(listings, key=lambda interval: interval[1] - interval[0])
        during = [t for t in answered if start < t < start + 0.8 * (end - start)]
        assert len(during) >= 3, (during, listings)
    finally:
        stop_server(server)
