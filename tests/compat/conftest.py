"""Fixtures for running the real `wandb` client against the embedded server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import wandb_files
from tests.support import LiveServer
from tests.support.wandb_env import point_wandb_at

wandb = pytest.importorskip("wandb", reason="the real wandb client is installed by `make test` (the [compat] extra)")


@pytest.fixture
def wandb_api(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """`wandb.Api()` configured the way a user points it at our server: by environment only."""
    point_wandb_at(monkeypatch, live_server.base_url, live_server.api_key, tmp_path)
    return wandb.Api()


@pytest.fixture
def our_api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
