"""The `wandb-files` command line, run as a user runs it (the keyless first start is in tests/server)."""

from __future__ import annotations

import wandb_files
from tests.conftest import LiveServer, cli


def test_help_lists_the_server_commands() -> None:
    out = cli("--help").stdout
    assert "server" in out and "user" in out
    assert "--data-dir" in cli("server", "--help").stdout


def test_user_add_prints_a_working_key_and_refuses_bad_or_taken_names(live_server: LiveServer) -> None:
    data = str(live_server.data_dir)
    out = cli("user", "add", "carol", "--data-dir", data).stdout
    key = out.strip().splitlines()[-1].split()[-1]
    assert out.strip().startswith("API key for carol:") and len(key) == 40
    assert wandb_files.Api(api_key=key, base_url=live_server.base_url).default_entity == "carol"

    again = cli("user", "add", "carol", "--data-dir", data, check=False)
    assert again.returncode == 1 and "carol" in again.stderr and "Traceback" not in again.stderr
    bad = cli("user", "add", "no/slash", "--data-dir", data, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
