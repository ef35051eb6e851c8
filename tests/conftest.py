"""Shared fixtures: a live `wandb-files server` on a free loopback port, started as a real subprocess."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wandb_files.testing import BackgroundServer, free_port

__all__ = ["ADMIN_KEY", "LiveServer", "cli", "free_port", "start_server", "stop_server"]

ADMIN_KEY = "a" * 8 + secrets.token_hex(16)  # 40 characters, like a W&B key


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


class LiveServer(BackgroundServer):
    """The embedded server, with users created once per name and shared by the tests that ask for them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._users: dict[str, str] = {}

    def add_user(self, name: str, api_key: str | None = None) -> str:
        if name not in self._users:
            self._users[name] = super().add_user(name, api_key)
        return self._users[name]


def start_server(data_dir: Path, api_key: str, *extra: str) -> LiveServer:
    server = LiveServer(data_dir, api_key=api_key, extra_args=extra)
    server.start()
    return server


def stop_server(server: LiveServer) -> None:
    server.stop()


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
