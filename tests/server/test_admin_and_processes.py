"""The admin key across restarts, and several server processes over one data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support import Client, free_port, start_server, stop_server


def _start_without_key(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a server with no --api-key; return it and its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wandb_files", "server", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "server exited"
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "server did not become healthy"
        time.sleep(0.05)
    return proc, base_url


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return out


def _works(base_url: str, key: str) -> bool:
    response = requests.post(f"{base_url}/graphql", json={"query": "{ viewer { name } }"}, auth=("api", key), timeout=5)
    return response.status_code == 200 and response.json()["data"]["viewer"]["name"] == "admin"


def test_generated_key_then_api_key_replaces_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, base_url = _start_without_key(data_dir)
    try:
        assert proc.stdout is not None
        first_line = proc.stdout.readline()  # printed before serving starts
        assert first_line.startswith("admin API key: ")
        generated = first_line.split()[-1]
        assert len(generated) == 40 and int(generated, 16) >= 0
        assert _works(base_url, generated)
    finally:
        out = _stop(proc)
    assert generated not in out  # shown once only

    # A later start with --api-key sets the admin's key; the generated one stops working.
    new_key = "n" * 40
    server = start_server(data_dir, new_key)
    try:
        assert _works(server.base_url, new_key)
        assert not _works(server.base_url, generated)
        assert new_key not in server.log()

        # A second process over the same database: same data, same signing secret, no new key printed.
        proc2, base2 = _start_without_key(data_dir)
        try:
            assert _works(base2, new_key)
            client = Client(server.base_url, new_key)
            client.make_run("p", "r")
            client.upload("admin", "p", "r", "shared.txt", b"shared bytes")
            direct = client.files("admin", "p", "r")["files"]["edges"][0]["node"]["directUrl"]
            via_other = direct.replace(server.base_url, base2)
            assert via_other != direct
            response = requests.get(via_other, timeout=5)
            assert response.status_code == 200 and response.content == b"shared bytes"
        finally:
            out2 = _stop(proc2)
        assert "admin API key" not in out2
    finally:
        stop_server(server)


def test_keys_shorter_than_32_characters_are_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    short = subprocess.run(
        [sys.executable, "-m", "wandb_files", "user", "add", "dave", "--data-dir", str(data_dir), "--api-key", "short"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode != 0 and "32-256 characters" in short.stderr
    server = subprocess.run(
        [sys.executable, "-m", "wandb_files", "server", "--data-dir", str(data_dir), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WANDB_FILES_API_KEY": "x" * 31},
    )
    assert server.returncode != 0 and "32-256 characters" in server.stderr


def test_background_server_keeps_the_key_off_the_command_line(tmp_path: Path) -> None:
    """`ps` shows every local user a process's command line; the key goes through the environment."""
    key = "k" * 40
    server = start_server(tmp_path / "data", key)
    try:
        assert server.process is not None
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "wandb_files.server" in cmdline and key not in cmdline and "--api-key" not in cmdline
        assert _works(server.base_url, key)
    finally:
        stop_server(server)
