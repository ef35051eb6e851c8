"""The transfer engine in bulk: `Files.download`, `download_files`, resume, skip, aggregation, progress."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pandas as pd
import pytest

import wandb_files
from tests.support import FAST_RETRY, LiveServer, md5_b64, run_with_files
from wandb_files import DownloadError, File, download_files, transfer


@pytest.fixture
def api(live_server: LiveServer) -> wandb_files.Api:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    api.client.retry = FAST_RETRY
    return api


@pytest.fixture(scope="module")
def big_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[wandb_files.Run, dict]:
    """A run of 300 files in nested folders, uploaded in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    run = api.create_run(project="bulk")
    contents = {f"d{i % 7}/sub{i % 3}/f_{i:03d}.bin": os.urandom(i * 37) for i in range(300)}
    source = tmp_path_factory.mktemp("bulk-src")
    for name, data in contents.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: run.upload_file(source / n, root=source), contents))
    return run, contents


def test_files_download_hundreds_in_parallel_verified(big_run: tuple, tmp_path: Path) -> None:
    run, contents = big_run
    paths = run.files(per_page=100).download(root=tmp_path, max_workers=8, progress=False)
    assert paths == [(tmp_path / name).resolve() for name in sorted(contents)]
    for name, data in contents.items():
        assert (tmp_path / name).read_bytes() == data
    assert not list(tmp_path.rglob("*.part"))


def test_files_download_refuses_to_overwrite_different_local_files_before_downloading(
    big_run: tuple, tmp_path: Path
) -> None:
    run, contents = big_run
    names = sorted(contents)
    (tmp_path / names[5]).parent.mkdir(parents=True)
    (tmp_path / names[5]).write_bytes(b"my edits")
    with pytest.raises(ValueError, match="1 local file differs.*replace=True"):
        run.files().download(root=tmp_path, progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [tmp_path / names[5]]  # nothing downloaded

    run.files().download(root=tmp_path, exist_ok=True, progress=False)
    assert (tmp_path / names[5]).read_bytes() == b"my edits"
    assert (tmp_path / names[6]).read_bytes() == contents[names[6]]
    run.files().download(root=tmp_path, replace=True, progress=False)
    assert (tmp_path / names[5]).read_bytes() == contents[names[5]]


def test_identical_local_files_are_not_downloaded_again(api: wandb_files.Api, tmp_path: Path) -> None:
    data = os.urandom(5000)
    target = tmp_path / "same.bin"
    target.write_bytes(data)
    before = target.stat().st_mtime_ns
    dead_url = "http://127.0.0.1:9/never-contacted"  # discard port: any request would fail
    job = transfer.DownloadJob(dead_url, target, "same.bin", len(data), md5_b64(data))
    engine = transfer.choose_engine(api.client)
    assert transfer.download_many(api.client, [job], engine=engine, progress=False) == [target]
    assert target.stat().st_mtime_ns == before


def test_resume_continues_a_partial_download_with_range(big_run: tuple, api: wandb_files.Api, tmp_path: Path) -> None:
    run, contents = big_run
    name = max(contents, key=lambda n: len(contents[n]))
    data = contents[name]
    f = run.file(name)
    target = transfer.target_path(tmp_path, name)
    target.parent.mkdir(parents=True)
    part = transfer.part_path(target)
    part.write_bytes(data[: len(data) // 2])  # what an interrupted earlier call left behind
    received: list[int] = []
    transfer.download(api.client, f.url, target, name=name, size=f.size, md5=f.md5, progress=received.append)
    assert target.read_bytes() == data
    assert sum(received) == len(data) - len(data) // 2  # only the missing half crossed the network
    assert not part.exists()


def test_a_stale_partial_file_is_detected_and_replaced(big_run: tuple, api: wandb_files.Api, tmp_path: Path) -> None:
    run, contents = big_run
    name = max(contents, key=lambda n: len(contents[n]))
    f = run.file(name)
    target = transfer.target_path(tmp_path, name)
    target.parent.mkdir(parents=True)
    transfer.part_path(target).write_bytes(b"\0" * (len(contents[name]) // 2))  # bytes of another version
    transfer.download(api.client, f.url, target, name=name, size=f.size, md5=f.md5)
    assert target.read_bytes() == contents[name]


def test_failures_are_aggregated_and_never_stop_the_others(
    big_run: tuple, api: wandb_files.Api, tmp_path: Path
) -> None:
    run, contents = big_run
    good = list(run.files(per_page=20))[:20]
    missing = File(api.client, {"name": "gone.bin", "url": good[0].url + "-no-such-file", "sizeBytes": 1}, run)
    evil = File(api.client, {"name": "../../evil.bin", "url": good[0].url}, run)
    with pytest.raises(DownloadError) as info:
        jobs = [f.download_job(tmp_path) for f in [*good, missing]]
        transfer.download_many(api.client, jobs, engine=transfer.choose_engine(api.client), progress=False)
    assert [name for name, _ in info.value.failures] == ["gone.bin"]
    assert isinstance(info.value.failures[0][1], wandb_files.NotFoundError)
    assert len(info.value.results) == 20
    assert all(p.read_bytes() == contents[p.relative_to(tmp_path.resolve()).as_posix()] for p in info.value.results)
    assert "1 of 21 files failed" in str(info.value) and "gone.bin" in str(info.value)

    with pytest.raises(DownloadError) as info:
        download_files([*good[:3], evil], tmp_path / "bulk", progress=False)
    assert [name for name, _ in info.value.failures] == [f"{run.id}/../../evil.bin"]
    assert "outside" in str(info.value) or ".." in str(info.value)
    assert len(info.value.dataframe.columns) == 3
    assert not (tmp_path / "evil.bin").exists()


def test_download_files_table_for_media_and_plain_files_across_two_runs(api: wandb_files.Api, tmp_path: Path) -> None:
    media = {
        "media/images/predictions_1_a1b2c3d4e5.png": b"p1",
        "media/images/predictions_2_b1b2c3d4e5.png": b"p2",
        "media/images/val/examples_2_c1b2c3d4e5.png": b"v2",
        "sample.csv": b"a,b\n",
        "labels.json": b"{}",
    }
    run_a = run_with_files(api, tmp_path, media, "bulk-table")
    run_b = run_with_files(
        api, tmp_path, {"sample.csv": b"x,y\n", "media/images/predictions_1_ffffff.png": b"b1"}, "bulk-table"
    )
    dest = tmp_path / "dest"
    frame = download_files([*run_a.files(), *run_b.files()], destination=dest, progress=False)

    assert list(frame.index.names) == ["run", "step"]
    assert frame.columns.name == "attribute"
    assert set(frame.columns) == {"predictions", "val/examples", "sample.csv", "labels.json"}
    a, b = run_a.id, run_b.id
    assert frame.loc[(a, 1.0), "predictions"] == str((dest / a / "media/images/predictions_1_a1b2c3d4e5.png").resolve())
    assert frame.loc[(a, 2.0), "val/examples"].endswith("examples_2_c1b2c3d4e5.png")
    plain = frame.xs(a, level="run").loc[[math.isnan(s) for s in frame.xs(a, level="run").index]]
    assert plain.iloc[0]["sample.csv"] == str((dest / a / "sample.csv").resolve())
    assert Path(frame.loc[(b, 1.0), "predictions"]).read_bytes() == b"b1"
    assert [r for r, _ in frame.index][:1] == [a]  # runs keep the order they came in
    assert (dest / b / "sample.csv").read_bytes() == b"x,y\n"
    assert len(frame) == 5  # a: NaN, 1, 2; b: NaN, 1


def test_several_files_at_one_run_step_and_attribute_are_all_kept_as_a_list(
    api: wandb_files.Api, tmp_path: Path
) -> None:
    """W&B logs a list of images at one step as several files with one key: none may be dropped."""
    logged = {
        "media/images/examples_3_bbbbbb1.png": b"second",
        "media/images/examples_3_aaaaaa1.png": b"first",
        "media/images/examples_3_cccccc1.png": b"third",
        "media/images/examples_4_dddddd1.png": b"alone",
    }
    run = run_with_files(api, tmp_path, logged, "bulk-lists")
    dest = tmp_path / "dest"
    frame = download_files(run.files(), dest, progress=False)
    at3 = frame.loc[(run.id, 3.0), "examples"]
    assert at3 == [str((dest / run.id / n).resolve()) for n in sorted(logged)[:3]]  # in name order
    assert frame.loc[(run.id, 4.0), "examples"] == str(
        (dest / run.id / "media/images/examples_4_dddddd1.png").resolve()
    )
    paths = frame["examples"].explode()
    assert sorted(Path(p).read_bytes() for p in paths) == sorted(logged.values())


def test_runs_of_two_projects_with_one_id_are_refused_before_anything_is_written(
    api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    one = run_with_files(api, tmp_path, {"a.txt": b"1"}, f"first{unique}")
    two = api.create_run(run_id=one.id, project=f"second{unique}")
    source = tmp_path / "two"
    source.mkdir()
    (source / "a.txt").write_bytes(b"2")
    two.upload_file(source / "a.txt", root=source)
    with pytest.raises(ValueError, match=f"same id '{one.id}'.*different destinations"):
        download_files([*one.files(), *two.files()], tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest").exists()


def test_download_files_accepts_a_file_series_and_dataframe(big_run: tuple, tmp_path: Path, monkeypatch) -> None:
    run, _contents = big_run
    files = run.files(per_page=10)[:4]
    monkeypatch.chdir(tmp_path)
    single = download_files(files[0], progress=False)  # destination defaults to the working directory
    assert Path(single.iloc[0, 0]) == (tmp_path / run.id / files[0].name).resolve()
    from_series = download_files(pd.Series(files), tmp_path / "s", progress=False)
    assert from_series.notna().sum().sum() == 4
    table = pd.DataFrame({"x": [files[0], files[1]], "y": [files[2], None]})
    assert download_files(table, tmp_path / "t", progress=False).notna().sum().sum() == 3
    with pytest.raises(TypeError, match="File objects"):
        download_files(["not a file"], tmp_path / "u")
    with pytest.raises(TypeError, match="iterable of File"):
        download_files("a.txt", tmp_path / "u")


def test_download_files_needs_runs_before_downloading_anything(
    api: wandb_files.Api, big_run: tuple, tmp_path: Path
) -> None:
    run, _ = big_run
    orphan = File(api.client, {"name": "x.bin", "url": run.files()[0].url})
    with pytest.raises(ValueError, match="has no run"):
        download_files([run.files()[0], orphan], tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest").exists()


def test_files_of_many_runs_chain_lazily(api: wandb_files.Api, tmp_path: Path, unique: str) -> None:
    for i in range(3):
        run_with_files(api, tmp_path, {f"a{i}.json": b"{}", f"b{i}.txt": b"t"}, f"chain{unique}")
    files = api.runs(f"chain{unique}", per_page=2).files(pattern="%.json")
    assert iter(files) is files  # nothing fetched until iterated
    assert sorted(f.name for f in files) == ["a0.json", "a1.json", "a2.json"]
    with pytest.raises(ValueError, match="names or pattern"):
        api.runs(f"chain{unique}").files(names=["a"], pattern="%")


def test_worker_count_arguments_are_checked(big_run: tuple, tmp_path: Path, monkeypatch) -> None:
    run, _ = big_run
    with pytest.raises(ValueError, match="max_workers"):
        run.files().download(root=tmp_path, max_workers=0)
    with pytest.raises(TypeError, match="max_workers"):
        run.files().download(root=tmp_path, max_workers="8")  # type: ignore[arg-type]
    monkeypatch.setenv("WANDB_FILES_MAX_WORKERS", "lots")
    with pytest.raises(ValueError, match="WANDB_FILES_MAX_WORKERS"):
        run.files().download(root=tmp_path)
    monkeypatch.setenv("WANDB_FILES_MAX_WORKERS", "2")
    assert transfer.default_max_workers() == 2


def test_progress_bar_shows_bytes_and_files_and_can_be_turned_off(
    big_run: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    run, _ = big_run
    files = run.files(per_page=5)
    files[:5]
    subset = wandb_files.Files(run.client, run, names=[f.name for f in files.objects[:5]])
    subset.download(root=tmp_path / "a", progress=True)
    err = capsys.readouterr().err
    assert "downloading" in err and "files=5/5" in err
    subset.download(root=tmp_path / "b", progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("WANDB_FILES_DISABLE_PROGRESS", "1")
    subset.download(root=tmp_path / "c")
    assert capsys.readouterr().err == ""
    assert len(list((tmp_path / "c").rglob("*.bin"))) == 5


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory):
    """A second server whose signed URLs live 1 s and whose uploads are capped at 1,000 bytes."""
    from tests.support import ADMIN_KEY, start_server, stop_server

    server = start_server(
        tmp_path_factory.mktemp("strict") / "data", ADMIN_KEY, "--signed-url-ttl", "1", "--max-upload-bytes", "1000"
    )
    yield server
    stop_server(server)


def test_upload_files_in_parallel_then_verified(api: wandb_files.Api, tmp_path: Path) -> None:
    contents = {f"batch/{i % 4}/f_{i:03d}.bin": os.urandom(i * 13) for i in range(120)}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    run = api.create_run(project="bulk-up")
    paths = [tmp_path / name for name in contents]
    uploaded = run.upload_files(paths, root=tmp_path, max_workers=8, progress=False)
    assert [f.name for f in uploaded] == list(contents)
    assert all(f.md5 == md5_b64(contents[f.name]) for f in uploaded)
    assert len(run.files()) == 120


def test_upload_files_checks_every_path_before_sending_anything(api: wandb_files.Api, tmp_path: Path) -> None:
    run = api.create_run(project="bulk-up")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    (tmp_path / "x.txt").write_text("y")
    with pytest.raises(TypeError, match="upload_file"):
        run.upload_files(tmp_path / "x.txt", root=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a file"):
        run.upload_files([tmp_path / "x.txt", tmp_path / "missing"], root=tmp_path)
    with pytest.raises(ValueError, match="same name"):
        run.upload_files([tmp_path / "x.txt", tmp_path / "./x.txt"], root=tmp_path)
    assert len(run.files()) == 0
    assert run.upload_files([], root=tmp_path) == []


def test_a_symlink_is_uploaded_under_its_own_name_and_one_leading_out_of_root_is_refused(
    api: wandb_files.Api, tmp_path: Path
) -> None:
    run = api.create_run(project="bulk-links")
    root = tmp_path / "root"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "epoch_10.ckpt").write_bytes(b"weights")
    (root / "latest.ckpt").symlink_to("checkpoints/epoch_10.ckpt")
    assert run.upload_file(root / "latest.ckpt", root=root).name == "latest.ckpt"
    both = run.upload_files([root / "latest.ckpt", root / "checkpoints" / "epoch_10.ckpt"], root=root)
    assert sorted(f.name for f in both) == ["checkpoints/epoch_10.ckpt", "latest.ckpt"]
    assert {f.name: f.md5 for f in run.files()} == {
        n: md5_b64(b"weights") for n in ("checkpoints/epoch_10.ckpt", "latest.ckpt")
    }
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the run")
    (root / "leak.txt").symlink_to(outside)
    (root / "fine.txt").write_text("fine")
    with pytest.raises(ValueError, match="leak.txt.*symbolic link.*outside root"):
        run.upload_files([root / "fine.txt", root / "leak.txt"], root=root)
    assert "fine.txt" not in {f.name for f in run.files()}  # nothing was sent


def test_upload_named_stores_each_file_under_the_name_given_with_it(api: wandb_files.Api, tmp_path: Path) -> None:
    run = api.create_run(project="bulk-named")
    (tmp_path / "a.txt").write_text("a")
    outside = tmp_path / "elsewhere" / "target.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"target")
    (tmp_path / "link").symlink_to(outside)
    uploaded = run.upload_named([(tmp_path / "a.txt", "x/renamed.txt"), (str(tmp_path / "link"), "link.bin")])
    assert [f.name for f in uploaded] == ["x/renamed.txt", "link.bin"]
    assert {f.name: f.md5 for f in run.files()} == {"x/renamed.txt": md5_b64(b"a"), "link.bin": md5_b64(b"target")}
    fresh = api.create_run(project="bulk-named")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(ValueError, match=r"dangling'? is a broken symbolic link") as refused:
        fresh.upload_named([(tmp_path / "a.txt", "a.txt"), (tmp_path / "dangling", "d.txt")])
    assert str(tmp_path / "dangling") in str(refused.value)
    with pytest.raises(ValueError, match="cannot be a file name"):
        fresh.upload_named([(tmp_path / "a.txt", "../up.txt")])
    with pytest.raises(ValueError, match="same name"):
        fresh.upload_named([(tmp_path / "a.txt", "same"), (outside, "same")])
    with pytest.raises(TypeError, match="pair"):
        fresh.upload_named([str(tmp_path / "a.txt")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="name"):
        fresh.upload_named([(tmp_path / "a.txt", 3)])  # type: ignore[list-item]
    assert len(fresh.files()) == 0  # nothing was sent


def test_a_file_that_grows_while_it_uploads_is_sent_as_it_was_when_the_upload_began(
    live_server: LiveServer, api: wandb_files.Api, tmp_path: Path
) -> None:
    """A live log: more bytes than announced used to go out (HTTP 400). Now the announced snapshot goes."""
    import threading

    from wandb_files.testing import FaultProxy

    log = tmp_path / "train.log"
    start = os.urandom(1_000_000)
    log.write_bytes(start)
    stop = threading.Event()

    def keep_writing() -> None:
        with open(log, "ab") as f:
            while not stop.is_set():
                f.write(b"step ok\n" * 1000)
                f.flush()
                stop.wait(0.01)

    with FaultProxy(live_server.base_url, bytes_per_second=2_000_000) as proxy:  # about half a second
        slow = wandb_files.Api(api_key=live_server.api_key, base_url=proxy.url)
        run = slow.create_run(project="bulk-growing")
        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            stored = run.upload_file(log, root=tmp_path)
        finally:
            stop.set()
            writer.join()
    now = log.read_bytes()
    assert len(start) <= stored.size < len(now)
    assert stored.md5 == md5_b64(now[: stored.size])  # a prefix of the log: consistent, as announced
    with api.run("/".join(run.path)).file("train.log").download(root=tmp_path / "back") as back:
        assert back.buffer.read() == now[: stored.size]


def api_for(server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=server.api_key, base_url=server.base_url)


def _read_position(path: Path) -> int | None:
    """How far this process has read `path` through a descriptor open on it (Linux's fdinfo), or None."""
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if Path(os.readlink(fd)) == path.resolve():
                fields = dict(
                    line.split(":", 1) for line in Path(f"/proc/self/fdinfo/{fd.name}").read_text().split("\n") if line
                )
                return int(fields["pos"])
        except (OSError, KeyError, ValueError):
            continue  # closed meanwhile, or not ours
    return None


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="watches the upload's read position in /proc")
def test_a_file_that_shrinks_while_it_uploads_is_a_clear_error(live_server: LiveServer, tmp_path: Path) -> None:
    import threading

    from wandb_files.retry import NO_RETRY
    from wandb_files.testing import FaultProxy

    path = tmp_path / "shrinking.bin"
    size = 16_000_000  # 4 s through the proxy: far more than the socket buffers on the way hold
    path.write_bytes(os.urandom(size))
    at_cut: list[int] = []

    def cut_once_sending() -> None:
        # The event: the upload has opened the file, taken its size and sent some of it (not a fixed delay,
        # which a loaded machine may reach before the upload has started).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            position = _read_position(path)
            if position:
                os.truncate(path, 1000)
                at_cut.append(position)
                return
            time.sleep(0.001)

    with FaultProxy(live_server.base_url, bytes_per_second=4_000_000) as proxy:
        slow = wandb_files.Api(api_key=live_server.api_key, base_url=proxy.url)
        slow.client.retry = NO_RETRY
        run = slow.create_run(project="bulk-shrinking")
        cut = threading.Thread(target=cut_once_sending)
        cut.start()
        try:
            with pytest.raises(wandb_files.LocalFileChangedError, match=f"shrinking.bin.*shrank from {size} to 1000"):
                run.upload_file(path, root=tmp_path)
        finally:
            cut.join()
    assert at_cut and 0 < at_cut[0] < size  # cut mid-upload
    assert len(api_for(live_server).run("/".join(run.path)).files()) == 0  # nothing half-sent was stored


def test_upload_failures_are_aggregated(strict_server, tmp_path: Path) -> None:
    api = wandb_files.Api(api_key=strict_server.api_key, base_url=strict_server.base_url)
    api.client.retry = FAST_RETRY
    run = api.create_run(project="strict")
    for name, size in (("a.bin", 10), ("big.bin", 5000), ("c.bin", 20)):
        (tmp_path / name).write_bytes(os.urandom(size))
    with pytest.raises(wandb_files.UploadError) as info:
        run.upload_files([tmp_path / n for n in ("a.bin", "big.bin", "c.bin")], root=tmp_path, progress=False)
    assert [name for name, _ in info.value.failures] == ["big.bin"]
    assert "413" in str(info.value.failures[0][1])
    assert [f.name for f in info.value.results] == ["a.bin", "c.bin"]
    assert sorted(f.name for f in run.files()) == ["a.bin", "c.bin"]
    with pytest.raises(wandb_files.APIError, match="413"):  # one file: the failure itself, not a bulk error
        run.upload_file(tmp_path / "big.bin", root=tmp_path)


def test_an_expired_upload_url_is_signed_again(strict_server, tmp_path: Path) -> None:
    import time

    api = wandb_files.Api(api_key=strict_server.api_key, base_url=strict_server.base_url)
    api.client.retry = FAST_RETRY
    run = api.create_run(project="strict")
    local = tmp_path / "late.bin"
    local.write_bytes(b"signed too early")
    urls, headers = run._upload_urls(["late.bin"])
    time.sleep(2.1)
    stale = transfer.UploadJob(urls["late.bin"], local, "late.bin", 16, headers)
    with pytest.raises(wandb_files.UploadError, match="expired"):
        transfer.upload_many(api.client, [stale], progress=False)
    resigned = transfer.UploadJob(
        urls["late.bin"], local, "late.bin", 16, headers, resign=lambda: run._resign("late.bin")
    )
    assert transfer.upload_many(api.client, [resigned], progress=False) == [(16, md5_b64(b"signed too early"))]
    assert run.file("late.bin").md5 == md5_b64(b"signed too early")
