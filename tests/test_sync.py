"""`sync`: a mirror that moves only what changed, against the live server (requests counted by a proxy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from graphql import FieldNode, parse, visit
from graphql.language import Visitor

import wandb_files
import wandb_files.sync as sync_module
from tests.support import GraphQLRecorder, LiveServer, cli, write_files
from wandb_files.sync import STATE_DIR, sync
from wandb_files.testing import FaultProxy

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
    from wandb_files.sync import sync
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
