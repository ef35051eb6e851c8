"""Dry runs of bulk downloads: what a call would fetch, skip or refuse, and the bytes, with nothing written."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wandb_files.transfer.jobs import DownloadJob, refusing_clashes
from wandb_files.transfer.paths import local_copy_matches

Action = Literal["download", "skip", "refuse"]


@dataclass(frozen=True)
class DryRunFile:
    """What a download call would do with one file (``dry_run=True``).

    Attributes:
        name: The file, as the call's messages name it (``<run id>/<name>`` in `download_files`).
        path: Where it would be written; None when its name cannot be written at all.
        size: Its size on the server in bytes (None when the server did not say).
        action: ``"download"`` (it would be fetched), ``"skip"`` (kept as it is) or ``"refuse"`` (it would
            fail, or stop the call, before any byte of it moves).
        reason: Why it is skipped or refused (None for a download).
        replaces: A download would replace a local file that differs (or a symbolic link).
    """

    name: str
    path: Path | None
    size: int | None
    action: Action
    reason: str | None = None
    replaces: bool = False


def plan_downloads(
    jobs: Iterable[DownloadJob],
    refused: list[tuple[str, BaseException]],
    *,
    replace: bool,
    exist_ok: bool,
) -> list[DryRunFile]:
    """The dry run of a bulk download of `jobs`, in their order, then the files already refused.

    Reads local files (to compare md5s) and never writes, creates or renames anything.

    Args:
        jobs: What the call would download (read once; an iterator is fine).
        refused: Files the caller refused (unsafe names); it may grow while `jobs` is read.
        replace: Local files that differ would be replaced (`download_files` always replaces them).
        exist_ok: Local files that exist would be kept whatever they hold.

    Returns:
        One record a file: each job's, then each refused file's.
    """
    planned = [_plan(job, replace=replace, exist_ok=exist_ok) for job in refusing_clashes(jobs, refused)]
    planned += [DryRunFile(name, None, None, "refuse", str(exc)) for name, exc in refused]
    return planned


def _plan(job: DownloadJob, *, replace: bool, exist_ok: bool) -> DryRunFile:
    if not os.path.lexists(job.target):
        return DryRunFile(job.name, job.target, job.size, "download")
    if local_copy_matches(job.target, job.size, job.md5):
        return DryRunFile(job.name, job.target, job.size, "skip", "the local file holds the same bytes (size and md5)")
    if replace:
        return DryRunFile(job.name, job.target, job.size, "download", replaces=True)
    if exist_ok:
        return DryRunFile(job.name, job.target, job.size, "skip", "a local file exists (exist_ok)")
    return DryRunFile(
        job.name,
        job.target,
        job.size,
        "refuse",
        "a local file differs: the call would raise LocalFilesDifferError and fetch nothing (pass replace=True "
        "or exist_ok=True)",
    )


def summary(planned: Iterable[DryRunFile]) -> dict[Action, tuple[int, int]]:
    """(files, bytes) for each action."""
    counts: dict[Action, tuple[int, int]] = {"download": (0, 0), "skip": (0, 0), "refuse": (0, 0)}
    for record in planned:
        files, nbytes = counts[record.action]
        counts[record.action] = (files + 1, nbytes + (record.size or 0))
    return counts
