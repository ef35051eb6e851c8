"""`wandb-files upload`: files and folders into a run, every path checked before anything is created."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import click

from wandb_files.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    MAX_BANDWIDTH_OPTION,
    NO_PROGRESS_OPTION,
    WORKERS_OPTION,
    CliError,
    Settings,
    main,
    report_failures,
    run_bulk,
)
from wandb_files.cli.output import human_size, one_line, safe_name
from wandb_files.errors import plural


@main.command(
    "upload",
    epilog="""\b
Examples:
  wandb-files upload my-entity/my-project/run_id model.ckpt config.yaml
  wandb-files upload my-entity/my-project/run_id outputs --root outputs     # outputs/a.txt is stored as a.txt
  wandb-files upload my-entity/my-project/new_run results/ --create

A name that exists in the run is replaced.""",
)
@click.argument("path")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--root",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Names in the run are the files' paths relative to this folder; every file must be inside it.",
)
@click.option("--create", is_flag=True, help="Create the run (and its project) if it does not exist.")
@WORKERS_OPTION
@MAX_BANDWIDTH_OPTION
@NO_PROGRESS_OPTION
@click.pass_obj
def upload_command(
    settings: Settings,
    path: str,
    files: tuple[Path, ...],
    root: Path,
    create: bool,
    workers: int | None,
    max_bandwidth: float | None,
    no_progress: bool,
) -> None:
    """Upload FILES (files, or folders walked recursively) to the run at PATH."""
    from wandb_files.errors import NotFoundError
    from wandb_files.transfer import plan_uploads

    # Every path is checked before anything is created or sent.
    planned, skipped = plan_uploads(walk(files), root, skip_outside_links=True)
    for skipped_path, why in skipped:
        click.echo(f"skipped: {safe_name(str(skipped_path))}: {why}", err=True)
    local = [local_path for local_path, _ in planned]
    try:
        run = settings.run(path)
    except NotFoundError as exc:
        if not create:
            raise CliError(EXIT_FAILED, f"{one_line(exc)}. Pass --create to create it") from exc
        api = settings.api()
        entity, project, run_id = api.parse_run_path(path)
        run = api.create_run(run_id, project, entity)
        click.echo(f"Created run {'/'.join(run.path)}")
    if not local:
        click.echo("Nothing to upload: no files in " + ", ".join(str(f) for f in files))
        return
    outcome = run_bulk(
        lambda: run.upload_files(
            local,
            root=root,
            max_workers=workers,
            progress=False if no_progress else None,
            max_bandwidth=max_bandwidth,
        )
    )
    uploaded, failures, interrupted, seconds = outcome.results, outcome.failures, outcome.interrupted, outcome.seconds
    if interrupted is not None:
        click.echo(
            f"interrupted: {plural(len(interrupted.results), 'file')} uploaded, "
            f"{plural(interrupted.unfinished, 'file')} not. Run the same command again to upload them",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    total = sum(f.size for f in uploaded)
    click.echo(
        f"Uploaded {plural(len(uploaded), 'file')} ({total:,} bytes, {human_size(total)}) "
        f"to {'/'.join(run.path)} in {seconds:.2f} s"
    )
    report_failures(failures, "upload", len(uploaded))
    if failures:
        raise click.exceptions.Exit(EXIT_FAILED)


def walk(items: Iterable[Path]) -> list[Path]:
    """The files among `items`, folders walked recursively in name order, each file once.

    Links to folders inside a walked folder are not followed (a link may loop, or lead out of the root); they
    are reported as skipped. Links to files are kept: `plan_uploads` decides whether their target may go.
    """
    seen: dict[Path, None] = {}
    for item in items:
        if item.is_dir():
            for folder, dirs, filenames in os.walk(item):
                dirs.sort()
                for name in [d for d in dirs if Path(folder, d).is_symlink()]:
                    click.echo(
                        f"skipped: {safe_name(str(Path(folder, name)))}: a symbolic link to a folder (not followed)",
                        err=True,
                    )
                for filename in sorted(filenames):
                    candidate = Path(folder, filename)
                    if candidate.is_file():
                        seen.setdefault(candidate, None)
                    else:
                        kind = "a broken symbolic link" if candidate.is_symlink() else "not a regular file"
                        click.echo(f"skipped: {safe_name(str(candidate))}: {kind}", err=True)
        else:
            seen.setdefault(item, None)
    return list(seen)
