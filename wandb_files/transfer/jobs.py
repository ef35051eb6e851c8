"""The jobs of a bulk download, which of them cannot all be written (``a`` beside ``a/b``), and the type of the
engine that runs them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wandb_files.formatting import safe_name
from wandb_files.transfer.runner import PoolFactory


@dataclass(frozen=True)
class DownloadJob:
    """One file of a bulk download.

    Attributes:
        url: Where the bytes are.
        target: The final path (from `target_path`).
        name: How messages name the file (e.g. ``run_id/media/a.png``).
        size: The expected size, or None.
        md5: The expected md5 (base64 or hex), or None.
    """

    url: str
    target: Path
    name: str
    size: int | None
    md5: str | None


#: What runs the jobs of a bulk download (`engines.choose_engine` picks one): made for each call from its workers,
#: the pure-Python download of one job (an engine may hand it any job), the progress callback and the call's controls.
DownloadEngine = PoolFactory[DownloadJob, Path]


def clashing_jobs(jobs: Sequence[DownloadJob]) -> list[tuple[str, BaseException]]:
    """Jobs that cannot all be written: a target inside a folder that another job writes as a file.

    A run may hold both ``a`` and ``a/b`` (W&B allows it); no file system does. ``a`` is kept, ``a/b`` refused.
    """
    targets = {job.target for job in jobs}
    refused: list[tuple[str, BaseException]] = []
    for job in jobs:
        clash = next((folder for folder in job.target.parents if folder in targets), None)
        if clash is not None:
            refused.append(
                (
                    job.name,
                    ValueError(
                        f"cannot write file {safe_name(job.name)!r}: the run also has a file where its folder "
                        f"{str(clash)!r} would go, and a path cannot be both"
                    ),
                )
            )
    return refused


def refusing_clashes(jobs: Iterable[DownloadJob], refused: list[tuple[str, BaseException]]) -> Iterator[DownloadJob]:
    """`clashing_jobs` and the repeated-target check for jobs that arrive one by one: a job that clashes with
    one seen before is refused (into `refused`) and the first is kept.

    Paths are compared as strings, and a folder's ancestors are looked at only the first time a folder is met:
    a folder already known is no file (a later file there would have been refused) and neither are its
    ancestors, so a listing of many files in a few folders costs one look a file.
    """
    targets: set[str] = set()
    folders: set[str] = set()
    for job in jobs:
        target = os.fspath(job.target)
        problem = None
        if target in targets:
            problem = f"another file of the call is also written to {target!r}"
        elif target in folders:
            problem = f"the run also has files under {target!r}, so it cannot be a file"
        new_folders = []
        folder = os.path.dirname(target)
        while problem is None and folder not in folders:
            if folder in targets:
                problem = f"the run also has a file where its folder {folder!r} would go, and a path cannot be both"
            new_folders.append(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        if problem is not None:
            refused.append((job.name, ValueError(f"cannot write file {safe_name(job.name)!r}: {problem}")))
            continue
        targets.add(target)
        folders.update(new_folders)
        yield job
