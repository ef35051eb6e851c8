"""The scripts in examples/ run as users run them: subprocesses configured by environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import LiveServer, server_in_this_python

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(script: str, *args: str, server: LiveServer | None = None) -> str:
    env = dict(os.environ)
    if server is not None:
        env.update(WANDB_BASE_URL=server.base_url, WANDB_API_KEY=server.api_key)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_upload_folder_then_download_run(live_server: LiveServer, tmp_path: Path, unique: str) -> None:
    source = tmp_path / "outputs"
    (source / "metrics").mkdir(parents=True)
    (source / "metrics" / "eval.json").write_text('{"acc": 0.9}')
    (source / "model.bin").write_bytes(os.urandom(5000))
    (source / "summary.json").write_text("{}")
    out = run_example("upload_folder.py", str(source), f"ex{unique}", "--run-id", "r1", server=live_server)
    assert "uploaded metrics/eval.json (12 bytes)" in out
    assert f"run: admin/ex{unique}/r1" in out

    dest = tmp_path / "dest"
    out = run_example("download_run.py", f"admin/ex{unique}/r1", str(dest), "%.json", server=live_server)
    assert "r1: 2 files" in out
    assert (dest / "metrics" / "eval.json").read_text() == '{"acc": 0.9}'
    assert (dest / "summary.json").exists() and not (dest / "model.bin").exists()


@server_in_this_python
def test_demo_runs_end_to_end() -> None:
    out = run_example("demo.py")
    assert "uploaded 300 files" in out
    assert "byte-for-byte mismatches: 0; temp files left: 0" in out
