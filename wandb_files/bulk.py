"""`download_files`: many files of many runs at once, in parallel, as a pandas DataFrame of local paths."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wandb_files import transfer
from wandb_files.errors import DownloadError
from wandb_files.files import File, download_jobs

if TYPE_CHECKING:
    import pandas as pd

#: W&B logs media as media/<kind>/<key>_<step>_<hash>.<ext>; <key> may itself hold slashes.
_MEDIA = re.compile(r"^media/[^/]+/(?P<key>.+)_(?P<step>\d+)_(?P<hash>[0-9a-f]{6,})(?P<ext>\.[^/]+)$")


def attribute_and_step(name: str) -> tuple[str, float]:
    """The attribute and step a file stands for in `download_files`' table.

    ``media/images/val/pred_12_1a2b3c4d.png`` is attribute ``val/pred`` at step 12; any other file is its own
    attribute, with step NaN.
    """
    match = _MEDIA.match(name)
    if match:
        return match.group("key"), float(match.group("step"))
    return name, math.nan


def require_pandas() -> Any:
    """The pandas module.

    Raises:
        ImportError: it is not installed (with the command that installs it).
    """
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "download_files returns a pandas DataFrame; install pandas with: pip install 'wandb-files[pandas]'"
        ) from None
    return pandas


def _collect(files: Any, pd: Any) -> list[File]:
    if isinstance(files, File):
        return [files]
    if isinstance(files, pd.DataFrame):
        values: Iterable[Any] = files.to_numpy().ravel()
    elif isinstance(files, pd.Series):
        values = files.to_numpy()
    elif isinstance(files, (str, bytes)) or not isinstance(files, Iterable):
        raise TypeError(
            f"files must be a File, an iterable of File, or a pandas Series/DataFrame of File, "
            f"not {type(files).__name__}"
        )
    else:
        values = files
    collected = []
    for value in values:
        cell = value if isinstance(value, (list, tuple)) else [value]  # a cell of several files: all of them
        for item in cell:
            if isinstance(item, File):
                collected.append(item)
            elif not (item is None or (isinstance(item, float) and math.isnan(item))):  # empty table cells
                raise TypeError(f"files must hold File objects, found {type(item).__name__}: {item!r:.80}")
    return collected


def _check_run_ids(files: list[File]) -> None:
    """Refuse, before anything is written, runs of different projects that share an id: they would share
    a ``<destination>/<run_id>`` folder and a row of the table."""
    paths: dict[str, str] = {}
    for file in files:
        if file.run is None:
            continue
        path = "/".join(file.run.path)
        seen = paths.setdefault(file.run.id, path)
        if seen != path:
            raise ValueError(
                f"runs {seen} and {path} have the same id {file.run.id!r}, so they would share the folder "
                f"<destination>/{file.run.id} and one row of the table; download them to different destinations"
            )


def download_files(
    files: File | Iterable[File] | pd.Series | pd.DataFrame,
    destination: str | os.PathLike[str] | None = None,
    *,
    max_workers: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Download files of any number of runs in parallel, to ``<destination>/<run_id>/<file name>``.

    Every file is verified (size and md5) and renamed into place atomically; one that already holds the same
    bytes is not downloaded again, one that differs is replaced.

    Args:
        files: A `File`, any iterable of them (e.g. ``api.runs("entity/project").files(pattern="%.png")``), or a
            pandas Series or DataFrame holding them (empty cells are skipped).
        destination: The folder; the current working directory when None.
        max_workers: Parallel transfers (default `WANDB_FILES_MAX_WORKERS`, else 32).
        progress: A progress bar for bytes and files; None shows it on terminals only.

    Returns:
        A DataFrame indexed by (``run``, ``step``) with one column per attribute and local paths as values.
        W&B media files ``media/<kind>/<key>_<step>_<hash>.<ext>`` give attribute ``<key>`` at that step;
        any other file gives attribute = its name at step NaN. Where several files share a run, step and
        attribute (W&B logs a list of images that way), the cell holds the list of their paths, in name
        order; ``frame[column].explode()`` gives one path a row either way.

    Raises:
        ImportError: pandas is not installed (``pip install 'wandb-files[pandas]'``).
        TypeError: `files` holds something other than `File` objects.
        ValueError: a file has no run, runs of two projects share an id, two files would land on the same
            path, or `destination` is a file (in each case nothing is downloaded).
        DownloadError: some files failed; the others were downloaded, `error.results` lists their paths and
            `error.dataframe` is the table of those that succeeded.
    """
    pd = require_pandas()
    collected = _collect(files, pd)
    _check_run_ids(collected)
    root = Path(destination) if destination is not None else Path.cwd()
    jobs, refused = download_jobs(collected, root, by_run=True)
    # A job's label is "<run id>/<name>": it maps results back to their file (and so to its Api's client).
    by_label = {f"{file.run.id}/{file.name}": file for file in collected if file.run is not None}
    groups: dict[int, list[transfer.DownloadJob]] = {}
    for job in jobs:
        groups.setdefault(id(by_label[job.name].client), []).append(job)
    failures = list(refused)
    done: list[transfer.DownloadJob] = []
    for group in groups.values():
        client = by_label[group[0].name].client
        try:
            transfer.download_many(client, group, max_workers=max_workers, progress=progress)
            done += group
        except DownloadError as exc:
            failed = {name for name, _ in exc.failures}
            done += [job for job in group if job.name not in failed]
            failures += exc.failures
    frame = _table(pd, [(by_label[job.name], job.target) for job in done])
    if failures:
        raise DownloadError(failures, [job.target for job in done], dataframe=frame)
    return frame


def _table(pd: Any, downloaded: list[tuple[File, Path]]) -> pd.DataFrame:
    run_order: dict[str, int] = {}
    cells: dict[tuple[str, float], dict[str, list[tuple[str, str]]]] = {}
    for file, path in downloaded:
        assert file.run is not None
        run_order.setdefault(file.run.id, len(run_order))
        attribute, step = attribute_and_step(file.name)
        cells.setdefault((file.run.id, step), {}).setdefault(attribute, []).append((file.name, str(path)))
    # Runs in the order they came, steps ascending within a run, NaN (plain files) first as in neptune's tables.
    keys = sorted(cells, key=lambda k: (run_order[k[0]], not math.isnan(k[1]), 0.0 if math.isnan(k[1]) else k[1]))
    index = (
        pd.MultiIndex.from_tuples(keys, names=["run", "step"])
        if keys
        else pd.MultiIndex.from_tuples([], names=["run", "step"])
    )
    rows = [{attribute: _cell(found) for attribute, found in cells[k].items()} for k in keys]
    frame = pd.DataFrame(rows, index=index)
    frame.columns.name = "attribute"
    return frame


def _cell(found: list[tuple[str, str]]) -> str | list[str]:
    """One path, or the paths of several files at one (run, step, attribute), in name order."""
    if len(found) == 1:
        return found[0][1]
    return [path for _, path in sorted(found)]
