"""The `wandb-files server` and `wandb-files user add` commands, run as a user runs them."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import requests

import wandb_files
from tests.conftest import cli, free_port


def test_help_lists_the_server_commands() -> None:
    out = cli("--help").stdout
    assert "server" in out and "user" in out
    assert "--data-dir" in cli("server", "--help").stdout


def test_server_generates_and_prints_an_admin_key_once_and_users_can_be_added(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wandb_files", "server", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.fullmatch(r"admin API key: ([0-9a-f]{40})\n", line)
        assert match, line
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert wandb_files.Api(api_key=match.group(1), base_url=base_url).default_entity == "admin"

        out = cli("user", "add", "carol", "--data-dir", str(data)).stdout
        key = out.strip().splitlines()[-1].split()[-1]
        assert out.strip().startswith("API key for carol:") and len(key) == 40
        assert wandb_files.Api(api_key=key, base_url=base_url).default_entity == "carol"

        again = cli("user", "add", "carol", "--data-dir", str(data), check=False)
        assert again.returncode == 1 and "carol" in again.stderr and "Traceback" not in again.stderr
        bad = cli("user", "add", "no/slash", "--data-dir", str(data), check=False)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    output = proc.stdout.read()  # type: ignore[union-attr]
    assert match.group(1) not in output  # printed once, never logged again
