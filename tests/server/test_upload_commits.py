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
from sqlalchemy import delete, event, select

from tests.support import CREATE_FILES, Client, blob_files, md5_b64
from tests.support.inprocess import in_process_server
from wandb_files.server.db.database import lock_runs, write_transaction
from wandb_files.server.db.filerows import FileArrival, PathClash, store_files
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


# --- the batched file rows: each arrival as if committed after the ones before it ------------------------------


def queued_in_order(srv: _Server, uploads: list[tuple[str, bytes, int]]) -> dict[str, BaseException | None]:
    """Queue `uploads` (name, body, run id) for one group commit in exactly this order; how each went, by name
    (the last one of a name)."""
    results: dict[str, BaseException | None] = {}

    def attempt(name: str, body: bytes, run_id: int) -> None:
        try:
            commit(srv, name, body, run_id)
            results[name] = None
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            results[name] = exc

    commits = srv._upload_commits
    pool = ThreadPoolExecutor(len(uploads))
    with held_commits(srv, len(uploads)):
        for n, (name, body, run_id) in enumerate(uploads, 1):
            pool.submit(attempt, name, body, run_id)
            deadline = time.monotonic() + 10
            while len(commits._queue) < n:  # the next one queues behind this one
                assert time.monotonic() < deadline, "upload did not queue"
                time.sleep(0.005)
    pool.shutdown(wait=True)
    return results


def blob_md5s(srv: _Server) -> list[str]:
    return sorted(md5_b64(p.read_bytes()) for p in blob_files(srv.config.data_dir))


def file_count(srv: _Server, run_id: int = 1) -> int:
    with srv.sessions() as session:
        count = session.scalar(select(Run.file_count).where(Run.id == run_id))
        assert count is not None
        return count


@pytest.mark.parametrize(
    ("first", "second"),
    [("a", "a/b"), ("a/b", "a"), ("x/y/z", "x"), ("x", "x/y/z")],
    ids=["a,a/b", "a/b,a", "x/y/z,x", "x,x/y/z"],
)
def test_clashing_names_in_one_group_the_later_fails(server: _Server, first: str, second: str) -> None:
    results = queued_in_order(server, [(first, b"1st", 1), ("c", b"c", 1), (second, b"2nd", 1)])
    assert results[first] is None and results["c"] is None
    assert isinstance(results[second], PathClash)
    assert results[second].name == second and results[second].other == first  # type: ignore[union-attr]
    assert stored(server) == {first: (3, md5_b64(b"1st")), "c": (1, md5_b64(b"c"))}
    assert blob_md5s(server) == sorted([md5_b64(b"1st"), md5_b64(b"c")])  # the refused blob is gone
    assert file_count(server) == 2


def test_same_name_twice_in_one_group_the_later_wins(server: _Server) -> None:
    commit(server, "config.yaml", b"stored")
    commit(server, "b.txt", b"stored")
    results = queued_in_order(
        server,
        [("config.yaml", b"first", 1), ("new.txt", b"n1", 1), ("config.yaml", b"second!", 1), ("new.txt", b"n22", 1)],
    )
    assert set(results.values()) == {None}
    assert stored(server) == {
        "config.yaml": (7, md5_b64(b"second!")),
        "new.txt": (3, md5_b64(b"n22")),
        "b.txt": (6, md5_b64(b"stored")),
    }
    # Every replaced blob (the stored one and the group's earlier ones) deleted; none lost.
    assert blob_md5s(server) == sorted(md5_b64(b) for b in (b"second!", b"n22", b"stored"))
    assert file_count(server) == 3


def test_a_name_refused_then_the_same_name_again_in_one_group(server: _Server) -> None:
    commit(server, "m/x", b"x")
    results = queued_in_order(server, [("m", b"1", 1), ("ok", b"2", 1), ("m", b"3", 1)])
    assert isinstance(results["m"], PathClash)
    assert set(stored(server)) == {"m/x", "ok"}
    assert len(blob_files(server.config.data_dir)) == 2


def test_a_deleted_run_fails_only_its_own_uploads(server: _Server) -> None:
    with server.sessions() as session:
        session.add(Run(project_id=1, name="doomed", user_id=1))
        session.commit()
        doomed = session.scalar(select(Run.id).where(Run.name == "doomed"))
    assert doomed is not None
    commits = server._upload_commits
    results: dict[str, BaseException | None] = {}

    def attempt(name: str, run_id: int) -> None:
        try:
            commit(server, name, name.encode(), run_id)
            results[name] = None
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            results[name] = exc

    pool = ThreadPoolExecutor(3)
    with held_commits(server, 3):
        pool.submit(attempt, "gone1.txt", doomed)
        pool.submit(attempt, "kept.txt", 1)
        pool.submit(attempt, "gone2.txt", doomed)
        deadline = time.monotonic() + 10
        while len(commits._queue) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        with server.sessions() as session, write_transaction(session):
            session.execute(delete(Run).where(Run.id == doomed))
    pool.shutdown(wait=True)
    assert results["kept.txt"] is None
    for name in ("gone1.txt", "gone2.txt"):
        assert isinstance(results[name], HttpError) and results[name].status == 404  # type: ignore[union-attr]
    assert stored(server) == {"kept.txt": (8, md5_b64(b"kept.txt"))}
    assert len(blob_files(server.config.data_dir)) == 1


def test_a_group_of_new_files_takes_the_same_statements_as_one(server: _Server) -> None:
    """The rows of a group are read, checked and written a few statements at a time, not a few a file."""
    commit(server, "media/images/old.png", b"old")
    statements: list[str] = []
    event.listen(server.engine, "before_cursor_execute", lambda _c, _cu, sql, *_: statements.append(sql))

    def group_statements(names: list[str]) -> int:
        statements.clear()
        with grouped(server, len(names)) as submit:
            for name in names:
                submit(name, name.encode())
        return len(statements)

    few = group_statements(["media/images/a.png", "top.txt"])
    many = group_statements([f"media/images/b{i}.png" for i in range(40)] + [f"t{i}.txt" for i in range(40)])
    assert many == few
    assert file_count(server) == 83


def test_a_large_group_is_stored_in_time_linear_in_its_size(server: _Server) -> None:
    """markRunFilesUploaded can bring thousands of names at once: checking each new name against the ones
    added before it in the same group is a lookup, not a scan (a scan took seconds at 10,000 names)."""
    arrivals = [FileArrival(f"d{i % 100}/f{i}.txt", f"k{i}", 1, md5_b64(b"x")) for i in range(20_000)]
    arrivals.append(FileArrival("d7", "k-clash", 1, md5_b64(b"x")))  # a file where a folder of the group is
    with server.sessions() as session, write_transaction(session):
        lock_runs(session, {1})
        start = time.monotonic()
        results = store_files(session, 1, arrivals)
        elapsed = time.monotonic() - start
    assert results[:-1] == [None] * 20_000
    assert isinstance(results[-1], PathClash) and results[-1].other.startswith("d7/")
    assert elapsed < 6, elapsed  # linear: well under a second here; quadratic: about 20 s
    assert len(stored(server)) == 20_000
