"""Shared fixtures: a live `wandb-files server` on a free loopback port, started as a real subprocess."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ADMIN_KEY, LiveServer, start_server, stop_server

# The test servers run one process each unless a test asks for more: a second worker would add seconds to every
# server start and stop, and the tests are about behaviour, not throughput. (An explicit --workers still wins.)
os.environ.setdefault("WANDB_FILES_WORKERS", "1")


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
