"""`wandb-files sync`: a local mirror of a run or a project, moving only what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from wandb_files.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    GLOB_HELP,
    NO_PROGRESS_OPTION,
    WORKERS_OPTION,
    Settings,
    main,
    report_failures,
    sigterm_as_interrupt,
)
from wandb_files.cli.output import safe_name
from wandb_files.cli.selection import FILTER_OPTION, ORDER_OPTION
from wandb_files.patterns import glob_to_like


@main.command(
    "sync",
    epilog="""\b
Examples:
  wandb-files sync my-entity/my-project mirror/            # every run, into mirror/<run_id>/
  wandb-files sync my-entity/my-project/run_id mirror/ --pattern 'media/*.png'
  wandb-files sync my-entity/my-project mirror/ --delete --dry-run
  wandb-files sync my-entity/my-project mirror/ --filter '{"state": "finished", "tags": "best"}'

A rerun with nothing changed moves no bytes and reads no local file: a manifest in
DEST/.wandb-files/ remembers what was written. Local files of the synced runs that
differ from the server's are replaced; with --delete, the ones the server no longer
has are removed (never anything outside DEST/<run_id>/ of the synced runs: the folders
of runs that --filter does not select are left as they are).""",
)
@click.argument("source")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--pattern", metavar="GLOB", help=GLOB_HELP)
@click.option("--delete", is_flag=True, help="Remove local files of the synced runs that the server no longer has.")
@click.option("--dry-run", is_flag=True, help="Change nothing; print each planned download and deletion.")
@FILTER_OPTION
@ORDER_OPTION
@WORKERS_OPTION
@NO_PROGRESS_OPTION
@click.pass_obj
def sync_command(
    settings: Settings,
    source: str,
    dest: Path,
    pattern: str | None,
    delete: bool,
    dry_run: bool,
    filters: dict[str, Any] | None,
    order: str | None,
    workers: int | None,
    no_progress: bool,
) -> None:
    """Mirror the files of SOURCE (a run path, or entity/project for all its runs, or those --filter selects)
    into DEST/<run_id>/."""
    from wandb_files.errors import Interrupted
    from wandb_files.mirror import sync

    try:
        with sigterm_as_interrupt():
            result = sync(
                source,
                dest,
                pattern=glob_to_like(pattern) if pattern else None,
                delete=delete,
                dry_run=dry_run,
                max_workers=workers,
                progress=False if no_progress else None,
                api=settings.api(),
                filters=filters,
                order=order,
            )
    except Interrupted as exc:
        click.echo(
            f"interrupted: {exc.unfinished} files not fetched yet (what finished is recorded). "
            "Run the same command again to resume",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    if dry_run:
        for path in result.fetched:
            click.echo(f"would fetch {safe_name(str(path))}")
        for path in result.deleted:
            click.echo(f"would delete {safe_name(str(path))}")
    click.echo(result.summary()[0].upper() + result.summary()[1:])
    report_failures(result.failed, "sync", len(result.fetched) + result.unchanged)
    if result.failed:
        raise click.exceptions.Exit(EXIT_FAILED)
