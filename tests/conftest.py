"""Shared fixtures: a live `wandb-files server` on a free loopback port, started as a real subprocess."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

ADMIN_KEY = "a" * 8 + secrets.token_hex(16)  # 40 characters, like a W&B key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `wandb-files ARGS…` in a subprocess, the way a user would."""
    return subprocess.run(
        [sys.executable, "-m", "wandb_files", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        env=env,
    )


@dataclass
class LiveServer:
    base_url: str
    api_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _users: dict[str, str] = field(default_factory=dict)

    def add_user(self, name: str) -> str:
        """Create another user/entity with `wandb-files user add` and return its API key."""
        if name not in self._users:
            out = cli("user", "add", name, "--data-dir", str(self.data_dir)).stdout
            key = out.strip().splitlines()[-1].split()[-1]
            self._users[name] = key
        return self._users[name]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(data_dir: Path, api_key: str, *extra: str) -> LiveServer:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wandb_files", "server", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--api-key", api_key, *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not become healthy:\n{log_path.read_text()}")
        time.sleep(0.05)
    return LiveServer(base_url=base_url, api_key=api_key, data_dir=data_dir, process=proc, log_path=log_path)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("server") / "data", ADMIN_KEY)
    yield server
    stop_server(server)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's real W&B settings or ~/.netrc."""
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def unique() -> str:
    """A fresh name for a project or run, so tests sharing the session server never collide."""
    return uuid.uuid4().hex[:10]
