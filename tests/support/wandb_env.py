"""The environment that points the real wandb client at a server."""

from __future__ import annotations

from pathlib import Path

import pytest


def point_wandb_at(monkeypatch: pytest.MonkeyPatch, base_url: str, api_key: str, tmp_path: Path) -> None:
    """Point the real client at `base_url` by environment only, its folders under `tmp_path`."""
    monkeypatch.setenv("WANDB_BASE_URL", base_url)
    monkeypatch.setenv("WANDB_API_KEY", api_key)
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
