"""Helpers shared by the client tests: making runs with files on the live server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import wandb_files
from wandb_files.retry import RetryPolicy

#: Retries that give up fast, for tests of failure paths.
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, total_timeout=5)


def write_files(root: Path, names_to_bytes: dict[str, bytes]) -> None:
    for name, data in names_to_bytes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def random_files(n: int, size: int = 100, prefix: str = "f") -> dict[str, bytes]:
    """`n` files with distinct random contents, named so their sorted order is their index order."""
    return {f"{prefix}_{i:04d}.bin": os.urandom(size) for i in range(n)}


def run_with_files(
    api: wandb_files.Api, tmp_path: Path, files: dict[str, bytes], project: str = "tests"
) -> wandb_files.Run:
    """A new run holding `files`, uploaded with the SDK."""
    run = api.create_run(project=project)
    source = tmp_path / f"upload-{run.id}"
    write_files(source, files)
    for name in files:
        run.upload_file(source / name, root=source)
    return run


def md5_b64(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.md5(data).digest()).decode()
