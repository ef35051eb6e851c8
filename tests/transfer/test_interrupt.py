"""Ctrl-C and SIGTERM during a bulk transfer on a slow link: it stops within about a second, keeps the temp
files of what was in flight, never leaves a wrong file under a final name, and the next call resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import wandb_files
from tests.support import LiveServer, md5_b64, run_with_files
from wandb_files.testing import FaultProxy

#: Each body through the proxy moves at this rate: 40 files of 300 kB take about 10 s with 4 workers.
RATE = 300_000
FILE_SIZE = 300_000

CHILD = textwrap.dedent(
    """
    import json, sys
    import wandb_files
    from wandb_files.errors import Interrupted

    base_url, key, path, root = sys.argv[1:5]
    files = wandb_files.Api(api_key=key, base_url=base_url).run(path).files(per_page=100)
    try:
        files.download(root=root, max_workers=4, progress=False)
    except Interrupted as exc:
        print(json.dumps({"finished": len(exc.results), "unfinished": exc.unfinished}), flush=True)
        sys.exit(130)
    print(json.dumps({"finished": "all"}), flush=True)
    """
)


@pytest.fixture(scope="module")
def slow_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[wandb_files.Run, dict]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    contents = {f"shard_{i:02d}.bin": os.urandom(FILE_SIZE) for i in range(40)}
    return run_with_files(api, tmp_path_factory.mktemp("slow"), contents, "interrupt"), contents


def _wait_for_a_finished_file(root: Path, process: subprocess.Popen[str], timeout: float = 20) -> None:
    """Until one file is done and another is part-way (all files take the same time: they finish in waves).

    Part-way means under half done: a part nearly done could finish before the signal lands, and with all files
    in one wave the parts left would then be new, empty ones.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = list(root.glob("*")) + list(root.glob(".*"))
        done = any(p.name.startswith("shard_") for p in names)
        if done and any(p.name.endswith(".part") and 0 < _size(p) < FILE_SIZE // 2 for p in names):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("no file finished in time")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place meanwhile
        return 0


def _stop_and_time(process: subprocess.Popen[str], signum: int) -> tuple[float, str, str]:
    started = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    return time.monotonic() - started, out, err


def _interrupt_mid_download(
    command: list[str], root: Path, signum: int, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], float, str, str]:
    """Start `command`, send `signum` once a file is done and another part-way; how long it took to stop."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_a_finished_file(root, child)
    return (child, *_stop_and_time(child, signum))


def _check_what_is_left(root: Path, contents: dict[str, bytes]) -> list[Path]:
    """Every file under a final name holds the right bytes; returns the temp files kept."""
    finals = [p for p in root.iterdir() if p.name.startswith("shard_")]
    for path in finals:
        assert md5_b64(path.read_bytes()) == md5_b64(contents[path.name]), path.name
    assert 0 < len(finals) < len(contents)
    return [p for p in root.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_a_bulk_download_within_a_second_and_a_rerun_resumes(
    live_server: LiveServer, slow_run: tuple, tmp_path: Path, signum: int
) -> None:
    run, contents = slow_run
    root = tmp_path / "out"
    with FaultProxy(live_server.base_url, bytes_per_second=RATE) as proxy:
        child, elapsed, out, err = _interrupt_mid_download(
            [sys.executable, "-c", CHILD, proxy.url, live_server.api_key, "/".join(run.path), str(root)], root, signum
        )
    assert child.returncode == 130, err
    assert elapsed < 2.0, elapsed  # 50 s of queued work was waiting
    report = json.loads(out)
    assert report["finished"] >= 1 and report["unfinished"] >= 1
    parts = _check_what_is_left(root, contents)
    assert any(p.stat().st_size > 0 for p in parts)  # what was in flight is kept, to be resumed

    paths = run.files().download(root=root, progress=False)  # straight to the server: fast
    assert len(paths) == len(contents)
    assert all(md5_b64((root / n).read_bytes()) == md5_b64(d) for n, d in contents.items())
    assert not list(root.glob("*.part"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_cli_stops_on_ctrl_c_or_sigterm_and_says_how_to_resume(
    live_server: LiveServer, slow_run: tuple, tmp_path: Path, signum: int
) -> None:
    run, contents = slow_run
    root = tmp_path / "out"
    with FaultProxy(live_server.base_url, bytes_per_second=RATE) as proxy:
        command = [sys.executable, "-m", "wandb_files", "--base-url", proxy.url, "download", "/".join(run.path),
                   "-o", str(root), "--workers", "4", "--no-progress"]  # fmt: skip
        child, elapsed, out, err = _interrupt_mid_download(
            command, root, signum, env={**os.environ, "WANDB_API_KEY": live_server.api_key}
        )
    assert child.returncode == 130, (out, err)
    assert elapsed < 2.0, elapsed
    assert "interrupted:" in err and "Run the same command again to resume" in err
    assert "Aborted" not in err and "Traceback" not in err
    _check_what_is_left(root, contents)
