"""MIME types are guessed from Python's built-in table plus a few registered extras, never the host's."""

from __future__ import annotations

import mimetypes

import pytest

from tests.support import Client
from wandb_files.server.mediatypes import guess_mimetype

RunPath = tuple[str, str, str]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.pt", "application/octet-stream"),  # /etc/mime.types on Debian says snesdev-page-table
        ("weights.ckpt", "application/octet-stream"),
        ("data.jsonl", "application/octet-stream"),  # application/jsonl is not a registered type
        ("config.yaml", "application/yaml"),
        ("dir/config.YML", "application/yaml"),
        ("README.md", "text/markdown"),
        ("plot.webp", "image/webp"),
        ("plot.png", "image/png"),
        ("metrics.csv", "text/csv"),
        ("wandb-summary.json", "application/json"),
        ("output.log", "text/plain"),  # W&B run logs are text
        ("train.py", "text/x-python"),
        ("no_extension", "application/octet-stream"),
    ],
)
def test_guess_mimetype(name: str, expected: str) -> None:
    assert guess_mimetype(name) == expected


def test_host_tables_are_ignored(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Even after the process-wide table has loaded a host file mapping .pt, our guess does not change.
    host_file = tmp_path / "mime.types"
    host_file.write_text("application/x-host-specific pt ckpt\n")
    monkeypatch.setattr(mimetypes, "inited", False)
    mimetypes.init([str(host_file)])
    try:
        assert mimetypes.guess_type("model.pt")[0] == "application/x-host-specific"
        assert guess_mimetype("model.pt") == "application/octet-stream"
    finally:
        mimetypes.init()


def test_stored_mimetype(admin: Client, run_path: RunPath) -> None:
    entity, project, run = run_path
    admin.upload(entity, project, run, "model.pt", b"\x00" * 10)
    admin.upload(entity, project, run, "config.yaml", b"a: 1\n")
    nodes = {e["node"]["name"]: e["node"] for e in admin.files(entity, project, run)["files"]["edges"]}
    assert nodes["model.pt"]["mimetype"] == "application/octet-stream"
    assert nodes["config.yaml"]["mimetype"] == "application/yaml"
