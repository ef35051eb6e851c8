"""wandb_files.fsspec: the wandb:// filesystem against the live server, and fsspec's own behaviour where it applies."""

from __future__ import annotations

import gc
import hashlib
import importlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from fsspec.spec import AbstractFileSystem

import wandb_files
from tests.support import CountingRelay, LiveServer, md5_b64, write_files
from wandb_files.errors import NotFoundError
from wandb_files.fsspec import WandbFileSystem
from wandb_files.testing import FaultProxy

TREE = {
    "a.csv": b"x,y\n1,2\n3,4\n",
    "config.yaml": b"lr: 0.1\n",
    "media/images/pred_1_ab.png": os.urandom(3000),
    "media/images/pred_2_cd.png": os.urandom(3000),
    "media/images/other_1.png": os.urandom(100),
    "media/table.json": b"{}",
    "checkpoints/deep/er/model.ckpt": os.urandom(5000),
}


@pytest.fixture
def api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)


@pytest.fixture
def fs(live_server: LiveServer) -> WandbFileSystem:
    return WandbFileSystem(api_key=live_server.api_key, base_url=live_server.base_url, skip_instance_cache=True)


@pytest.fixture
def registered() -> Iterator[None]:
    """`wandb` in fsspec's registry for this process, as the entry point puts it there once installed (the
    shared test environment has the project installed from elsewhere; test_the_entry_point_… checks that)."""
    fsspec.register_implementation("wandb", WandbFileSystem, clobber=True)
    yield
    importlib.import_module("fsspec.registry")._registry.pop("wandb", None)  # fsspec.registry is a mapping
    WandbFileSystem.clear_instance_cache()


def _run_with(api: wandb_files.Api, tmp_path: Path, files: dict[str, bytes], project: str) -> str:
    run = api.create_run(project=project)
    source = tmp_path / f"src-{run.id}"
    write_files(source, files)
    run.upload_files([source / name for name in files], root=source, progress=False)
    return "/".join(run.path)


@pytest.fixture
def tree(api: wandb_files.Api, tmp_path: Path, unique: str) -> str:
    """A run holding TREE, for a test that changes it; returns ``entity/project/run_id``."""
    return _run_with(api, tmp_path, TREE, f"fs-{unique}")


@pytest.fixture(scope="module")
def shared(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A run holding TREE that no test changes (made once: uploads cost most of these tests' time)."""
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    return _run_with(api, tmp_path_factory.mktemp("shared"), TREE, f"fs-shared-{uuid.uuid4().hex[:8]}")


# --- Api.projects ------------------------------------------------------------------------------------------


def test_projects_lists_an_entitys_projects_by_name_page_by_page(api: wandb_files.Api, unique: str) -> None:
    names = [f"p{unique}-{i}" for i in (2, 0, 1)]
    for name in names:
        api.create_run(project=name)
    projects = [p for p in api.projects(per_page=1) if p.name.startswith(f"p{unique}")]
    assert [p.name for p in projects] == sorted(names)
    assert {p.entity for p in projects} == {"admin"}
    assert all(p.id and p.created_at for p in projects)
    assert [run.project for run in projects[0].runs()] == [sorted(names)[0]]
    everything = api.projects("admin", per_page=2)
    assert len(everything) == len(list(api.projects("admin", per_page=1000)))
    assert repr(projects[0]) == f"<Project admin/{sorted(names)[0]}>"


def test_projects_of_a_missing_or_foreign_entity_is_not_found(api: wandb_files.Api, live_server: LiveServer) -> None:
    live_server.add_user("someone-else")
    for entity in ("no-such-entity", "someone-else"):
        with pytest.raises(NotFoundError):
            list(api.projects(entity))
    with pytest.raises(ValueError, match="entity"):
        api.projects("a/b")


# --- listing -----------------------------------------------------------------------------------------------


def test_ls_at_every_level(fs: WandbFileSystem, shared: str) -> None:
    entity, project, _ = shared.split("/")
    assert entity in fs.ls("", detail=False)
    assert f"{entity}/{project}" in fs.ls(entity, detail=False)
    runs = fs.ls(f"{entity}/{project}")
    assert [r["name"] for r in runs] == [shared]
    assert runs[0]["type"] == "directory" and runs[0]["created_at"]
    top = fs.ls(f"wandb://{shared}")
    assert [(e["name"], e["type"]) for e in top] == [
        (f"{shared}/a.csv", "file"),
        (f"{shared}/checkpoints", "directory"),
        (f"{shared}/config.yaml", "file"),
        (f"{shared}/media", "directory"),
    ]
    csv = top[0]
    assert set(csv) >= {"name", "size", "type", "md5", "mimetype", "updated_at"}
    assert (csv["size"], csv["md5"], csv["mimetype"]) == (12, md5_b64(TREE["a.csv"]), "text/csv")
    assert csv["updated_at"].endswith("Z")
    assert fs.ls(f"{shared}/media/", detail=False) == [f"{shared}/media/images", f"{shared}/media/table.json"]
    assert fs.ls(f"{shared}/a.csv", detail=False) == [f"{shared}/a.csv"]  # a file lists itself, as fsspec's do


def test_info_exists_isdir_isfile(fs: WandbFileSystem, shared: str) -> None:
    assert fs.info(f"{shared}/media/images/pred_1_ab.png")["size"] == 3000
    assert fs.info(f"{shared}/media/images")["type"] == "directory"
    assert fs.info(shared)["type"] == "directory"
    assert fs.isfile(f"{shared}/a.csv") and not fs.isdir(f"{shared}/a.csv")
    assert fs.isdir(f"{shared}/checkpoints/deep") and not fs.isfile(f"{shared}/checkpoints/deep")
    assert fs.isdir(shared) and fs.isdir(shared.rsplit("/", 1)[0]) and fs.isdir(shared.split("/")[0])
    assert fs.exists(f"{shared}/media") and not fs.exists(f"{shared}/medi") and not fs.exists(f"{shared}/nope")
    assert fs.size(f"{shared}/a.csv") == 12
    assert fs.ukey(f"{shared}/a.csv") == md5_b64(TREE["a.csv"])
    assert fs.checksum(f"{shared}/a.csv") == int(hashlib.md5(TREE["a.csv"]).hexdigest(), 16)
    assert fs.modified(f"{shared}/a.csv").tzinfo is not None


@pytest.mark.parametrize(
    "missing",
    ["{run}/nope.txt", "{run}/media/nope/x", "{entity}/{project}/no-such-run", "{entity}/no-such-project", "nobody"],
)
def test_missing_paths_raise_file_not_found(fs: WandbFileSystem, shared: str, missing: str) -> None:
    entity, project, _ = shared.split("/")
    path = missing.format(run=shared, entity=entity, project=project)
    for call in (fs.info, fs.ls, fs.cat_file):
        with pytest.raises(FileNotFoundError) as info:
            call(path)
        assert info.value.filename == path
    assert not fs.exists(path)


def test_another_users_run_is_missing_and_a_refused_key_is_a_permission_error(
    live_server: LiveServer, shared: str
) -> None:
    other = WandbFileSystem(
        api_key=live_server.add_user("fs-other"), base_url=live_server.base_url, skip_instance_cache=True
    )
    with pytest.raises(FileNotFoundError):
        other.ls(shared)  # the server answers another user's entity as a missing one
    with pytest.raises(FileNotFoundError):
        other.cat_file(f"{shared}/a.csv")
    refused = WandbFileSystem(api_key="z" * 40, base_url=live_server.base_url, skip_instance_cache=True)
    with pytest.raises(PermissionError):
        refused.ls(shared)


def test_find_walk_du_agree_with_fsspecs_own_algorithms(fs: WandbFileSystem, shared: str) -> None:
    for path in (shared, f"{shared}/media", f"{shared}/checkpoints/deep"):
        for maxdepth in (None, 1, 2, 3):
            for withdirs in (False, True):
                ours = fs.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=True)
                theirs = AbstractFileSystem.find(fs, path, maxdepth=maxdepth, withdirs=withdirs, detail=True)
                assert ours == theirs, (path, maxdepth, withdirs)
    assert fs.find(shared) == sorted(f"{shared}/{name}" for name in TREE)
    assert fs.find(f"{shared}/a.csv") == [f"{shared}/a.csv"]
    walked = {root: (sorted(dirs), sorted(files)) for root, dirs, files in fs.walk(shared)}
    assert walked[f"{shared}/media"] == (["images"], ["table.json"])
    assert walked[f"{shared}/checkpoints/deep/er"] == ([], ["model.ckpt"])
    assert fs.du(shared) == sum(len(data) for data in TREE.values())
    assert fs.du(f"{shared}/media", total=False)[f"{shared}/media/table.json"] == 2
    above = fs.find(shared.rsplit("/", 1)[0])  # above a run: fsspec's walk over the runs
    assert above == fs.find(shared)


@pytest.mark.parametrize(
    "pattern",
    [
        "{run}/*",
        "{run}/*.csv",
        "{run}/**",
        "{run}/**/",
        "{run}/**/*.png",
        "{run}/media/**",
        "{run}/media/images/pred_*",
        "{run}/media/images/pred_?_a?.png",
        "{run}/media/images/[po]*_1*.png",
        "{run}/med*",
        "{run}/*/",
        "{run}/*/*/",
        "{run}/checkpoints/**/model.ckpt",
        "{run}/nothing*",
        "{project}/*/a.csv",
        "{project}/*/media/images/*.png",
        "{entity}/fs-*/*/config.yaml",
    ],
)
def test_glob_agrees_with_fsspecs_own_glob(fs: WandbFileSystem, shared: str, pattern: str) -> None:
    entity, project, _ = shared.split("/")
    path = pattern.format(run=shared, project=f"{entity}/{project}", entity=entity)
    for maxdepth in (None, 1, 2):
        if maxdepth is not None and "**" not in path:
            continue
        ours = fs.glob(path, maxdepth=maxdepth, detail=True)
        theirs = AbstractFileSystem.glob(fs, path, maxdepth=maxdepth, detail=True)
        assert ours == theirs, maxdepth
    assert fs.glob(f"wandb://{shared}/media/images/pred_*") == [
        f"{shared}/media/images/pred_1_ab.png",
        f"{shared}/media/images/pred_2_cd.png",
    ]


def test_a_glob_sends_its_literal_prefix_to_the_server(
    live_server: LiveServer, api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    files = {f"logs/step_{i:04d}.txt": b"x" for i in range(60)}
    files |= {"media/pred_1.png": b"p", "media/pred_2.png": b"q"}
    run = _run_with(api, tmp_path, files, f"fs-{unique}")
    with CountingRelay(live_server.base_url) as relay:
        fresh = WandbFileSystem(api_key=live_server.api_key, base_url=relay.url, skip_instance_cache=True)
        fresh.info(run)  # the run itself
        relay.reset()
        assert fresh.glob(f"{run}/media/pred_*.png") == [f"{run}/media/pred_1.png", f"{run}/media/pred_2.png"]
        glob_bytes = relay.received
        relay.reset()
        assert len(fresh.find(run)) == 62
        whole_bytes = relay.received
    # The glob's answer held 2 files, the whole run's listing 62: a glob that listed the run would cost as much.
    assert glob_bytes * 8 < whole_bytes, (glob_bytes, whole_bytes)


# --- reading -----------------------------------------------------------------------------------------------

BIG = 4 * 1024 * 1024


@pytest.fixture
def counted(live_server: LiveServer, api: wandb_files.Api, tmp_path: Path, unique: str) -> Iterator[tuple]:
    """A run with a 4 MiB file, and a filesystem that reaches the server through a FaultProxy (counting the
    requests) behind a CountingRelay (counting the bytes the server's answers carry to the client)."""
    data = os.urandom(BIG)
    run = _run_with(api, tmp_path, {"blob.bin": data, "a.csv": TREE["a.csv"]}, f"fs-{unique}")
    with FaultProxy(live_server.base_url) as proxy, CountingRelay(proxy.url) as relay:
        counted_fs = WandbFileSystem(api_key=live_server.api_key, base_url=relay.url, skip_instance_cache=True)
        counted_fs.info(f"{run}/blob.bin")  # listed: later calls move file bytes only
        proxy.reset_stats()
        relay.reset()
        yield counted_fs, f"{run}/blob.bin", data, proxy, relay


def test_cat_file_moves_only_the_range_asked_for(counted: tuple) -> None:
    fs, path, data, proxy, relay = counted
    assert fs.cat_file(path, 1_000_000, 1_000_100) == data[1_000_000:1_000_100]
    assert proxy.stats["requests"] == 1
    assert relay.received < 100 + 1000, relay.received  # 100 bytes of body, the rest is headers
    assert fs.cat_file(path, -10) == data[-10:]
    assert fs.cat_file(path, 10, -BIG + 20) == data[10:20]
    assert fs.cat_file(path, BIG - 5, BIG + 100) == data[-5:]
    assert fs.cat_file(path, BIG + 5) == b""
    assert fs.cat_ranges([path, path], [0, 7], [3, 9]) == [data[:3], data[7:9]]
    assert proxy.stats["requests"] == 6


def test_buffered_reads_fetch_ranges_not_the_whole_file(counted: tuple) -> None:
    fs, path, data, proxy, relay = counted
    with fs.open(path, "rb") as f:
        f.seek(3 * 1024 * 1024)
        assert f.read(100) == data[3 * 1024 * 1024 : 3 * 1024 * 1024 + 100]
        assert f.read(100) == data[3 * 1024 * 1024 + 100 : 3 * 1024 * 1024 + 200]  # from the read-ahead
        assert f.tell() == 3 * 1024 * 1024 + 200
    assert proxy.stats["requests"] == 1
    assert relay.received < (1 << 20) + 100 + 1000  # the read-ahead (1 MiB) and the 100 bytes, not 4 MiB
    relay.reset()
    with fs.open(path, "rb", cache_type="none") as f:
        f.seek(-50, 2)
        assert f.read() == data[-50:]
    assert relay.received < 50 + 1000
    relay.reset()
    with fs.open(path, "rb", block_size=4096) as f:
        assert f.read(10) == data[:10]
    assert relay.received < 4096 + 10 + 1000


def test_whole_reads_are_verified_and_text_mode_works(counted: tuple) -> None:
    fs, path, data, _, _ = counted
    assert fs.cat(path) == data
    with fs.open(path, "rb") as f:
        assert hashlib.md5(f.read()).digest() == hashlib.md5(data).digest()
    csv = path.replace("blob.bin", "a.csv")
    with fs.open(csv, "r") as text:
        assert text.readlines() == ["x,y\n", "1,2\n", "3,4\n"]
    assert fs.head(csv, 3) == b"x,y" and fs.tail(csv, 4) == b"3,4\n"
    assert fs.cat([csv, path]) == {csv: TREE["a.csv"], path: data}


def test_a_file_replaced_on_the_server_since_it_was_listed_is_not_read_as_a_mix(
    counted: tuple, api: wandb_files.Api, tmp_path: Path
) -> None:
    fs, path, _, _, _ = counted
    run_path, name = path.rsplit("/", 1)
    (tmp_path / name).write_bytes(b"new bytes")
    api.run(run_path).upload_file(tmp_path / name, root=tmp_path)
    with pytest.raises(wandb_files.IntegrityError, match="invalidate_cache"):
        fs.cat_file(path, 0, 4)
    fs.invalidate_cache(path)
    assert fs.cat_file(path) == b"new bytes"


def test_directories_are_not_files(fs: WandbFileSystem, shared: str) -> None:
    for path in (f"{shared}/media", shared):
        with pytest.raises(IsADirectoryError):
            fs.cat_file(path)
        with pytest.raises(IsADirectoryError):
            fs.open(path, "rb")


def test_pandas_read_csv_and_fsspec_open_find_the_protocol(
    registered: None, live_server: LiveServer, shared: str
) -> None:
    import pandas

    options = {"api_key": live_server.api_key, "base_url": live_server.base_url}
    frame = pandas.read_csv(f"wandb://{shared}/a.csv", storage_options=options)
    assert frame.to_dict("list") == {"x": [1, 3], "y": [2, 4]}
    with fsspec.open(f"wandb://{shared}/config.yaml", "rt", **options) as f:
        assert f.read() == "lr: 0.1\n"
    assert isinstance(fsspec.filesystem("wandb", **options), WandbFileSystem)
    fs, paths = fsspec.core.url_to_fs(f"wandb://{shared}/media/images/pred_*", **options)
    assert isinstance(fs, WandbFileSystem) and paths == f"{shared}/media/images/pred_*"


def test_pandas_writes_csv_to_a_run(registered: None, live_server: LiveServer, tree: str) -> None:
    import pandas

    options = {"api_key": live_server.api_key, "base_url": live_server.base_url}
    pandas.DataFrame({"a": [1, 2]}).to_csv(f"wandb://{tree}/out/frame.csv", index=False, storage_options=options)
    again = pandas.read_csv(f"wandb://{tree}/out/frame.csv", storage_options=options)
    assert again["a"].tolist() == [1, 2]


def test_pyarrow_reads_a_parquet_file_of_a_run_by_ranges(
    registered: None, live_server: LiveServer, api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = 100_000
    local = tmp_path / "t.parquet"
    noise = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), rows, [None, pa.py_buffer(os.urandom(rows * 8))])
    pq.write_table(pa.table({"noise": noise, "a": pa.array(range(rows))}), local)
    run = _run_with(api, tmp_path, {"tables/t.parquet": local.read_bytes()}, f"fs-{unique}")
    size = local.stat().st_size
    with CountingRelay(live_server.base_url) as relay:
        fs = WandbFileSystem(api_key=live_server.api_key, base_url=relay.url, skip_instance_cache=True)
        fs.info(f"{run}/tables/t.parquet")
        relay.reset()
        column = pq.read_table(f"{run}/tables/t.parquet", filesystem=fs, columns=["a"])
        moved = relay.received
    assert column["a"].to_pylist()[:3] == [0, 1, 2] and column.num_rows == rows
    assert moved < 0.75 * size, (moved, size)  # one column of two, and the footer: not the whole file
    import pandas

    frame = pandas.read_parquet(
        f"wandb://{run}/tables/t.parquet",
        columns=["a"],
        storage_options={"api_key": live_server.api_key, "base_url": live_server.base_url},
    )
    assert len(frame) == rows


# --- get ---------------------------------------------------------------------------------------------------


def test_get_recursive_downloads_every_file_verified(fs: WandbFileSystem, shared: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fs.get(f"wandb://{shared}/media", str(out), recursive=True)
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {name.removeprefix("media/"): data for name, data in TREE.items() if name.startswith("media/")}
    everything = tmp_path / "all"
    fs.get(shared + "/", str(everything) + "/", recursive=True)  # a trailing slash: the run's contents go there
    assert {p.relative_to(everything).as_posix() for p in everything.rglob("*") if p.is_file()} == set(TREE)
    assert not list(tmp_path.rglob("*.part"))  # atomic: no temp file left


def test_get_a_glob_and_get_file(fs: WandbFileSystem, shared: str, tmp_path: Path) -> None:
    fs.get(f"{shared}/media/images/pred_*", str(tmp_path / "preds") + "/")
    assert sorted(p.name for p in (tmp_path / "preds").iterdir()) == ["pred_1_ab.png", "pred_2_cd.png"]
    fs.get_file(f"{shared}/checkpoints/deep/er/model.ckpt", str(tmp_path / "m.ckpt"))
    assert (tmp_path / "m.ckpt").read_bytes() == TREE["checkpoints/deep/er/model.ckpt"]
    buffer = io.BytesIO()
    fs.get_file(f"{shared}/a.csv", buffer)
    assert buffer.getvalue() == TREE["a.csv"]
    with pytest.raises(FileNotFoundError):
        fs.get_file(f"{shared}/missing", str(tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("linked", "target"),
    [("media", "relative"), ("media", "absolute"), ("media/images", "relative")],
)
def test_get_never_writes_through_a_symbolic_link_to_a_folder_in_the_destination(
    fs: WandbFileSystem, shared: str, tmp_path: Path, linked: str, target: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    link = out / linked
    link.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(elsewhere, link.parent) if target == "relative" else elsewhere, link)
    with pytest.raises(ValueError, match="symbolic link") as refused:
        fs.get(f"{shared}/media", str(out) + "/", recursive=True)
    assert str(link) in str(refused.value)
    assert list(elsewhere.iterdir()) == []
    assert not [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]  # refused before any download


def test_get_and_get_file_replace_a_symbolic_link_at_a_file_never_its_target(
    fs: WandbFileSystem, shared: str, tmp_path: Path
) -> None:
    victim = tmp_path / "elsewhere.txt"
    victim.write_bytes(b"keep me")
    out = tmp_path / "out"
    (out / "media").mkdir(parents=True)
    os.symlink(victim, out / "media" / "table.json")
    fs.get(f"{shared}/media", str(out) + "/", recursive=True)
    assert victim.read_bytes() == b"keep me"
    assert not (out / "media" / "table.json").is_symlink()
    assert (out / "media" / "table.json").read_bytes() == TREE["media/table.json"]
    os.symlink(victim, tmp_path / "named.csv")
    fs.get_file(f"{shared}/a.csv", str(tmp_path / "named.csv"))
    assert victim.read_bytes() == b"keep me"
    assert (tmp_path / "named.csv").read_bytes() == TREE["a.csv"] and not (tmp_path / "named.csv").is_symlink()
    linked_root = tmp_path / "linked-root"
    os.symlink(out, linked_root)  # the folder the caller names may itself be a link, as File.download's root
    fs.get(f"{shared}/config.yaml", str(linked_root) + "/")
    assert (out / "config.yaml").read_bytes() == TREE["config.yaml"]


# --- writing -----------------------------------------------------------------------------------------------


def test_open_wb_uploads_on_close_and_keeps_the_cache_current(
    fs: WandbFileSystem, tree: str, live_server: LiveServer
) -> None:
    before = fs.ls(f"{tree}/media", detail=False)
    with fs.open(f"{tree}/media/new/log.txt", "wb", block_size=5) as f:
        f.write(b"first line\n")
        f.write(b"second\n")
    assert fs.ls(f"{tree}/media", detail=False) == sorted([*before, f"{tree}/media/new"])
    assert fs.info(f"{tree}/media/new/log.txt")["md5"] == md5_b64(b"first line\nsecond\n")
    other = WandbFileSystem(api_key=live_server.api_key, base_url=live_server.base_url, skip_instance_cache=True)
    assert other.cat(f"{tree}/media/new/log.txt") == b"first line\nsecond\n"
    fs.pipe_file(f"{tree}/empty.txt", b"")
    assert fs.info(f"{tree}/empty.txt")["size"] == 0
    with fs.open(f"{tree}/a.csv", "w") as text:
        text.write("replaced\n")
    assert fs.cat(f"{tree}/a.csv") == b"replaced\n"


def test_a_write_left_by_an_exception_uploads_nothing(fs: WandbFileSystem, tree: str) -> None:
    with pytest.raises(RuntimeError), fs.open(f"{tree}/half.bin", "wb") as f:
        f.write(b"half")
        raise RuntimeError("stop")
    fs.invalidate_cache()
    assert not fs.exists(f"{tree}/half.bin")


def test_discard_uploads_nothing_at_close_or_when_collected(fs: WandbFileSystem, tree: str) -> None:
    closed = fs.open(f"{tree}/discarded.bin", "wb", block_size=5)
    closed.write(b"more than a block")  # part of it already in the spool
    closed.discard()
    closed.close()
    with pytest.raises(ValueError):
        closed.write(b"again")
    collected = fs.open(f"{tree}/collected.bin", "wb")
    collected.write(b"bytes")
    collected.discard()
    del collected
    gc.collect()
    fs.invalidate_cache()
    assert not fs.exists(f"{tree}/discarded.bin")
    assert not fs.exists(f"{tree}/collected.bin")


def test_a_written_file_never_closed_uploads_nothing_and_warns(fs: WandbFileSystem, tree: str) -> None:
    forgotten = fs.open(f"{tree}/forgotten.bin", "wb")
    forgotten.write(b"bytes")
    threads = {t.ident for t in threading.enumerate()}
    with pytest.warns(UserWarning, match="never closed"):
        del forgotten
        gc.collect()
    assert {t.ident for t in threading.enumerate()} <= threads  # a finalizer starts no thread
    fs.invalidate_cache()
    assert not fs.exists(f"{tree}/forgotten.bin")


_LEFT_OPEN = """
import sys
from wandb_files.fsspec import WandbFileSystem
fs = WandbFileSystem(api_key=sys.argv[1], base_url=sys.argv[2])
f = fs.open(sys.argv[3], "wb")
f.write(b"left open at exit")
print("written", flush=True)
"""


def test_a_file_left_open_at_interpreter_exit_does_not_hang_it(live_server: LiveServer, tree: str) -> None:
    path = f"{tree}/left-open.txt"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LEFT_OPEN, live_server.api_key, live_server.base_url, path],
            capture_output=True,
            text=True,
            timeout=60,  # it used to hang forever in the finalizer's upload
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the interpreter did not exit with a file open for writing")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "written\n"
    assert "never closed: nothing was uploaded" in done.stderr
    assert live_server.api_key not in done.stderr
    fresh = WandbFileSystem(api_key=live_server.api_key, base_url=live_server.base_url, skip_instance_cache=True)
    assert not fresh.exists(path)


def test_write_modes_and_where_writes_may_go(fs: WandbFileSystem, tree: str, unique: str) -> None:
    with pytest.raises(FileExistsError):
        fs.open(f"{tree}/a.csv", "xb")
    with fs.open(f"{tree}/fresh.bin", "xb") as f:
        f.write(b"x")
    with pytest.raises(NotImplementedError):
        fs.open(f"{tree}/a.csv", "ab")
    entity, project, _ = tree.split("/")
    missing_run = f"{entity}/{project}/run-{unique}"
    with pytest.raises(FileNotFoundError, match="mkdir"):
        fs.open(f"{missing_run}/x.txt", "wb")
    with pytest.raises(IsADirectoryError):
        fs.open(tree, "wb")
    with pytest.raises(ValueError, match="segment"):
        fs.open(f"{tree}/a//b", "wb")
    fs.mkdir(missing_run)
    assert missing_run in fs.ls(f"{entity}/{project}", detail=False)
    fs.pipe_file(f"{missing_run}/x.txt", b"made")
    assert fs.cat(f"{missing_run}/x.txt") == b"made"
    with pytest.raises(FileExistsError):
        fs.makedirs(missing_run)
    fs.makedirs(missing_run, exist_ok=True)
    with pytest.raises(PermissionError):
        fs.mkdir(f"{entity}/new-project-{unique}")


def test_put_and_put_file(fs: WandbFileSystem, tree: str, tmp_path: Path, live_server: LiveServer) -> None:
    local = tmp_path / "local"
    write_files(local, {"one.txt": b"1", "sub/two.txt": b"22", "sub/deeper/three.txt": b"333"})
    fs.put(str(local), f"{tree}/uploaded", recursive=True)  # the destination is new: local's contents go there
    assert fs.find(f"{tree}/uploaded") == [
        f"{tree}/uploaded/one.txt",
        f"{tree}/uploaded/sub/deeper/three.txt",
        f"{tree}/uploaded/sub/two.txt",
    ]
    fs.put_file(str(local / "sub" / "two.txt"), f"{tree}/renamed/2.txt")  # a name of its own: staged, then sent
    fs.put([str(local / "one.txt")], [f"{tree}/listed/uno.txt"])
    fresh = WandbFileSystem(api_key=live_server.api_key, base_url=live_server.base_url, skip_instance_cache=True)
    assert fresh.cat(f"{tree}/renamed/2.txt") == b"22"
    assert fresh.cat(f"{tree}/listed/uno.txt") == b"1"
    assert fresh.cat(f"{tree}/uploaded/sub/deeper/three.txt") == b"333"
    assert fs.find(f"{tree}/renamed") == [f"{tree}/renamed/2.txt"]  # the cache saw its own writes
    with pytest.raises(FileExistsError):
        fs.put_file(str(local / "one.txt"), f"{tree}/listed/uno.txt", mode="create")


def _symlink_layout(root: Path, layout: str, outside: Path) -> dict[str, bytes]:
    """A folder `root` holding a.txt, sub/b.txt and a symbolic link `link` of the given kind; returns what a put
    of it must store (names relative to `root`), or {} when it must refuse."""
    write_files(root, {"a.txt": b"a", "sub/b.txt": b"b"})
    stored = {"a.txt": b"a", "sub/b.txt": b"b"}
    targets = {
        "sibling": ("a.txt", b"a"),
        "in-subfolder": ("sub/b.txt", b"b"),
        "absolute": (str(outside), outside.read_bytes()),
        "folder": ("sub", None),  # not followed, as fsspec's local find does not follow it
        "dangling": ("missing.txt", None),
        "loop": ("loop", None),
    }
    target, data = targets[layout]
    if layout == "loop":
        os.symlink("link", root / "loop")
    os.symlink(target, root / "link")
    if data is not None:
        stored["link"] = data
    return {} if layout in ("dangling", "loop") else stored


@pytest.mark.parametrize("layout", ["sibling", "in-subfolder", "absolute", "folder", "dangling", "loop"])
def test_put_of_a_folder_holding_a_symbolic_link_uploads_all_or_nothing(
    fs: WandbFileSystem, api: wandb_files.Api, live_server: LiveServer, tmp_path: Path, unique: str, layout: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    source = tmp_path / "src"
    expected = _symlink_layout(source, layout, outside)
    run = "/".join(api.create_run(project=f"fs-links-{unique}").path)
    # The remote folder has the local folder's name, so most files are sent from where they are and the link
    # alone is staged (the layout that once sent the others, then failed on a temp path).
    if expected:
        fs.put(str(source), f"{run}/src", recursive=True)
    else:
        with pytest.raises(FileNotFoundError) as refused:
            fs.put(str(source), f"{run}/src", recursive=True)
        assert refused.value.filename == str(source / "link")
        assert "wandb-files-put" not in str(refused.value)
    fresh = WandbFileSystem(api_key=live_server.api_key, base_url=live_server.base_url, skip_instance_cache=True)
    assert {p.removeprefix(f"{run}/src/"): fresh.cat(p) for p in fresh.find(run)} == expected


def test_put_sends_renamed_files_and_links_from_where_they_are_without_a_temp_folder(
    fs: WandbFileSystem, api: wandb_files.Api, tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    source = tmp_path / "src"
    write_files(source, {"a.txt": b"a", "sub/b.txt": b"b"})
    os.symlink("sub/b.txt", source / "link")
    run = "/".join(api.create_run(project=f"fs-pairs-{unique}").path)
    # No temp folder can be made: a put that staged copies under their names would fail here.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp-folder"))
    fs.put(str(source), f"{run}/renamed", recursive=True)
    fs.put_file(str(source / "link"), f"{run}/elsewhere/l.txt")
    monkeypatch.undo()
    assert {p.removeprefix(f"{run}/"): fs.cat(p) for p in fs.find(run)} == {
        "renamed/a.txt": b"a",
        "renamed/sub/b.txt": b"b",
        "renamed/link": b"b",
        "elsewhere/l.txt": b"b",
    }


# --- rm ----------------------------------------------------------------------------------------------------


def test_rm_deletes_files_in_bulk_and_keeps_the_cache_current(fs: WandbFileSystem, tree: str) -> None:
    fs.rm(f"{tree}/config.yaml")
    assert not fs.exists(f"{tree}/config.yaml")
    with pytest.raises(IsADirectoryError):
        fs.rm(f"{tree}/media")
    assert fs.exists(f"{tree}/media/table.json")  # nothing was deleted
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{tree}/nope.txt")
    fs.rm(f"{tree}/media/images/pred_*")
    assert fs.ls(f"{tree}/media/images", detail=False) == [f"{tree}/media/images/other_1.png"]
    fs.rm(f"{tree}/media", recursive=True)
    assert not fs.exists(f"{tree}/media")
    fs.invalidate_cache()
    assert fs.find(tree) == [f"{tree}/a.csv", f"{tree}/checkpoints/deep/er/model.ckpt"]


# --- the cache ---------------------------------------------------------------------------------------------


def test_the_listing_cache_answers_again_until_invalidated(
    live_server: LiveServer, api: wandb_files.Api, tree: str, tmp_path: Path
) -> None:
    with FaultProxy(live_server.base_url) as proxy:
        fs = WandbFileSystem(api_key=live_server.api_key, base_url=proxy.url, skip_instance_cache=True)
        first = fs.find(tree)
        requests = proxy.stats["requests"]
        assert fs.find(tree) == first
        fs.ls(f"{tree}/media/images")
        fs.info(f"{tree}/media/table.json")
        assert fs.glob(f"{tree}/**/*.png")
        assert not fs.exists(f"{tree}/absent.txt")  # known absent: the whole run is listed
        assert proxy.stats["requests"] == requests
        (tmp_path / "late.txt").write_bytes(b"late")
        api.run(tree).upload_file(tmp_path / "late.txt", root=tmp_path)  # another client
        assert not fs.exists(f"{tree}/late.txt")
        fs.invalidate_cache(tree)
        assert fs.exists(f"{tree}/late.txt")
        uncached = WandbFileSystem(
            api_key=live_server.api_key, base_url=proxy.url, use_listings_cache=False, skip_instance_cache=True
        )
        uncached.find(tree)
        before = proxy.stats["requests"]
        uncached.find(tree)
        assert proxy.stats["requests"] > before


# --- fsspec's conventions ----------------------------------------------------------------------------------


def test_instances_are_cached_and_pickle(live_server: LiveServer, shared: str) -> None:
    options = {"api_key": live_server.api_key, "base_url": live_server.base_url}
    one, two = WandbFileSystem(**options), WandbFileSystem(**options)
    assert one is two
    copy = pickle.loads(pickle.dumps(one))
    assert copy.cat(f"{shared}/a.csv") == TREE["a.csv"]
    assert live_server.api_key not in repr(one)
    assert WandbFileSystem._strip_protocol(f"wandb://{shared}/") == shared
    assert one.unstrip_protocol(shared) == f"wandb://{shared}"
    WandbFileSystem.clear_instance_cache()


def test_credentials_come_from_the_environment_as_api_takes_them(
    live_server: LiveServer, shared: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", live_server.api_key)
    monkeypatch.setenv("WANDB_BASE_URL", live_server.base_url)
    fs = WandbFileSystem(skip_instance_cache=True)
    assert fs.cat(f"{shared}/a.csv") == TREE["a.csv"]
    monkeypatch.delenv("WANDB_API_KEY")
    with pytest.raises(wandb_files.ConfigurationError):
        WandbFileSystem(skip_instance_cache=True)


def test_another_key_in_the_environment_is_another_instance_acting_as_its_user(
    registered: None, live_server: LiveServer, shared: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas

    other_user = f"fs-key-{unique}"
    other_key = live_server.add_user(other_user)
    monkeypatch.setenv("WANDB_BASE_URL", live_server.base_url)
    monkeypatch.setenv("WANDB_API_KEY", live_server.api_key)
    first = WandbFileSystem()
    assert pandas.read_csv(f"wandb://{shared}/a.csv")["x"].tolist() == [1, 3]
    monkeypatch.setenv("WANDB_API_KEY", other_key)
    second = WandbFileSystem()
    assert second is not first
    assert second.api.viewer["username"] == other_user
    with pytest.raises(FileNotFoundError):  # the other user cannot see admin's run
        pandas.read_csv(f"wandb://{shared}/a.csv")
    monkeypatch.setenv("WANDB_API_KEY", live_server.api_key)
    assert WandbFileSystem() is first  # the first key's instance, still cached
    for fs in (first, second):
        assert live_server.api_key not in fs._fs_token and other_key not in fs._fs_token
        assert not fs.storage_options  # a key from the environment is not an argument
        assert live_server.api_key.encode() not in pickle.dumps(fs) and other_key.encode() not in pickle.dumps(fs)
    WandbFileSystem.clear_instance_cache()


def test_to_json_leaves_the_key_out_unless_asked(live_server: LiveServer, shared: str) -> None:
    fs = WandbFileSystem(api_key=live_server.api_key, base_url=live_server.base_url, skip_instance_cache=True)
    for described in (fs.to_json(), json.dumps(fs.to_dict())):
        assert live_server.api_key not in described
        assert json.loads(described)["base_url"] == live_server.base_url
    with_key = fs.to_json(include_password=True)
    assert json.loads(with_key)["api_key"] == live_server.api_key
    assert AbstractFileSystem.from_json(with_key).cat(f"{shared}/a.csv") == TREE["a.csv"]
    with pytest.raises(wandb_files.ConfigurationError):  # without the key, and none in the environment
        AbstractFileSystem.from_json(fs.to_json())
    WandbFileSystem.clear_instance_cache()


def test_mapper_and_transactions(fs: WandbFileSystem, tree: str) -> None:
    mapper = fs.get_mapper(f"{tree}/media")
    assert mapper["table.json"] == b"{}"
    assert "images/other_1.png" in list(mapper)
    with fs.transaction:
        with fs.open(f"{tree}/tx.txt", "wb") as f:
            f.write(b"committed at the end")
        fs.invalidate_cache()
        assert not fs.exists(f"{tree}/tx.txt")
    assert fs.cat(f"{tree}/tx.txt") == b"committed at the end"


# --- the entry point ---------------------------------------------------------------------------------------

_ENTRY_POINT_CHECK = """
import json, sys
import fsspec, wandb_files.fsspec
from wandb_files.fsspec import WandbFileSystem
cls = fsspec.get_filesystem_class("wandb")
fs = fsspec.filesystem("wandb", api_key=sys.argv[1], base_url=sys.argv[2])
print(json.dumps({
    "module": wandb_files.fsspec.__file__,
    "registered": sys.modules["fsspec.registry"].known_implementations["wandb"]["class"],
    "is_ours": cls is WandbFileSystem,
    "listing": fs.ls(sys.argv[3], detail=False),
}))
"""


@pytest.mark.slow
def test_the_entry_point_makes_fsspec_pick_this_filesystem(
    live_server: LiveServer, shared: str, tmp_path: Path
) -> None:
    """After `pip install wandb-files[fsspec]`, fsspec.filesystem("wandb") is ours, not the abandoned package its
    registry names. The shared test environment cannot be reinstalled, so this builds a wheel of this source
    tree (in a copy, with pip's own build isolation), installs it with `pip install --target` into a temp folder,
    and runs a fresh interpreter with only that folder on PYTHONPATH: fsspec reads the entry point from the
    installed wheel's metadata (entry_points.txt), exactly as it would after a real install."""
    source = tmp_path / "source"
    root = Path(__file__).parent.parent
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(root / part, source / part)
    shutil.copytree(root / "wandb_files", source / "wandb_files", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "wheel"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("wandb_files-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=120)
    assert "wandb = wandb_files.fsspec:WandbFileSystem" in next(site.glob("*.dist-info/entry_points.txt")).read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", _ENTRY_POINT_CHECK, live_server.api_key, live_server.base_url, shared],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # `python -c` puts the working folder first on sys.path: not this source tree
        check=True,
        timeout=60,
    )
    found = json.loads(out.stdout)
    assert found["module"].startswith(str(site))  # the installed wheel, not this source tree
    assert found["registered"] == "wandb_files.fsspec.WandbFileSystem"  # the entry point replaced wandbfs.WandbFS
    assert found["is_ours"]
    assert f"{shared}/a.csv" in found["listing"]
