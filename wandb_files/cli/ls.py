"""`wandb-files ls`: a run's files as a table, or as JSON lines while the pages arrive."""

from __future__ import annotations

import click

from wandb_files.cli.app import GLOB_HELP, Settings, main
from wandb_files.cli.output import print_json_lines, print_table
from wandb_files.patterns import glob_to_like


@main.command(
    "ls",
    epilog="""\b
Examples:
  wandb-files ls my-entity/my-project/run_id
  wandb-files ls my-project/run_id --pattern 'media/images/*.png'
  wandb-files ls my-entity/my-project/run_id --json | jq -r .name""",
)
@click.argument("path")
@click.option("--pattern", metavar="GLOB", help=GLOB_HELP)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line (name, size, updated_at, md5, mimetype, url), printed as pages arrive.",
)
@click.pass_obj
def ls_command(settings: Settings, path: str, pattern: str | None, as_json: bool) -> None:
    """List the files of the run at PATH: name, size, last update (UTC) and md5, then the totals."""
    run = settings.run(path)
    files = run.files(per_page=1000, pattern=glob_to_like(pattern) if pattern else None)
    if as_json:
        print_json_lines(files)
        return
    print_table(files, run)
