"""`sync`: a mirror that moves only what changed, against the live server (requests counted by a proxy)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock
from graphql import FieldNode, parse, visit
from graphql.language import Visitor

import wandb_files
import wandb_files.mirror as sync_module
from tests.support import GraphQLRecorder, LiveServer, cli, write_files
from wandb_files.errors import DestinationBusyError, ManifestError, MirrorConflictError
from wandb_files.mirror import STATE_DIR, sync
from wandb_files.testing import FaultProxy
from wandb_files.transfer.paths import part_path

FILES = {"config.yaml": b"lr: 1\n", "media/a.png": b"A" * 3000, "media/b.png": b"B" * 2000, "logs/out.log": b"x\n"}


@pytest.fixture
def project(live_server: LiveServer, tmp_path: Path, unique: str) -> tuple[str, list[wandb_files.Run]]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    source = tmp_path / "src"
    write_files(source, FILES)
    runs = []
    for i in range(3):
        run = api.create_run(run_id=f"run{i}", project=f"mirror{unique}")
        run.upload_files([source / n for n in FILES], root=source, progress=False)
        runs.append(run)
    return f"admin/mirror{unique}", runs


def _mirror(dest: Path) -> dict[str, bytes]:
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and STATE_DIR not in p.parts
    }


def _expected(runs: list[wandb_files.Run], files: dict[str, bytes] = FILES) -> dict[str, bytes]:
    return {f"{run.id}/{name}": data for run in runs for name, data in files.items()}


def test_a_rerun_with_nothing_changed_moves_no_bytes_and_hashes_nothing(
    live_server: LiveServer, project: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, runs = project
    dest = tmp_path / "mirror"
    with FaultProxy(live_server.base_url) as proxy:
        api = wandb_files.Api(api_key=live_server.api_key, base_url=proxy.url)
        first = sync(path, dest, api=api, progress=False)
        assert len(first.fetched) == 12 and first.unchanged == 0 and not first.failed
        assert _mirror(dest) == _expected(runs)

        hashed: list[Path] = []
        real_md5 = sync_module.file_md5
        monkeypatch.setattr(sync_module, "file_md5", lambda p: hashed.append(p) or real_md5(p))
        proxy.reset_stats()
        again = sync(path, dest, api=api, progress=False)
        assert (len(again.fetched), again.unchanged, again.bytes) == (0, 12, 0)
        assert proxy.stats["requests"] == 1 + 3  # the runs page and one files page per run: no byte request
        assert hashed == []  # and no local file read

        # One file changed on the server: only it moves.
        changed = tmp_path / "changed"
        write_files(changed, {"media/a.png": b"new bytes"})
        runs[1].upload_file(changed / "media/a.png", root=changed)
        proxy.reset_stats()
        third = sync(path, dest, api=api, progress=False)
        assert [p.relative_to(dest).as_posix() for p in third.fetched] == ["run1/media/a.png"]
        # The runs page, one light listing per run, the changed file asked for by name, and its bytes.
        assert third.unchanged == 11 and proxy.stats["requests"] == 1 + 3 + 1 + 1
        assert (dest / "run1/media/a.png").read_bytes() == b"new bytes"
        assert hashed == []


def _fields_asked(body: dict) -> set[str]:
    """The names of every field a GraphQL request body selects."""
    names: set[str] = set()

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            names.add(node.name.value)

    visit(parse(body["query"]), Fields())
    return names


def test_a_no_change_resync_asks_for_no_url_and_a_changed_file_is_fetched_byte_exact(
    live_server: LiveServer, project: tuple, tmp_path: Path
) -> None:
    path, runs = project
    dest = tmp_path / "mirror"
    with GraphQLRecorder(live_server.base_url) as recorder:
        api = wandb_files.Api(api_key=live_server.api_key, base_url=recorder.url)
        assert len(sync(path, dest, api=api, progress=False).fetched) == 12
        by_name = [b for b in recorder.bodies if b.get("variables", {}).get("fileNames")]
        assert len(by_name) == 3 and all({"url", "directUrl"} <= _fields_asked(b) for b in by_name)

        recorder.bodies.clear()
        again = sync(path, dest, api=api, progress=False)
        assert (len(again.fetched), again.unchanged) == (0, 12)
        listings = [b for b in recorder.bodies if "files" in _fields_asked(b)]
        assert len(listings) == 3  # one per run
        for body in recorder.bodies:
            assert not {"url", "directUrl"} & _fields_asked(body), body["query"]

        changed = tmp_path / "changed"
        new_bytes = os.urandom(5000)
        write_files(changed, {"media/b.png": new_bytes})
        runs[2].upload_file(changed / "media/b.png", root=changed)
        recorder.bodies.clear()
        third = sync(path, dest, api=api, progress=False)
        assert [p.relative_to(dest).as_posix() for p in third.fetched] == ["run2/media/b.png"]
        assert (dest / "run2/media/b.png").read_bytes() == new_bytes
        with_urls = [b for b in recorder.bodies if {"url", "directUrl"} & _fields_asked(b)]
        assert [b["variables"]["fileNames"] for b in with_urls] == [["media/b.png"]]  # only the changed file
        assert _mirror(dest) == {**_expected(runs), "run2/media/b.png": new_bytes}
        assert sync(path, dest, api=api, progress=False).unchanged == 12


def test_local_changes_are_checked_by_md5_and_repaired(project: tuple, tmp_path: Path, live_server: LiveServer) -> None:
    path, runs = project
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    dest = tmp_path / "mirror"
    sync(path, dest, api=api, progress=False)
    touched = dest / "run0/config.yaml"
    os.utime(touched, ns=(1, 1))  # same bytes, another mtime: hashed once, not fetched
    edited = dest / "run2/media/b.png"
    edited.write_bytes(b"C" * 2000)  # same size, other bytes: fetched again
    result = sync(path, dest, api=api, progress=False)
    assert [p.relative_to(dest).as_posix() for p in result.fetched] == ["run2/media/b.png"]
    assert _mirror(dest) == _expected(runs)
    assert sync(path, dest, api=api, progress=False).unchanged == 12  # the touched file is on record again


def test_delete_removes_only_what_the_server_lost_inside_the_synced_runs(
    project: tuple, tmp_path: Path, live_server: LiveServer
) -> None:
    path, runs = project
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    dest = tmp_path / "mirror"
    sync(path, dest, api=api, progress=False)
    runs[0].file("logs/out.log").delete()
    (dest / "notes.txt").write_text("mine, outside every run folder")
    outside = tmp_path / "precious.txt"
    outside.write_text("the target of a link")
    (dest / "run1" / "link.txt").symlink_to(outside)

    without = sync(path, dest, api=api, progress=False)  # no --delete: nothing goes
    assert without.deleted == [] and (dest / "run0/logs/out.log").exists()

    planned = sync(path, dest, api=api, delete=True, dry_run=True)
    assert sorted(p.relative_to(dest).as_posix() for p in planned.deleted) == ["run0/logs/out.log", "run1/link.txt"]
    assert (dest / "run0/logs/out.log").exists() and (dest / "run1/link.txt").is_symlink()

    done = sync(path, dest, api=api, delete=True, progress=False)
    assert sorted(p.relative_to(dest).as_posix() for p in done.deleted) == ["run0/logs/out.log", "run1/link.txt"]
    assert not (dest / "run0/logs").exists()  # the emptied folder went too
    assert outside.read_text() == "the target of a link" and (dest / "notes.txt").exists()
    assert "deleted 2" in done.summary()


def test_a_dry_run_writes_nothing_and_a_pattern_limits_the_mirror(
    project: tuple, tmp_path: Path, live_server: LiveServer
) -> None:
    path, runs = project
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    dest = tmp_path / "mirror"
    planned = sync(path, dest, api=api, dry_run=True)
    assert len(planned.fetched) == 12 and planned.bytes == 3 * sum(map(len, FILES.values()))
    assert not dest.exists()
    only = sync(f"{path}/{runs[2].id}", dest, api=api, pattern="media/%", progress=False)
    assert _mirror(dest) == {f"run2/{n}": d for n, d in FILES.items() if n.startswith("media/")}
    assert len(only.fetched) == 2
    project_name = path.split("/")[1]
    assert len(sync(f"{project_name}/{runs[0].id}", dest, api=api, progress=False).fetched) == 4  # project/run_id


SYNC_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import wandb_files
    from wandb_files.mirror import sync
    from wandb_files.transfer import downloads

    base_url, key, source, dest = sys.argv[1:5]
    downloads.CHUNK_SIZE = 64 * 1024
    real, seen = downloads._chunks, [0]

    def chunks(response):
        for chunk in real(response):
            seen[0] += 1
            if seen[0] >= 40:  # a real SIGKILL in the middle of the transfers
                os.kill(os.getpid(), signal.SIGKILL)
            yield chunk

    downloads._chunks = chunks
    sync(source, dest, api=wandb_files.Api(api_key=key, base_url=base_url), max_workers=4, progress=False)
    """
)


def test_kill_9_in_the_middle_then_the_next_sync_completes_with_no_temp_file(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    big = {f"shard_{i}.bin": os.urandom(600_000) for i in range(8)}
    source = tmp_path / "src"
    write_files(source, big)
    run = api.create_run(project=f"mirror-kill{unique}")
    run.upload_files([source / n for n in big], root=source, progress=False)
    dest = tmp_path / "mirror"
    child = subprocess.run(
        [sys.executable, "-c", SYNC_CHILD, live_server.base_url, live_server.api_key, "/".join(run.path), str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_FILES_ENGINE": "python"},  # the kill hooks into the Python path's chunks
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert len(_mirror(dest)) < len(big)
    result = sync("/".join(run.path), dest, api=api, progress=False)
    assert not result.failed
    assert _mirror(dest) == {f"{run.id}/{n}": d for n, d in big.items()}
    assert not list(dest.rglob("*.part"))


def test_the_cli_prints_the_plan_and_a_summary(project: tuple, tmp_path: Path, live_server: LiveServer) -> None:
    path, runs = project
    env = {**os.environ, "WANDB_BASE_URL": live_server.base_url, "WANDB_API_KEY": live_server.api_key}
    dest = tmp_path / "mirror"
    planned = cli("sync", path, str(dest), "--dry-run", "--pattern", "media/*", env=env)
    assert planned.stdout.count("would fetch ") == 6 and "Would fetch 6, unchanged 0" in planned.stdout
    assert not dest.exists()
    done = cli("sync", path, str(dest), "--no-progress", env=env)
    assert "Fetched 12, unchanged 0, deleted 0, failed 0" in done.stdout
    assert _mirror(dest) == _expected(runs)
    again = cli("sync", path, str(dest), env=env)
    assert "Fetched 0, unchanged 12" in again.stdout


# --- hardening (#21): the manifest's path, who owns a folder, swaps, deletes, refusals ---------------------------


def _api(server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=server.api_key, base_url=server.base_url)


def _env(server: LiveServer) -> dict[str, str]:
    return {**os.environ, "WANDB_BASE_URL": server.base_url, "WANDB_API_KEY": server.api_key}


def _upload(run: wandb_files.Run, where: Path, files: dict[str, bytes]) -> None:
    write_files(where, files)
    run.upload_files([where / name for name in files], root=where, progress=False)


@pytest.fixture(scope="module")
def one_file_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    run = _api(live_server).create_run(project=f"mirror-one{uuid.uuid4().hex[:10]}")
    _upload(run, tmp_path_factory.mktemp("one"), {"data/one.txt": b"one\n"})
    return "/".join(run.path)


@pytest.fixture
def no_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The local files sync hashes (a manifest that was read back leaves none to hash)."""
    hashed: list[Path] = []
    real_md5 = sync_module.file_md5
    monkeypatch.setattr(sync_module, "file_md5", lambda p: hashed.append(p) or real_md5(p))
    return hashed


@pytest.mark.parametrize(
    "name", ["results?v2", "hash#1", "run%201", "with space", "ünïcødé ✓", "a?mode=ro#x%2F", "file:odd", "%3F?#"]
)
def test_the_manifest_is_dest_state_manifest_db_whatever_characters_dest_holds(
    live_server: LiveServer, one_file_run: str, tmp_path: Path, name: str, no_hashing: list[Path]
) -> None:
    api = _api(live_server)
    box = tmp_path / "box"
    box.mkdir()
    dest = box / name
    assert len(sync(one_file_run, dest, api=api, progress=False).fetched) == 1
    assert os.listdir(box) == [name]  # nothing written beside DEST (a `results` or `hash` file)
    manifest = dest / STATE_DIR / "manifest.db"
    with contextlib.closing(sqlite3.connect(manifest)) as db:
        assert db.execute("SELECT name FROM files").fetchall() == [("data/one.txt",)]
    # The dry run reads it by a read-only URI, the rerun by its path: both find the record, so nothing is hashed.
    planned = sync(one_file_run, dest, api=api, dry_run=True)
    assert (planned.fetched, planned.unchanged) == ([], 1)
    assert sync(one_file_run, dest, api=api, progress=False).unchanged == 1
    assert no_hashing == [] and os.listdir(box) == [name]


def test_a_second_project_cannot_take_over_a_mirror_folder(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    api = _api(live_server)
    run_a = api.create_run(run_id="dup", project=f"projA{unique}")
    _upload(run_a, tmp_path / "a", {"common.txt": b"A's\n", "a.txt": b"only A\n"})
    run_b = api.create_run(run_id="dup", project=f"projB{unique}")
    _upload(run_b, tmp_path / "b", {"common.txt": b"B's\n"})
    project_a, project_b = f"admin/projA{unique}", f"admin/projB{unique}"
    dest = tmp_path / "mirror"
    sync(project_a, dest, api=api, progress=False)
    before = _mirror(dest)
    manifest = (dest / STATE_DIR / "manifest.db").read_bytes()

    with pytest.raises(MirrorConflictError) as refused:
        sync(project_b, dest, api=api, delete=True, progress=False)
    assert isinstance(refused.value, ValueError) and refused.value.owner == f"{project_a}/dup"
    assert str(dest / "dup") in str(refused.value) and project_a in str(refused.value)
    assert _mirror(dest) == before == {"dup/common.txt": b"A's\n", "dup/a.txt": b"only A\n"}
    assert (dest / STATE_DIR / "manifest.db").read_bytes() == manifest

    out = cli("sync", project_b, str(dest), "--delete", check=False, env=_env(live_server))
    assert out.returncode == 2 and "mirrors the run" in out.stderr and "report it" not in out.stderr, out.stderr
    assert _mirror(dest) == before

    # Once projA's copy is moved away, the folder is free for projB.
    (dest / "dup").rename(tmp_path / "projA-copy")
    assert len(sync(project_b, dest, api=api, delete=True, progress=False).fetched) == 1
    assert _mirror(dest) == {"dup/common.txt": b"B's\n"}


@pytest.mark.parametrize("delete", [False, True])
def test_a_file_folder_swap_on_the_server_converges_in_one_sync(
    live_server: LiveServer, tmp_path: Path, unique: str, delete: bool
) -> None:
    api = _api(live_server)
    run = api.create_run(project=f"mirror-swap{unique}")
    _upload(run, tmp_path / "v1", {"a": b"a file\n", "keep.txt": b"k\n"})
    path, dest = "/".join(run.path), tmp_path / "mirror"
    sync(path, dest, api=api, delete=delete, progress=False)

    run.file("a").delete()  # `a` becomes a folder
    _upload(run, tmp_path / "v2", {"a/x": b"now in a folder\n"})
    planned = sync(path, dest, api=api, delete=delete, dry_run=True)
    assert (planned.fetched, planned.deleted, planned.failed) == ([dest / run.id / "a/x"], [dest / run.id / "a"], [])
    assert (dest / run.id / "a").read_bytes() == b"a file\n"  # the dry run changed nothing
    done = sync(path, dest, api=api, delete=delete, progress=False)
    assert not done.failed, done.failed
    assert _mirror(dest) == {f"{run.id}/a/x": b"now in a folder\n", f"{run.id}/keep.txt": b"k\n"}
    assert done.deleted == [dest / run.id / "a"]

    run.file("a/x").delete()  # and back
    _upload(run, tmp_path / "v3", {"a": b"a file again\n"})
    back = sync(path, dest, api=api, delete=delete, progress=False)
    assert not back.failed, back.failed
    assert _mirror(dest) == {f"{run.id}/a": b"a file again\n", f"{run.id}/keep.txt": b"k\n"}
    assert sync(path, dest, api=api, delete=delete, progress=False).unchanged == 2

    # A file of the user's where a folder now goes stays, unless delete covers it; only that file fails.
    (dest / run.id / "b").write_text("mine")
    _upload(run, tmp_path / "v4", {"b/y": b"y\n"})
    mine = sync(path, dest, api=api, delete=delete, progress=False)
    if delete:
        assert not mine.failed and (dest / run.id / "b/y").read_bytes() == b"y\n"
    else:
        assert [name for name, _ in mine.failed] == [f"{run.id}/b/y"] and "move it away" in str(mine.failed[0][1])
        assert (dest / run.id / "b").read_text() == "mine" and mine.unchanged == 2


def test_delete_removes_links_to_folders_without_following_them_and_stale_temp_files(
    live_server: LiveServer, project: tuple, tmp_path: Path
) -> None:
    path, runs = project
    api = _api(live_server)
    dest = tmp_path / "mirror"
    sync(f"{path}/run0", dest, api=api, progress=False)
    outside = tmp_path / "outside"
    write_files(outside, {"precious.txt": b"not the mirror's"})
    (dest / "run0/linked").symlink_to(outside, target_is_directory=True)
    runs[0].file("logs/out.log").delete()
    (dest / "run0/logs/out.log").unlink()
    stale = part_path(dest / "run0/logs/out.log")  # an interrupted download of a file the server then lost
    stale.write_bytes(b"half")
    stale_state = stale.with_name(stale.name.replace(".wandb-files.part", ".ranges.wandb-files.part"))
    stale_state.write_bytes(b"{}")
    live = part_path(dest / "run0/media/a.png")  # one of a file the server still has: kept for resuming
    live.write_bytes(b"AAA")

    kept = sync(f"{path}/run0", dest, api=api, progress=False)  # without delete: nothing goes
    assert kept.deleted == [] and stale.exists() and os.path.lexists(dest / "run0/linked")
    planned = sync(f"{path}/run0", dest, api=api, delete=True, dry_run=True)
    result = sync(f"{path}/run0", dest, api=api, delete=True, progress=False)
    gone = sorted(p.relative_to(dest).as_posix() for p in result.deleted)
    assert gone == sorted(p.relative_to(dest).as_posix() for p in planned.deleted)
    assert gone == sorted(["run0/linked", *(p.relative_to(dest).as_posix() for p in (stale, stale_state))])
    assert not os.path.lexists(dest / "run0/linked") and (outside / "precious.txt").read_bytes() == b"not the mirror's"
    assert not (dest / "run0/logs").exists() and live.read_bytes() == b"AAA"
    assert _mirror(dest) == {
        **{k: v for k, v in _expected([runs[0]]).items() if k != "run0/logs/out.log"},
        live.relative_to(dest).as_posix(): b"AAA",
    }


def test_a_run_folder_that_is_a_file_fails_that_run_only(
    project: tuple, tmp_path: Path, live_server: LiveServer
) -> None:
    path, runs = project
    dest = tmp_path / "mirror"
    write_files(dest, {"run1": b"a file of the user's where run1's folder goes"})
    result = sync(path, dest, api=_api(live_server), delete=True, progress=False)
    assert [name for name, _ in result.failed] == ["run1"] and "is a file" in str(result.failed[0][1])
    assert _mirror(dest) == {**_expected([runs[0], runs[2]]), "run1": b"a file of the user's where run1's folder goes"}

    out = cli("sync", path, str(dest), "--delete", check=False, env=_env(live_server))
    assert out.returncode == 1 and "Fetched 0, unchanged 8" in out.stdout and "failed: run1:" in out.stderr, out


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda p: p.write_bytes(b"\x00garbage, not SQLite" * 100), id="garbage"),
        pytest.param(lambda p: _sqlite_file(p, "CREATE TABLE users (name TEXT)"), id="foreign-table"),
        pytest.param(lambda p: _sqlite_file(p, "CREATE TABLE files (path TEXT, hash TEXT)"), id="foreign-columns"),
    ],
)
def test_a_corrupted_manifest_is_rebuilt_with_one_line_saying_so(
    live_server: LiveServer,
    one_file_run: str,
    tmp_path: Path,
    broken: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
    no_hashing: list[Path],
) -> None:
    api = _api(live_server)
    dest = tmp_path / "mirror"
    sync(one_file_run, dest, api=api, progress=False)
    manifest = dest / STATE_DIR / "manifest.db"
    manifest.unlink()
    broken(manifest)
    bad = manifest.read_bytes()
    assert sync(one_file_run, dest, api=api, dry_run=True).unchanged == 1  # read only: compared with the disk
    assert manifest.read_bytes() == bad
    with caplog.at_level(logging.WARNING, logger="wandb_files"):
        again = sync(one_file_run, dest, api=api, progress=False)
    assert (again.fetched, again.unchanged, again.failed) == ([], 1, [])  # the local copy checked, not fetched
    [said] = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert said.startswith(f"{manifest} cannot be read (") and said.endswith(
        "): moved it to manifest.db.broken; rebuilding it from the server and the local files"
    )
    assert (manifest.parent / "manifest.db.broken").read_bytes() == bad  # kept, never deleted
    no_hashing.clear()
    assert sync(one_file_run, dest, api=api, progress=False).unchanged == 1 and no_hashing == []  # healthy again


def test_a_manifest_that_cannot_be_written_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    """A full disk was "unexpected OperationalError: database or disk is full ... report it" in the CLI."""
    from wandb_files.mirror import _Manifest

    path = tmp_path / "manifest.db"
    row = ("run", "", "e/p/run", "md5", 1, "2026-01-01T00:00:00", 1, 1)
    with (
        pytest.raises(ManifestError, match=r"cannot write the manifest .*database or disk is full\. The files"),
        _Manifest(path, read_only=False) as manifest,
    ):
        db = manifest._db
        assert db is not None
        # SQLite's own page budget: the very SQLITE_FULL a full disk gives, without filling one.
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        for i in range(10_000):
            manifest._write(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*row[:1], f"{i}" * 50, *row[2:])
            )


def _sqlite_file(path: Path, statement: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(statement)
        db.commit()


def test_through_the_cli_a_corrupted_manifest_is_rebuilt_and_a_folder_in_its_place_refused(
    live_server: LiveServer, one_file_run: str, tmp_path: Path
) -> None:
    api, env = _api(live_server), _env(live_server)
    dest = tmp_path / "mirror"
    sync(one_file_run, dest, api=api, progress=False)
    manifest = dest / STATE_DIR / "manifest.db"
    manifest.write_bytes(b"not a database" * 200)
    rebuilt = cli("sync", one_file_run, str(dest), env=env)
    assert "manifest.db cannot be read" in rebuilt.stderr and "rebuilding it" in rebuilt.stderr
    assert len(rebuilt.stderr.strip().splitlines()) == 1 and "Fetched 0, unchanged 1" in rebuilt.stdout

    (manifest.parent / "manifest.db.broken").unlink()
    manifest.rename(manifest.parent / "manifest.db.broken")
    write_files(manifest, {"mine.txt": b"whatever this is"})
    with pytest.raises(ManifestError) as refused:
        sync(one_file_run, dest, api=api, progress=False)
    assert refused.value.path == manifest and "is a folder" in str(refused.value)
    folder = cli("sync", one_file_run, str(dest), check=False, env=env)
    assert folder.returncode == 1 and "report it" not in folder.stderr, folder.stderr
    assert f"error: {str(manifest)!r} is a folder, where sync keeps its manifest: move it away" in folder.stderr
    assert (manifest / "mine.txt").read_bytes() == b"whatever this is"


def test_the_mirrors_own_folder_is_never_written_through_a_link(
    live_server: LiveServer, one_file_run: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "mirror"
    dest.mkdir()
    (dest / STATE_DIR).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ManifestError, match="is a symbolic link, where sync keeps its manifest: move it away"):
        sync(one_file_run, dest, api=_api(live_server), progress=False)
    assert os.listdir(elsewhere) == [] and os.listdir(dest) == [STATE_DIR]


def test_a_busy_destination_is_a_typed_refusal_with_its_own_exit_status(
    live_server: LiveServer, one_file_run: str, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    (dest / STATE_DIR).mkdir(parents=True)
    with FileLock(str(dest / STATE_DIR / "lock")):  # as a running sync holds it
        with pytest.raises(DestinationBusyError) as busy:
            sync(one_file_run, dest, api=_api(live_server), progress=False)
        assert busy.value.destination == dest and not isinstance(busy.value, RuntimeError)
        out = cli("sync", one_file_run, str(dest), check=False, env=_env(live_server))
    assert out.returncode == 4 and "report it" not in out.stderr, out.stderr
    assert f"another sync into {str(dest)!r} is running; run this one again when it has finished" in out.stderr
    assert os.listdir(dest) == [STATE_DIR]


def test_a_missing_two_part_source_is_named_as_typed(live_server: LiveServer, tmp_path: Path, unique: str) -> None:
    missing = cli("sync", f"admin/nope{unique}", str(tmp_path / "m"), check=False, env=_env(live_server))
    assert missing.returncode == 1 and "Project admin/admin not found" not in missing.stderr, missing.stderr
    assert f"found neither the project admin/nope{unique} nor the run admin/admin/nope{unique}" in missing.stderr
    assert not (tmp_path / "m").exists()
