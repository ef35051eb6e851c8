"""The `wandb-files` command line: `ls`, `download`, `upload` and `rm` for the files of a run, `runs` and `sync`
for the runs of a project, plus the embedded server's `server` and `user` commands (wandb_files/server/cli.py,
imported only when they run).

One module a command; `app` holds the group, the exit codes and the error lines, `output` what is printed,
`selection` the `--filter`/`--order` options that choose runs.
"""

from __future__ import annotations

from wandb_files.cli import download, ls, rm, runs, sync, upload  # noqa: F401 - each registers its command on `main`
from wandb_files.cli.app import EXIT_AUTH, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main

__all__ = ["EXIT_AUTH", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]
