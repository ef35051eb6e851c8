"""`wandb-files download`: a run's files (all, named, or matching a glob) into a folder, verified; or the files
of the runs of a project that a filter selects, a folder a run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wandb_files.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    GLOB_HELP,
    MAX_BANDWIDTH_OPTION,
    NO_PROGRESS_OPTION,
    WORKERS_OPTION,
    BulkOutcome,
    CliError,
    Settings,
    main,
    report_failures,
    run_bulk,
)
from wandb_files.cli.output import human_size, one_line, safe_name
from wandb_files.cli.selection import FILTER_OPTION, ORDER_OPTION
from wandb_files.errors import plural
from wandb_files.patterns import glob_to_like

if TYPE_CHECKING:
    from wandb_files.runs import Runs
    from wandb_files.transfer import DryRunFile


@main.command(
    "download",
    epilog="""\b
Examples:
  wandb-files download my-entity/my-project/run_id -o out
  wandb-files download my-entity/my-project/run_id config.yaml output.log
  wandb-files download my-entity/my-project/run_id --pattern 'checkpoints/*.pt' --skip-existing --workers 8
  wandb-files download my-entity/my-project/run_id -o out --dry-run        # what would move; writes nothing
  wandb-files download my-entity/my-project/run_id -o out --max-bandwidth 20MB
  wandb-files download my-entity/my-project -o out --filter '{"state": "finished"}' --pattern 'media/*.png'

A file whose local copy already holds the same bytes (size and md5) is not downloaded again. A local file
that differs stops the download before anything is fetched (exit 2) unless --replace or --skip-existing.
PATH may be a project (entity/project): the files of its runs (those --filter selects) go to
OUTPUT/<run_id>/<name>.""",
)
@click.argument("path")
@click.argument("names", nargs=-1)
@click.option("--pattern", metavar="GLOB", help=GLOB_HELP)
@click.option(
    "-o",
    "--output",
    "output",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to download into; names keep their folders.",
)
@click.option("--replace", is_flag=True, help="Overwrite local files that differ from the run's.")
@click.option("--skip-existing", is_flag=True, help="Keep local files that exist, whatever they hold.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Write nothing: print each file that would be downloaded, skipped or refused, and the bytes.",
)
@FILTER_OPTION
@ORDER_OPTION
@WORKERS_OPTION
@MAX_BANDWIDTH_OPTION
@NO_PROGRESS_OPTION
@click.pass_obj
def download_command(
    settings: Settings,
    path: str,
    names: tuple[str, ...],
    pattern: str | None,
    output: Path,
    replace: bool,
    skip_existing: bool,
    dry_run: bool,
    filters: dict[str, Any] | None,
    order: str | None,
    workers: int | None,
    max_bandwidth: float | None,
    no_progress: bool,
) -> None:
    """Download the files of the run at PATH (all of them, the NAMES given, or those matching --pattern), or of
    the runs of the project at PATH that --filter selects."""
    if replace and skip_existing:
        raise click.UsageError("--replace and --skip-existing cannot be combined")
    if names and pattern:
        raise click.UsageError("give NAMES or --pattern, not both")
    from wandb_files.api import runs_of
    from wandb_files.runs import Run

    # Files written after this instant are the ones this command downloaded. Taken before the run is looked
    # up, so that at least two requests separate it from the first write even on a coarse file-system clock.
    started_ns = time.time_ns()
    chosen = runs_of(settings.api(), path, filters=filters, order=order)
    like = glob_to_like(pattern) if pattern else None
    if not isinstance(chosen, Run):
        _download_project(chosen, names, like, output, replace, skip_existing, dry_run, workers, max_bandwidth,
                          no_progress, started_ns)  # fmt: skip
        return
    run = chosen
    if names:
        files = run.files(names=list(dict.fromkeys(names)), per_page=min(len(names), 1000))
    else:
        files = run.files(per_page=1000, pattern=like)
    if dry_run:
        try:
            planned = files.download(output, replace=replace, exist_ok=skip_existing, dry_run=True)
        except ValueError as exc:
            raise local_conflict(exc) from exc
        print_plan(planned, output)
        return
    try:
        outcome = run_bulk(
            lambda: files.download(
                output,
                replace=replace,
                exist_ok=skip_existing,
                max_workers=workers,
                progress=False if no_progress else None,
                max_bandwidth=max_bandwidth,
            )
        )
    except ValueError as exc:
        raise local_conflict(exc) from exc
    paths = outcome.results
    if not paths and not outcome.failures and not names:
        click.echo(f"No files to download{f' match {pattern!r}' if pattern else ''} in {'/'.join(run.path)}.")
        return
    report_outcome(outcome, paths, output, started_ns, skip_existing)
    missing = missing_names(names, output, paths, outcome.failures)
    if missing:
        click.echo(
            f"error: not in run {'/'.join(run.path)}: {', '.join(safe_name(n) for n in missing)}. "
            f"'wandb-files ls {path}' lists its files",
            err=True,
        )
    if outcome.failures or missing:
        raise click.exceptions.Exit(EXIT_FAILED)


def _download_project(
    runs: Runs,
    names: tuple[str, ...],
    like: str | None,
    output: Path,
    replace: bool,
    skip_existing: bool,
    dry_run: bool,
    workers: int | None,
    max_bandwidth: float | None,
    no_progress: bool,
    started_ns: int,
) -> None:
    """The files of the chosen runs into OUTPUT/<run_id>/<name>, with one run's rules: a local file that differs
    stops everything before any byte moves, unless --replace or --skip-existing."""
    from wandb_files.errors import LocalFilesDifferError
    from wandb_files.files import download_jobs
    from wandb_files.transfer import choose_engine, download_many, local_copy_matches, plan_downloads

    where = f"{runs.entity}/{runs.project}"
    files = runs.files(names=list(dict.fromkeys(names)) or None, pattern=like, per_page=1000)
    jobs, refused = download_jobs(files, output, by_run=True)
    if dry_run:
        print_plan(plan_downloads(jobs, refused, replace=replace, exist_ok=skip_existing), output)
        return
    if not jobs and not refused:
        chosen = f"{len(runs)} chosen run{'s' if len(runs) != 1 else ''}" if runs.filters else "its runs"
        click.echo(f"No files to download in {chosen} of {where}.")
        return
    todo, kept = [], []
    conflicts = []
    for job in jobs:
        if replace or not os.path.lexists(job.target):
            todo.append(job)
        elif skip_existing or local_copy_matches(job.target, job.size, job.md5):
            kept.append(job.target)
        else:
            conflicts.append(job.target)
    if conflicts:
        raise local_conflict(LocalFilesDifferError(conflicts))
    outcome = run_bulk(
        lambda: download_many(
            runs.client,
            todo,
            engine=choose_engine(runs.client),
            max_workers=workers,
            progress=False if no_progress else None,
            refused=refused,
            max_bandwidth=max_bandwidth,
        )
    )
    report_outcome(outcome, [*outcome.results, *kept], output, started_ns, skip_existing)
    if outcome.failures:
        raise click.exceptions.Exit(EXIT_FAILED)


def report_outcome(
    outcome: BulkOutcome[Path], paths: list[Path], output: Path, started_ns: int, skip_existing: bool
) -> None:
    """The summary line (files written during the call are the downloaded ones), the failures, and an
    interruption (which exits 130)."""
    seconds = outcome.seconds
    fetched_bytes = fetched = 0
    for local in paths:
        try:
            stat = local.stat()
        except OSError:
            continue
        if stat.st_mtime_ns >= started_ns:
            fetched += 1
            fetched_bytes += stat.st_size
    kept = len(paths) - fetched
    rate = fetched_bytes / 1e6 / seconds if seconds > 0 else 0.0
    summary = (
        f"Downloaded {fetched} file{'s' if fetched != 1 else ''} ({fetched_bytes:,} bytes, "
        f"{human_size(fetched_bytes)}) in {seconds:.2f} s ({rate:.1f} MB/s) to {output}"
    )
    if kept:
        summary += f"; {kept} already there ({'kept' if skip_existing else 'identical'})"
    click.echo(summary)

    report_failures(outcome.failures, "download", len(paths))
    if outcome.interrupted is not None:
        click.echo(
            f"interrupted: {plural(outcome.interrupted.unfinished, 'file')} not downloaded yet (temp files kept). "
            "Run the same command again to resume",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_INTERRUPTED)


def print_plan(planned: list[DryRunFile], output: Path) -> None:
    """One line a file (``would download``, ``would skip``, ``would refuse``), then the totals."""
    from wandb_files.transfer.plan import summary

    verbs = {"download": "would download", "skip": "would skip", "refuse": "would refuse"}
    for record in planned:
        line = f"{verbs[record.action]} {safe_name(record.name)}"
        if record.size is not None:
            line += f" ({human_size(record.size)})"
        if record.replaces:
            line += ", replacing the local file"
        if record.reason:
            line += f": {one_line(record.reason)}"
        click.echo(line)
    totals = summary(planned)
    parts = [
        f"{verbs[action].split()[1]} {plural(files, 'file')} ({nbytes:,} bytes, {human_size(nbytes)})"
        for action, (files, nbytes) in totals.items()
    ]
    click.echo(f"Dry run into {output}, nothing written: would {'; '.join(parts)}")


def local_conflict(exc: ValueError) -> CliError:
    """The SDK's "local files differ" refusal in the command line's words."""
    from wandb_files.errors import LocalFilesDifferError

    if isinstance(exc, LocalFilesDifferError):
        return CliError(
            EXIT_USAGE,
            f"{exc.summary}; nothing was downloaded. Pass --replace to overwrite them or --skip-existing to keep them",
        )
    return CliError(EXIT_USAGE, f"{one_line(exc)}. See 'wandb-files download --help'")


def missing_names(
    names: Iterable[str], output: Path, paths: list[Path], failures: list[tuple[str, BaseException]]
) -> list[str]:
    """The NAMES that neither downloaded nor failed: the run has no such file."""
    from wandb_files.transfer import target_path

    done = set(paths)
    failed = {name for name, _ in failures}
    missing = []
    for name in dict.fromkeys(names):
        if name in failed:
            continue
        try:
            if target_path(output, name) in done:
                continue
        except (ValueError, TypeError):
            pass
        missing.append(name)
    return missing
