"""`wandb-files rm`: remove files of a run (named, or matching a glob), after asking."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from wandb_files.cli.app import EXIT_FAILED, GLOB_HELP, Settings, fail, main, report_failures
from wandb_files.cli.output import human_size, safe_name
from wandb_files.errors import plural
from wandb_files.patterns import glob_to_like

if TYPE_CHECKING:
    from wandb_files.files import File


@main.command(
    "rm",
    epilog="""\b
Examples:
  wandb-files rm my-entity/my-project/run_id old.log
  wandb-files rm my-entity/my-project/run_id --pattern 'checkpoints/*.tmp' --yes

Without --yes it asks before removing; with no terminal to ask on, it refuses (exit 1).""",
)
@click.argument("path")
@click.argument("names", nargs=-1)
@click.option("--pattern", metavar="GLOB", help=GLOB_HELP)
@click.option("--yes", "-y", is_flag=True, help="Remove without asking.")
@click.pass_obj
def rm_command(settings: Settings, path: str, names: tuple[str, ...], pattern: str | None, yes: bool) -> None:
    """Remove files from the run at PATH: the NAMES given, or those matching --pattern."""
    if bool(names) == bool(pattern):
        raise click.UsageError("give NAMES or --pattern (one of them)")
    from wandb_files.errors import DeleteError
    from wandb_files.files import delete_files
    from wandb_files.paginator import batches

    run = settings.run(path)
    where = "/".join(run.path)
    if names:
        wanted = list(dict.fromkeys(names))
        found: list[File] = []
        for batch in batches(wanted, 1000):
            found += run.files(names=batch, per_page=len(batch))
        present = {f.name for f in found}
        missing = [name for name in wanted if name not in present]
    else:
        found = list(run.files(per_page=1000, pattern=glob_to_like(pattern or "")))
        missing = []
    if missing:
        click.echo(f"not in run {where}: {', '.join(safe_name(n) for n in missing)}", err=True)
    if not found:
        if missing:
            fail(EXIT_FAILED, f"nothing to remove in {where}. 'wandb-files ls {path}' lists its files")
        click.echo(f"No files match {pattern!r} in {where}; nothing removed.")
        return

    total = sum(f.size for f in found)
    click.echo(f"{plural(len(found), 'file')} ({human_size(total)}) to remove from {where}:")
    for f in found:
        click.echo(f"  {safe_name(f.name)}")
    if not yes:
        if not sys.stdin.isatty():
            fail(
                EXIT_FAILED,
                "not removing anything without confirmation, and there is no terminal to ask on. "
                "Pass --yes to remove these files",
            )
        if not click.confirm(f"Remove {'this file' if len(found) == 1 else f'these {len(found)} files'}?"):
            fail(EXIT_FAILED, "nothing removed")

    failures: list[tuple[str, BaseException]] = []
    try:
        removed = delete_files(run.client, found)
    except DeleteError as exc:
        removed, failures = list(exc.results), list(exc.failures)
    removed_bytes = sum(f.size for f in removed)
    click.echo(f"Removed {plural(len(removed), 'file')} ({removed_bytes:,} bytes) from {where}")
    report_failures(failures, "remove", len(removed))
    if failures or missing:
        raise click.exceptions.Exit(EXIT_FAILED)
