"""BackgroundServer: how many server processes it starts."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

import wandb_files
from tests.support import server_in_this_python
from wandb_files.testing import BackgroundServer

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"), server_in_this_python]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def worker_count(server: BackgroundServer) -> int:
    assert server.process is not None
    deadline = time.monotonic() + 10
    while True:  # workers answer /healthz one by one: wait until the count is stable
        count = len(children(server.process.pid))
        time.sleep(0.5)
        if count == len(children(server.process.pid)) or time.monotonic() > deadline:
            return count


# One worker serves in the starting process itself, with no child; N > 1 are N children of it (plus
# multiprocessing's resource tracker).
def test_one_process_by_default(tmp_path: Path) -> None:
    with BackgroundServer(tmp_path) as server:
        assert requests.get(f"{server.base_url}/healthz", timeout=10).ok
        assert worker_count(server) == 0


@pytest.mark.parametrize("how", ["argument", "extra_args"])
def test_workers_when_asked(tmp_path: Path, how: str) -> None:
    kwargs: dict[str, Any] = {"workers": 2} if how == "argument" else {"extra_args": ["--workers", "2"]}
    with BackgroundServer(tmp_path, **kwargs) as server:
        assert requests.get(f"{server.base_url}/healthz", timeout=10).ok
        assert worker_count(server) >= 2


@pytest.mark.slow  # a server start and two `user add` processes
def test_another_python_runs_the_server_and_adds_its_users(tmp_path: Path) -> None:
    """`python=`: the server and `add_user` run in that Python (the client-only run of `make test-min` relies on
    it); here a wrapper around this one, which notes each command it runs."""
    ran = tmp_path / "ran.txt"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{ran}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    with BackgroundServer(tmp_path / "data", python=str(wrapper)) as server:
        key = server.add_user("carol")
        assert wandb_files.Api(api_key=key, base_url=server.base_url).viewer["entity"] == "carol"
        with pytest.raises(ValueError, match="carol"):
            server.add_user("carol")  # taken: the command's own message
    commands = ran.read_text().splitlines()
    assert commands[0].startswith("-m wandb_files.server --host 127.0.0.1")
    assert commands[1:] == [f"-m wandb_files user add carol --data-dir {tmp_path / 'data'}"] * 2
