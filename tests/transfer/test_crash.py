"""Crashes and races between processes: `kill -9` mid-download, two processes downloading into one folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import wandb_files
from tests.support import LiveServer, run_with_files

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import wandb_files
    from wandb_files.transfer import downloads as transfer

    base_url, key, path, root, kill_after = sys.argv[1:6]
    kill_after = int(kill_after)
    if kill_after:
        os.environ["WANDB_FILES_ENGINE"] = "python"  # the kill hooks into the Python path's chunks
        transfer.CHUNK_SIZE = 64 * 1024
        real_chunks = transfer._chunks
        seen = [0]

        def chunks(response):
            for chunk in real_chunks(response):
                seen[0] += 1
                if seen[0] >= kill_after:  # a real SIGKILL, in the middle of a transfer
                    os.kill(os.getpid(), signal.SIGKILL)
                yield chunk

        transfer._chunks = chunks
    api = wandb_files.Api(api_key=key, base_url=base_url)
    paths = api.run(path).files().download(root=root, replace=True, max_workers=4, progress=False)
    print(len(paths))
    """
)


def child(server: LiveServer, run: wandb_files.Run, root: Path, kill_after: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, server.base_url, server.api_key, "/".join(run.path), str(root), str(kill_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def heavy_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[wandb_files.Run, dict]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    contents = {f"shard_{i}.bin": os.urandom(3 * 1024 * 1024 + i) for i in range(6)}
    contents.update({f"small/{i}.txt": os.urandom(500) for i in range(30)})
    return run_with_files(api, tmp_path_factory.mktemp("heavy"), contents, "crash"), contents


def finals(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".part")
    }


def test_kill_9_mid_download_leaves_no_partial_file_and_a_rerun_completes(
    live_server: LiveServer, heavy_run: tuple, tmp_path: Path
) -> None:
    run, contents = heavy_run
    root = tmp_path / "out"
    proc = child(live_server, run, root, kill_after=60)  # about 4 MB into the transfers
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    written = finals(root)
    assert len(written) < len(contents)  # it really died mid-way
    for name, data in written.items():
        assert data == contents[name], f"{name} is under its final name but incomplete"
    leftovers = list(root.rglob("*.part"))
    assert leftovers and all(p.name.startswith(".") for p in leftovers)  # hidden temp files only

    rerun = child(live_server, run, root)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert out.strip() == str(len(contents))  # results list final paths only
    assert finals(root) == contents
    assert not list(root.rglob("*.part"))


def test_two_processes_downloading_into_one_folder_end_with_correct_files(
    live_server: LiveServer, heavy_run: tuple, tmp_path: Path
) -> None:
    run, contents = heavy_run
    root = tmp_path / "shared"
    procs = [child(live_server, run, root) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert out.strip() == str(len(contents))
    assert finals(root) == contents
    assert not list(root.rglob("*.part"))


def test_a_download_waits_only_for_another_download_of_the_same_file(
    live_server: LiveServer, heavy_run: tuple, tmp_path: Path
) -> None:
    """The claim is a lock on the temp file itself: an unrelated file never waits (no shared lock stripes),
    and the same file waits for its holder, then finds it done or takes over its temp file."""
    import threading

    from wandb_files import transfer
    from wandb_files.transfer.locks import claim_part

    run, contents = heavy_run
    root = tmp_path / "out"
    root.mkdir()
    held, other = run.file("shard_0.bin"), run.file("shard_1.bin")
    release = threading.Event()
    claimed = threading.Event()

    def hold() -> None:  # another downloader of shard_0.bin, stuck mid-transfer
        with claim_part(transfer.part_path(root / "shard_0.bin")):
            claimed.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert claimed.wait(5)
    started = time.monotonic()
    other.download(root=root).close()
    assert time.monotonic() - started < 5  # not held up by the claim on shard_0.bin
    waiting = threading.Thread(target=lambda: held.download(root=root).close())
    waiting.start()
    time.sleep(0.5)
    assert waiting.is_alive() and not (root / "shard_0.bin").exists()  # it waits for the holder
    release.set()
    holder.join()
    waiting.join(30)
    assert finals(root) == {n: contents[n] for n in ("shard_0.bin", "shard_1.bin")}
    assert not list(root.rglob("*.part"))
