"""The web page's templates, stylesheet and script ship in the wheel (package data), with no build step."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_wheel_holds_the_web_pages_files(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    shutil.copytree(ROOT / "wandb_files", source / "wandb_files", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "wheel"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("wandb_files-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    web = ROOT / "wandb_files" / "server" / "web"
    wanted = {
        path.relative_to(ROOT).as_posix()
        for folder in ("templates", "static")
        for path in (web / folder).iterdir()
        if path.is_file()
    }
    assert {"wandb_files/server/web/templates/run.html", "wandb_files/server/web/static/style.css"} <= wanted
    assert wanted <= shipped, wanted - shipped
    assert "wandb_files/server/db/migrations/script.py.mako" in shipped
