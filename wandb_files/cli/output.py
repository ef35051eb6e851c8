"""What the commands print: names made safe, sizes, times, one-line messages, the `ls` table and JSON lines."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from wandb_files.formatting import human_size, safe_name

if TYPE_CHECKING:
    from wandb_files.files import File
    from wandb_files.runs import Run

__all__ = ["human_size", "one_line", "print_json_lines", "print_table", "safe_name", "when"]


def when(iso: str | None) -> str:
    """A server timestamp as ``YYYY-MM-DD HH:MM:SS`` in UTC (as given when it cannot be parsed)."""
    if not iso:
        return ""
    from datetime import datetime, timezone

    try:
        parsed = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def one_line(value: object) -> str:
    """A message on one line, without a trailing period (the caller adds its own punctuation)."""
    return " ".join(str(value).split()).rstrip(".")


def print_json_lines(files: Iterable[File]) -> None:
    """One JSON object per file, written as the pages arrive (nothing is kept)."""
    import json

    out = sys.stdout
    for f in files:  # json.dumps escapes every control and non-ASCII character: the lines are safe to print
        record = {
            "name": f.name,
            "size": f.size,
            "updated_at": f.updated_at,
            "md5": f.md5,
            "mimetype": f.mimetype,
            "url": f.url,
        }
        out.write(json.dumps(record) + "\n")
    out.flush()


def print_table(files: Iterable[File], run: Run) -> None:
    from rich import box
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit with 1; a closed pipe is the CLI's to handle, the same way for every command.
            raise BrokenPipeError

    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("name", overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    table.add_column("md5", no_wrap=True)
    count = total = 0
    for f in files:
        table.add_row(Text(safe_name(f.name)), human_size(f.size), when(f.updated_at), Text(f.md5 or ""))
        count += 1
        total += f.size
    # Piped output is never cut to 80 columns: the table takes the width it needs.
    console = _Console(width=None if sys.stdout.isatty() else 1_000_000, highlight=False)
    console.print(table)
    where = "/".join(run.path)
    console.print(
        f"{count} file{'s' if count != 1 else ''}, {total:,} bytes ({human_size(total)}) in {where}", markup=False
    )
