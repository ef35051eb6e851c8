"""`download_files`: many files of many runs at once, in parallel, as a pandas DataFrame of local paths."""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from wandb_files import transfer
from wandb_files.errors import DownloadError
from wandb_files.files import File
from wandb_files.runs import Run

if TYPE_CHECKING:
    import pandas as pd

    from wandb_files.graphql import GraphQLClient

#: W&B logs media as media/<kind>/<key>_<step>_<hash>.<ext>; <key> may itself hold slashes.
_MEDIA = re.compile(r"^media/[^/]+/(?P<key>.+)_(?P<step>\d+)_(?P<hash>[0-9a-f]{6,})(?P<ext>\.[^/]+)$")


#: How many files one listing request asks for when a whole run is given.
_RUN_PAGE = 1000


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


def _values(files: Any, pd: Any) -> tuple[Iterable[Any], bool]:
    """What `files` holds, and whether it is already in memory (a File, a list or tuple, a Series, a DataFrame)
    rather than read as it comes (a `Files` collection, a generator over runs, runs)."""
    if isinstance(files, File):
        return [files], True
    if isinstance(files, Run):
        return [files], False
    if isinstance(files, pd.DataFrame):
        # `fetch_runs_table` puts metadata columns (config/..., summary/...) beside the file columns, as
        # neptune-query's tables do: only columns holding files count, unless none does (then the error says why).
        holding = [column for column in files.columns if any(map(_holds_files, files[column]))]
        return (files[holding] if holding else files).to_numpy().ravel(), True
    if isinstance(files, pd.Series):
        return files.to_numpy(), True
    if isinstance(files, (str, bytes)) or not isinstance(files, Iterable):
        raise TypeError(
            f"files must be a File, a Run, an iterable of File or Run, or a pandas Series/DataFrame of File, "
            f"not {type(files).__name__}"
        )
    return files, isinstance(files, (list, tuple))


def _holds_files(cell: Any) -> bool:
    """Whether a table cell is a `File` or `Run`, or a list holding one."""
    items = cell if isinstance(cell, (list, tuple)) else [cell]
    return any(isinstance(item, (File, Run)) for item in items)


def _files_in(values: Iterable[Any]) -> Iterator[File]:
    for value in values:
        cell = value if isinstance(value, (list, tuple)) else [value]  # a cell of several files: all of them
        for item in cell:
            if isinstance(item, File):
                yield item
            elif isinstance(item, Run):  # every file of the run, listed as the downloads go
                yield from item.files(per_page=_RUN_PAGE)
            elif not (item is None or (isinstance(item, float) and math.isnan(item))):  # empty table cells
                raise TypeError(
                    f"files must hold File objects (or Run objects), found {type(item).__name__}: {item!r:.80}"
                )


class _RunIds:
    """Refuses runs of different projects that share an id: they would share a ``<destination>/<run_id>``
    folder and a row of the table."""

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}

    def check(self, file: File) -> None:
        if file.run is None:
            return
        path = "/".join(file.run.path)
        seen = self._paths.setdefault(file.run.id, path)
        if seen != path:
            raise ValueError(
                f"runs {seen} and {path} have the same id {file.run.id!r}, so they would share the folder "
                f"<destination>/{file.run.id} and one row of the table; download them to different destinations"
            )


@overload
def download_files(
    files: File | Iterable[File] | pd.Series | pd.DataFrame,
    destination: str | os.PathLike[str] | None = None,
    *,
    max_workers: int | None = None,
    progress: bool | None = None,
    max_bandwidth: float | str | None = None,
    dry_run: Literal[False] = False,
) -> pd.DataFrame: ...


@overload
def download_files(
    files: File | Iterable[File] | pd.Series | pd.DataFrame,
    destination: str | os.PathLike[str] | None = None,
    *,
    max_workers: int | None = None,
    progress: bool | None = None,
    max_bandwidth: float | str | None = None,
    dry_run: Literal[True],
) -> list[transfer.DryRunFile]: ...


def download_files(
    files: File | Iterable[File] | pd.Series | pd.DataFrame,
    destination: str | os.PathLike[str] | None = None,
    *,
    max_workers: int | None = None,
    progress: bool | None = None,
    max_bandwidth: float | str | None = None,
    dry_run: bool = False,
) -> pd.DataFrame | list[transfer.DryRunFile]:
    """Download files of any number of runs in parallel, to ``<destination>/<run_id>/<file name>``.

    Every file is verified (size and md5) and renamed into place atomically; one that already holds the same
    bytes is not downloaded again, one that differs is replaced. Given a lazy collection (``run.files()``,
    ``api.runs(...).files()``), files start downloading with the first page of the listing while later pages
    are fetched, and the listing is never held whole.

    Args:
        files: A `File`, any iterable of them (e.g. ``api.runs("entity/project").files(pattern="%.png")``), or a
            pandas Series or DataFrame holding them (empty cells are skipped). A `Run` among them (or given
            alone, or the runs a filter selects: ``api.runs("entity/project", filters={"state": "finished"})``)
            stands for all of its files. Of a DataFrame, only the columns holding files are read (a table of
            `wandb_files.query.fetch_runs_table` holds metadata columns beside them).
        destination: The folder; the current working directory when None.
        max_workers: Parallel transfers (default `WANDB_FILES_MAX_WORKERS`, else 32).
        progress: A progress bar for bytes and files; None shows it on terminals only.
        max_bandwidth: Bytes per second across all transfers (a number, or ``"5MB"``, ``"4MiB"``); default
            `WANDB_FILES_MAX_BANDWIDTH`, else no limit.
        dry_run: Write nothing; return one `DryRunFile` a file: what would be downloaded, skipped (the local
            file holds the same bytes) or refused, with its size.

    Returns:
        A DataFrame indexed by (``run``, ``step``) with one column per attribute and local paths as values.
        W&B media files ``media/<kind>/<key>_<step>_<hash>.<ext>`` give attribute ``<key>`` at that step;
        any other file gives attribute = its name at step NaN. Where several files share a run, step and
        attribute (W&B logs a list of images that way), the cell holds the list of their paths, in name
        order; ``frame[column].explode()`` gives one path a row either way. With `dry_run`, the records.

    Raises:
        ImportError: pandas is not installed (``pip install 'wandb-files[pandas]'``).
        TypeError: `files` holds something other than `File` and `Run` objects.
        ValueError: a file has no run, runs of two projects share an id, two files would land on the same
            path, or `destination` is a file (given files in memory, nothing is downloaded then; given a lazy
            collection, the call stops where it finds the problem and what was downloaded stays).
        DownloadError: some files failed; the others were downloaded, `error.results` lists their paths and
            `error.dataframe` is the table of those that succeeded.
        Interrupted: Ctrl-C; finished files stay, temp files are kept for the next call.
    """
    pd = require_pandas()
    bandwidth = transfer.check_max_bandwidth(max_bandwidth)
    values, in_memory = _values(files, pd)
    root = transfer.Destination(Path(destination) if destination is not None else Path.cwd())
    run_ids = _RunIds()
    if in_memory:
        collected = list(_files_in(values))
        for file in collected:
            run_ids.check(file)
            if file.run is None:
                raise ValueError(f"file {file.name!r} has no run, so it has no <run_id> folder to go to")
        found: Iterator[File] = iter(collected)
    else:
        found = _files_in(values)
    head = next(found, None)  # a lazy listing: its first page, which says whose client downloads
    if head is None:
        return [] if dry_run else _table(pd, [])
    client = head.client
    refused: list[tuple[str, BaseException]] = []
    written: dict[Path, tuple[str, str]] = {}  # target -> (run id, name), for the table
    others: dict[int, tuple[GraphQLClient, list[transfer.DownloadJob]]] = {}  # files of another Api's client

    def jobs() -> Iterator[transfer.DownloadJob]:
        by_run: dict[str, transfer.Destination] = {}
        for file in itertools.chain([head], found):
            if not in_memory:
                run_ids.check(file)
            if file.run is None:
                raise ValueError(f"file {file.name!r} has no run, so it has no <run_id> folder to go to")
            label = f"{file.run.id}/{file.name}"
            try:
                base = by_run.get(file.run.id) or by_run.setdefault(
                    file.run.id, transfer.Destination(root.target(file.run.id, folder=True))
                )
                job = file.download_job(base, label)
            except ValueError as exc:  # a name (or run id) that would escape the destination
                refused.append((label, exc))
                continue
            written[job.target] = (file.run.id, file.name)
            if file.client is client:
                yield job
            else:
                others.setdefault(id(file.client), (file.client, []))[1].append(job)

    if dry_run:
        planned = transfer.plan_downloads(jobs(), refused, replace=True, exist_ok=False)
        for _, extra in others.values():
            planned += transfer.plan_downloads(extra, [], replace=True, exist_ok=False)
        return planned
    failures: list[tuple[str, BaseException]] = []
    done: list[Path] = []
    groups: list[tuple[GraphQLClient, Iterable[transfer.DownloadJob], list[tuple[str, BaseException]]]] = [
        (client, list(jobs()) if in_memory else jobs(), refused)
    ]
    while groups:
        group_client, group, group_refused = groups.pop(0)
        try:
            done += transfer.download_many(
                group_client,
                group,
                engine=transfer.choose_engine(group_client),
                max_workers=max_workers,
                progress=progress,
                refused=group_refused,
                max_bandwidth=bandwidth,
            )
        except DownloadError as exc:
            done += exc.results
            failures += exc.failures
        if group_refused is refused:  # the first group read the whole listing: the others are known now
            groups += [(other, extra, []) for other, extra in others.values()]
    frame = _table(pd, [(*written[path], path) for path in done])
    if failures:
        raise DownloadError(failures, done, dataframe=frame)
    return frame


def _table(pd: Any, downloaded: list[tuple[str, str, Path]]) -> pd.DataFrame:
    """The table of (run id, name, local path) triples."""
    run_order: dict[str, int] = {}
    cells: dict[tuple[str, float], dict[str, list[tuple[str, str]]]] = {}
    for run_id, name, path in downloaded:
        run_order.setdefault(run_id, len(run_order))
        attribute, step = attribute_and_step(name)
        cells.setdefault((run_id, step), {}).setdefault(attribute, []).append((name, str(path)))
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
