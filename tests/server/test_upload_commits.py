"""Uploads that finish together (the wandb SDK PUTs every file of a run at once as it finishes) commit their
file rows in one write transaction; each still succeeds or fails on its own.

The in-process tests hold the commit lock while uploads queue up, so the grouping is placed exactly; the live
test sends concurrent PUTs over HTTP on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy import event, select

from tests.support import CREATE_FILES, Client, blob_files, md5_b64
from tests.support.inprocess import in_process_server
from wandb_files.server.db.database import write_transaction
from wandb_files.server.db.filerows import PathClash
from wandb_files.server.db.models import File, Run
from wandb_files.server.http.app import _Server
from wandb_files.server.http.state import HttpError


@pytest.fixture
def server(tmp_path: Path) -> _Server:
    return in_process_server(tmp_path)


def commit(srv: _Server, name: str, data: bytes, run_id: int = 1) -> None:
    temp = srv.config.tmp_dir / f"t-{hashlib.md5(name.encode() + data).hexdigest()}"
    temp.write_bytes(data)
    srv.commit_upload(run_id, name, temp, len(data), base64.b64encode(hashlib.md5(data).digest()).decode())


def stored(srv: _Server) -> dict[str, tuple[int, str]]:
    """The run's files: name -> (size, md5)."""
    with srv.sessions() as session:
        return {f.name: (f.size_bytes, f.md5) for f in session.scalars(select(File).where(File.run_id == 1))}


@contextmanager
def held_commits(srv: _Server, count: int) -> Iterator[None]:
    """Act as if a batch were being committed until `count` uploads have queued behind it."""
    commits = srv._upload_commits
    with commits._changed:
        commits._committing = True
    yield
    deadline = time.monotonic() + 10
    while len(commits._queue) < count:
        assert time.monotonic() < deadline, "uploads did not queue"
        time.sleep(0.01)
    with commits._changed:
        commits._committing = False
        commits._changed.notify_all()


@contextmanager
def grouped(srv: _Server, count: int) -> Iterator[Callable[[str, bytes], object]]:
    """Queue `count` uploads submitted through the yielded function, then let them commit."""
    pool = ThreadPoolExecutor(count)
    with held_commits(srv, count):
        yield lambda name, data: pool.submit(commit, srv, name, data)
    pool.shutdown(wait=True)


def count_commits(srv: _Server) -> list[int]:
    """A list that grows by one at every database commit from now on."""
    seen: list[int] = []
    event.listen(srv.engine, "commit", lambda _conn: seen.append(1))
    return seen


def test_uploads_finishing_together_share_one_transaction(server: _Server) -> None:
    data = {f"media/images/img_{i}.png": bytes([i]) * (i + 1) for i in range(12)}
    commits = count_commits(server)
    with grouped(server, len(data)) as submit:
        for name, body in data.items():
            submit(name, body)
    assert len(commits) == 1
    assert stored(server) == {name: (len(body), md5_b64(body)) for name, body in data.items()}
    assert len(blob_files(server.config.data_dir)) == len(data)


def test_a_clash_fails_only_its_own_upload(server: _Server) -> None:
    commit(server, "a/b", b"inside")
    results: dict[str, BaseException | None] = {}

    def attempt(name: str, body: bytes) -> None:
        try:
            commit(server, name, body)
            results[name] = None
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            results[name] = exc

    pool = ThreadPoolExecutor(3)
    with held_commits(server, 3):
        for name in ("a", "c", "a/d"):
            pool.submit(attempt, name, name.encode())
    pool.shutdown(wait=True)
    assert isinstance(results["a"], PathClash)
    assert results["c"] is None and results["a/d"] is None
    assert set(stored(server)) == {"a/b", "c", "a/d"}
    assert len(blob_files(server.config.data_dir)) == 3  # the refused upload's blob is gone


def test_same_name_twice_in_one_group_keeps_one_blob(server: _Server) -> None:
    with grouped(server, 2) as submit:
        submit("config.yaml", b"first")
        submit("config.yaml", b"second!")
    size, md5 = stored(server)["config.yaml"]
    assert (size, md5) in {(5, md5_b64(b"first")), (7, md5_b64(b"second!"))}
    [blob] = blob_files(server.config.data_dir)
    assert md5_b64(blob.read_bytes()) == md5


def test_upload_to_a_missing_run_is_404_and_leaves_no_blob(server: _Server) -> None:
    with pytest.raises(HttpError) as caught:
        commit(server, "x.txt", b"x", run_id=999)
    assert caught.value.status == 404
    assert blob_files(server.config.data_dir) == []


def test_a_waiting_sqlite_writer_queues_before_begin(server: _Server) -> None:
    """A second writer waits in-process until the first commits, instead of in SQLite's sleeping busy handler."""
    order: list[str] = []

    def before_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("BEGIN"):  # recorded before SQLite blocks in its busy handler
            order.append("begin")

    event.listen(server.engine, "before_cursor_execute", before_execute)
    event.listen(server.engine, "commit", lambda _conn: order.append("commit"))

    def second() -> None:
        with server.sessions() as session, write_transaction(session):
            session.execute(select(Run.id))

    with server.sessions() as session, write_transaction(session):
        session.execute(select(Run.id))
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)  # ample time for the second writer to reach BEGIN if nothing held it back
        assert order == ["begin"]
    thread.join(10)
    assert order == ["begin", "commit", "begin", "commit"]


def test_concurrent_puts_all_land(admin: Client, run_path: tuple[str, str, str]) -> None:
    entity, project, run = run_path
    data = {f"media/images/img_{i}_{i:03x}.png": bytes([i % 256]) * (100 + i) for i in range(40)}
    created = admin.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": list(data)})
    urls = {f["name"]: f["uploadUrl"] for f in created["createRunFiles"]["files"]}
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda name: requests.put(urls[name], data=data[name], timeout=60), data))
    assert [a.status_code for a in answers] == [200] * len(data)
    files = admin.files(entity, project, run, fileLimit=100)["files"]["edges"]
    assert {e["node"]["name"]: e["node"]["md5"] for e in files} == {n: md5_b64(b) for n, b in data.items()}
