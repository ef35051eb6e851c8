"""`wandb-files runs`: the runs of a project that a filter selects, in an order, with their metadata."""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

import click

from wandb_files.cli.app import Settings, main
from wandb_files.cli.output import safe_name, when
from wandb_files.cli.selection import FILTER_OPTION, ORDER_OPTION, cell, run_values, value_columns


@main.command(
    "runs",
    epilog="""\b
Examples:
  wandb-files runs my-entity/my-project
  wandb-files runs my-entity/my-project --filter '{"state": "finished"}' --order -summary_metrics.acc --limit 10
  wandb-files runs my-entity/my-project --filter '{"config.lr": {"$lte": 0.01}, "tags": "best"}'
  wandb-files runs my-entity/my-project --json | jq -r .id

The table shows the config and summary keys the filter and the order name, and the ones most runs have.""",
)
@click.argument("project")
@FILTER_OPTION
@ORDER_OPTION
@click.option(
    "--per-page",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    metavar="N",
    help="Runs one request fetches.",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N runs (default: every match).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per run (id, path, display_name, state, created_at, heartbeat_at, tags, group, job_type, "
    "notes, user, config, summary), printed as pages arrive.",
)
@click.pass_obj
def runs_command(
    settings: Settings,
    project: str,
    filters: dict[str, Any] | None,
    order: str | None,
    per_page: int,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the runs of PROJECT (entity/project, or project of the key's entity) that --filter selects."""
    runs = settings.api().runs(
        project, filters=filters, order=order, per_page=min(per_page, limit) if limit else per_page
    )
    chosen = itertools.islice(runs, limit) if limit else iter(runs)
    if as_json:
        out = sys.stdout
        for run in chosen:  # json.dumps escapes every control and non-ASCII character: the lines are safe to print
            record = {
                "id": run.id,
                "path": "/".join(run.path),
                "display_name": run.display_name,
                "state": run.state,
                "created_at": run.created_at,
                "heartbeat_at": run.heartbeat_at,
                "tags": run.tags,
                "group": run.group,
                "job_type": run.job_type,
                "notes": run.notes,
                "user": run.user.username if run.user else None,
                "config": run.config,
                "summary": dict(run.summary),
            }
            out.write(json.dumps(record, default=str) + "\n")
        out.flush()
        return
    rows = [(run, run_values(run)) for run in chosen]
    total = len(runs)
    _print_table(rows, value_columns([values for _, values in rows], filters, order), total, runs.entity, runs.project)


def _print_table(
    rows: list[tuple[Any, dict[str, Any]]], columns: list[str], total: int, entity: str, project: str
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError  # the CLI's to handle, as for `ls`

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in ("id", "name", "state", "created (UTC)", "tags", "group", "job type"):
        table.add_column(header, no_wrap=header in ("id", "created (UTC)"), overflow="fold")
    for column in columns:
        table.add_column(column.replace("summary_metrics.", "summary."), overflow="fold")
    for run, values in rows:
        fixed = [
            run.id,
            run.display_name or "",
            run.state or "",
            when(run.created_at),
            ",".join(run.tags),
            run.group or "",
            run.job_type or "",
        ]
        table.add_row(*(Text(safe_name(text)) for text in [*fixed, *(cell(values.get(c)) for c in columns)]))
    console = _Console(width=None if sys.stdout.isatty() else 1_000_000, highlight=False)
    console.print(table)
    shown = f"{len(rows)} of {total:,}" if len(rows) < total else f"{total:,}"
    console.print(f"{shown} run{'s' if total != 1 else ''} in {entity}/{project}", markup=False)
