"""The `wandb-files` command line: `ls`, `download`, `upload` and `rm` for the files of a run, plus the embedded
server's `server` and `user` commands.

Start-up time matters for a command line, so this module imports only click at the top: the SDK (gql,
requests, pydantic), rich and the server (Ariadne, SQLAlchemy) are imported inside the commands that use them,
and `--help` lists `server` and `user` from short help strings here without importing the server.

Errors become one line on stderr, ``error: <what went wrong>. <what to do>``, and an exit status (see
`EXIT_CODES`); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, NoReturn

import click

from wandb_files.errors import is_transient, plural
from wandb_files.formatting import human_size, safe_name

if TYPE_CHECKING:
    from wandb_files.api import Api
    from wandb_files.files import File
    from wandb_files.runs import Run

SERVER_EXTRA_HINT = "The server needs the [server] extra: pip install 'wandb-files[server]'"

EXIT_OK = 0
EXIT_FAILED = 1  # a file, the run, or the server failed
EXIT_USAGE = 2  # bad arguments or input (click uses 2 for its own usage errors too)
EXIT_AUTH = 3  # no usable API key or base URL, a refused key, or a key that may not access the entity
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as shells report SIGINT (128 + 2)

EXIT_CODES_HELP = """\b
Exit status:
  0  success
  1  a file, the run or the server failed: not found, a transfer failed,
     the server could not be reached or answered 5xx
  2  usage error or bad input, including local files that differ when
     neither --replace nor --skip-existing is given
  3  authentication or configuration: no API key, the key was refused or
     may not access the entity, a base URL that is not http(s)
  130  interrupted (Ctrl-C or SIGTERM); run the same command again to resume"""

#: `--help` of the group lists these without importing the server; keep in step with wandb_files/server/cli.py.
_LAZY_HELP = {
    "server": "Run the W&B-compatible file server in the foreground.",
    "user": "Manage the users of a wandb-files server.",
}

_GLOB_HELP = (
    "Only names matching this shell-style pattern: * is any run of characters (including /), ? is one "
    "character; matched against the whole name, case-sensitively."
)


class CliError(Exception):
    """A failure the command has already put into words: printed as one line, exits with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- patterns and formatting ------------------------------------------------------------------------------


def glob_to_like(glob: str) -> str:
    """The SQL LIKE pattern (backslash as the escape character) that matches what the shell-style `glob` does.

    ``*`` becomes ``%``, ``?`` becomes ``_``; a literal ``%``, ``_`` or ``\\`` in the glob is escaped with a
    backslash so that it matches only itself. ``[...]`` has no LIKE equivalent and is matched literally.

        >>> glob_to_like("media/*_?.png")
        'media/%\\\\__.png'
    """
    out = []
    for ch in glob:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _when(iso: str | None) -> str:
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


def _one_line(value: object) -> str:
    """A message on one line, without a trailing period (the caller adds its own punctuation)."""
    return " ".join(str(value).split()).rstrip(".")


# --- the group: settings, lazy server commands, error reporting ----------------------------------------------


class Settings:
    """What the group's options say, and the `Api` built from them on first use."""

    def __init__(self, base_url: str | None, api_key: str | None, api_key_from_cli: bool, debug: bool) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.api_key_from_cli = api_key_from_cli
        self.debug = debug
        self._api: Api | None = None

    @property
    def key_source(self) -> str:
        """Where the key came from, in the command line's words."""
        if self._api is None:
            return "--api-key" if self.api_key_from_cli else "WANDB_API_KEY or ~/.netrc"
        source = self._api.client.key_source
        return "--api-key" if source == "the api_key argument" else source

    def api(self) -> Api:
        if self._api is None:
            from urllib.parse import urlsplit

            from wandb_files.api import DEFAULT_BASE_URL, Api, check_base_url
            from wandb_files.errors import ConfigurationError, MissingApiKeyError

            try:
                base_url = check_base_url(self.base_url or DEFAULT_BASE_URL)
            except ConfigurationError:
                raise CliError(
                    EXIT_AUTH,
                    f"the base URL {self.base_url!r} is not an http(s) URL. "
                    f"Pass --base-url or set WANDB_BASE_URL, e.g. {DEFAULT_BASE_URL}",
                ) from None
            try:
                # A key from the environment is left to the SDK, so that its errors name the right source.
                self._api = Api(api_key=self.api_key if self.api_key_from_cli else None, base_url=base_url)
            except MissingApiKeyError as exc:
                empty = " (--api-key is empty)" if self.api_key_from_cli else ""
                raise CliError(
                    EXIT_AUTH,
                    f"no API key for {base_url}{empty}. Pass --api-key, set WANDB_API_KEY, or add "
                    f"'machine {urlsplit(base_url).hostname} login user password <key>' to ~/.netrc",
                ) from exc
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.call_on_close(self._api.close)
        return self._api

    def run(self, path: str) -> Run:
        """The run at `path`, in any form `Api.run()` accepts."""
        return self.api().run(path)


def _error_line(exc: BaseException, settings: Settings | None, command: str | None) -> tuple[int, str]:
    """The exit status and the one line that reports `exc`."""
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    from wandb_files import errors

    message = _one_line(exc)
    help_hint = f"See 'wandb-files {command} --help'" if command else "See 'wandb-files --help'"
    key_source = settings.key_source if settings is not None else "the API key"
    base_url = settings._api.base_url if settings is not None and settings._api is not None else "the server"
    if isinstance(exc, errors.AuthenticationError):
        return EXIT_AUTH, (
            f"{base_url} refused the API key from {key_source}. "
            "Check it, or pass another one with --api-key or WANDB_API_KEY"
        )
    if isinstance(exc, errors.PermissionDeniedError):
        return EXIT_AUTH, f"{message}. The key from {key_source} may not access that; use a key of its owner"
    if isinstance(exc, errors.ConfigurationError):
        return EXIT_AUTH, f"{message}. Pass --api-key / --base-url or set WANDB_API_KEY / WANDB_BASE_URL"
    if isinstance(exc, errors.NotFoundError):
        return EXIT_FAILED, (
            f"{message}. Check the run path (entity/project/run_id) and the names; "
            "'wandb-files ls PATH' lists a run's files"
        )
    if isinstance(exc, errors.BadRequestError):
        return EXIT_USAGE, f"the server refused the request: {message}. {help_hint}"
    if isinstance(exc, errors.TransportError):
        return EXIT_FAILED, message  # it already says to check the base URL and the server
    if isinstance(exc, errors.ServerError):
        return EXIT_FAILED, f"{message}. The server failed; try again later, or look at its log"
    if isinstance(exc, errors.WandbFilesError):
        return EXIT_FAILED, f"{message}. Run the command again to retry"
    if isinstance(exc, (ValueError, TypeError)):
        return EXIT_USAGE, f"{message}. {help_hint}"
    if isinstance(exc, OSError):
        return EXIT_FAILED, f"{message}. Check the local path and its permissions"
    return EXIT_FAILED, (
        f"unexpected {type(exc).__name__}: {message}. Run again with --debug for the traceback, and report it"
    )


class _Cli(click.Group):
    """Attaches the server's commands on demand, and turns exceptions into one line and an exit status."""

    _SERVER_COMMANDS = tuple(_LAZY_HELP)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._SERVER_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._SERVER_COMMANDS:
            try:
                from wandb_files.server import cli as server_cli
            except ImportError as exc:
                raise click.ClickException(f"{SERVER_EXTRA_HINT} ({exc})") from None
            return {"server": server_cli.server_command, "user": server_cli.user_group}[cmd_name]
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, with the server's commands described without importing the server."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            if name in _LAZY_HELP:
                rows.append((name, _LAZY_HELP[name]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit status
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            if settings is not None and settings.debug:
                import traceback

                traceback.print_exception(exc)
            code, line = _error_line(exc, settings, ctx.invoked_subcommand)
            click.echo(f"error: {line}", err=True)
            ctx.exit(code)


@click.group(
    cls=_Cli,
    epilog=EXIT_CODES_HELP
    + """

\b
Examples:
  export WANDB_BASE_URL=http://127.0.0.1:8080 WANDB_API_KEY=<key>
  wandb-files ls my-entity/my-project/run_id --pattern '*.json'
  wandb-files download my-entity/my-project/run_id -o out
  wandb-files COMMAND --help""",
)
@click.option(
    "--base-url",
    envvar="WANDB_BASE_URL",
    show_envvar=True,
    metavar="URL",
    help="The server (default https://api.wandb.ai).",
)
@click.option(
    "--api-key",
    envvar="WANDB_API_KEY",
    show_envvar=True,
    metavar="KEY",
    help="The API key (else the ~/.netrc entry for the server's host).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks and the SDK's debug log.")
@click.version_option(package_name="wandb-files")
@click.pass_context
def main(ctx: click.Context, base_url: str | None, api_key: str | None, debug: bool) -> None:
    """List, download, upload and delete the files of W&B runs, and run a W&B-compatible file server.

    PATH is a run: entity/project/run_id, entity/project/runs/run_id, entity/project:run_id, project/run_id
    (the key's own entity) or the run's web URL.
    """
    from click.core import ParameterSource

    ctx.obj = Settings(
        base_url=base_url,
        api_key=api_key,
        api_key_from_cli=ctx.get_parameter_source("api_key") == ParameterSource.COMMANDLINE,
        debug=debug,
    )
    if debug:
        import logging

        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("wandb_files").setLevel(logging.DEBUG)


# --- ls ------------------------------------------------------------------------------------------------------


@main.command(
    "ls",
    epilog="""\b
Examples:
  wandb-files ls my-entity/my-project/run_id
  wandb-files ls my-project/run_id --pattern 'media/images/*.png'
  wandb-files ls my-entity/my-project/run_id --json | jq -r .name""",
)
@click.argument("path")
@click.option("--pattern", metavar="GLOB", help=_GLOB_HELP)
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
        _print_json_lines(files)
        return
    _print_table(files, run)


def _print_json_lines(files: Iterable[File]) -> None:
    """One JSON object per file, written as the pages arrive (nothing is kept)."""
    import json

    out = sys.stdout
    try:
        for f in files:
            out.write(
                json.dumps(
                    {
                        "name": f.name,
                        "size": f.size,
                        "updated_at": f.updated_at,
                        "md5": f.md5,
                        "mimetype": f.mimetype,
                        "url": f.url,
                    }
                )
                + "\n"
            )
        out.flush()
    except BrokenPipeError:  # e.g. `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise click.exceptions.Exit(EXIT_OK) from None


def _print_table(files: Iterable[File], run: Run) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("name", overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    table.add_column("md5", no_wrap=True)
    count = total = 0
    for f in files:
        table.add_row(Text(safe_name(f.name)), human_size(f.size), _when(f.updated_at), Text(f.md5 or ""))
        count += 1
        total += f.size
    # Piped output is never cut to 80 columns: the table takes the width it needs.
    console = Console(width=None if sys.stdout.isatty() else 1_000_000, highlight=False)
    console.print(table)
    where = "/".join(run.path)
    console.print(f"{count} file{'s' if count != 1 else ''}, {total:,} bytes ({human_size(total)}) in {where}",
                  markup=False)


# --- download ------------------------------------------------------------------------------------------------


@main.command(
    "download",
    epilog="""\b
Examples:
  wandb-files download my-entity/my-project/run_id -o out
  wandb-files download my-entity/my-project/run_id config.yaml output.log
  wandb-files download my-entity/my-project/run_id --pattern 'checkpoints/*.pt' --skip-existing --workers 8

A file whose local copy already holds the same bytes (size and md5) is not downloaded again. A local file
that differs stops the download before anything is fetched (exit 2) unless --replace or --skip-existing.""",
)
@click.argument("path")
@click.argument("names", nargs=-1)
@click.option("--pattern", metavar="GLOB", help=_GLOB_HELP)
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
@click.option("--workers", type=click.IntRange(min=1), metavar="N", help="Parallel transfers (default 32, or WANDB_FILES_MAX_WORKERS).")
@click.option("--no-progress", is_flag=True, help="No progress bar (it is shown on terminals only anyway).")
@click.pass_obj
def download_command(
    settings: Settings,
    path: str,
    names: tuple[str, ...],
    pattern: str | None,
    output: Path,
    replace: bool,
    skip_existing: bool,
    workers: int | None,
    no_progress: bool,
) -> None:
    """Download the files of the run at PATH (all of them, the NAMES given, or those matching --pattern)."""
    if replace and skip_existing:
        raise click.UsageError("--replace and --skip-existing cannot be combined")
    if names and pattern:
        raise click.UsageError("give NAMES or --pattern, not both")
    from wandb_files.errors import DownloadError, Interrupted

    # Files written after this instant are the ones this command downloaded. Taken before the run is looked
    # up, so that at least two requests separate it from the first write even on a coarse file-system clock.
    started_ns = time.time_ns()
    run = settings.run(path)
    if names:
        files = run.files(names=list(dict.fromkeys(names)), per_page=min(len(names), 1000))
    else:
        files = run.files(per_page=1000, pattern=glob_to_like(pattern) if pattern else None)
    started = time.monotonic()
    failures: list[tuple[str, BaseException]] = []
    interrupted: Interrupted | None = None
    try:
        with _sigterm_as_interrupt():
            paths = files.download(
                output,
                replace=replace,
                exist_ok=skip_existing,
                max_workers=workers,
                progress=False if no_progress else None,
            )
    except DownloadError as exc:
        paths, failures = list(exc.results), list(exc.failures)
    except Interrupted as exc:
        interrupted = exc
        paths, failures = list(exc.results), list(exc.failures)
    except ValueError as exc:
        raise _local_conflict(exc) from exc
    seconds = time.monotonic() - started

    # Files written during this call are the downloaded ones; the others were already there.
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
    if not paths and not failures and not names:
        click.echo(f"No files to download{f' match {pattern!r}' if pattern else ''} in {'/'.join(run.path)}.")
        return
    summary = (
        f"Downloaded {fetched} file{'s' if fetched != 1 else ''} ({fetched_bytes:,} bytes, "
        f"{human_size(fetched_bytes)}) in {seconds:.2f} s ({rate:.1f} MB/s) to {output}"
    )
    if kept:
        summary += f"; {kept} already there ({'kept' if skip_existing else 'identical'})"
    click.echo(summary)

    _report_failures(failures, "download", len(paths))
    if interrupted is not None:
        click.echo(
            f"interrupted: {plural(interrupted.unfinished, 'file')} not downloaded yet (temp files kept). "
            "Run the same command again to resume",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    missing = _missing_names(names, output, paths, failures)
    if missing:
        click.echo(f"error: not in run {'/'.join(run.path)}: {', '.join(safe_name(n) for n in missing)}. "
                   f"'wandb-files ls {path}' lists its files", err=True)
    if failures or missing:
        raise click.exceptions.Exit(EXIT_FAILED)


def _report_failures(failures: list[tuple[str, BaseException]], verb: str, succeeded: int) -> None:
    """One ``failed: NAME: reason`` line a file, then the count, and a hint to rerun if that may help."""
    for name, error in failures:
        reason = _one_line(error)
        reason = reason.removeprefix(f"{name}: ")  # most transfer errors start with the file's name already
        click.echo(f"failed: {safe_name(name)}: {safe_name(reason)}", err=True)
    if not failures:
        return
    line = f"error: {len(failures)} of {plural(len(failures) + succeeded, 'file')} failed to {verb}"
    transient = sum(1 for _, error in failures if is_transient(error))
    if transient == len(failures):
        line += ". Run the same command again to retry them"
    elif transient:
        line += f". Running the same command again may help with {transient} of them (the others will fail again)"
    click.echo(line + (" (finished files are not downloaded again)" if verb == "download" and transient else ""),
               err=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a transfer the way Ctrl-C does: promptly, keeping what can be resumed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _local_conflict(exc: ValueError) -> CliError:
    """The SDK's "local files differ" refusal in the command line's words."""
    from wandb_files.errors import LocalFilesDifferError

    if isinstance(exc, LocalFilesDifferError):
        return CliError(EXIT_USAGE, f"{exc.summary}; nothing was downloaded. Pass --replace to overwrite them or "
                                    "--skip-existing to keep them")
    return CliError(EXIT_USAGE, f"{_one_line(exc)}. See 'wandb-files download --help'")


def _missing_names(
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


# --- upload --------------------------------------------------------------------------------------------------


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
@click.option("--workers", type=click.IntRange(min=1), metavar="N", help="Parallel transfers (default 32, or WANDB_FILES_MAX_WORKERS).")
@click.option("--no-progress", is_flag=True, help="No progress bar (it is shown on terminals only anyway).")
@click.pass_obj
def upload_command(
    settings: Settings,
    path: str,
    files: tuple[Path, ...],
    root: Path,
    create: bool,
    workers: int | None,
    no_progress: bool,
) -> None:
    """Upload FILES (files, or folders walked recursively) to the run at PATH."""
    from wandb_files.errors import Interrupted, NotFoundError, UploadError
    from wandb_files.transfer import plan_uploads

    # Every path is checked before anything is created or sent.
    planned, skipped = plan_uploads(_walk(files), root, skip_outside_links=True)
    for skipped_path, why in skipped:
        click.echo(f"skipped: {safe_name(str(skipped_path))}: {why}", err=True)
    local = [local_path for local_path, _ in planned]
    try:
        run = settings.run(path)
    except NotFoundError as exc:
        if not create:
            raise CliError(EXIT_FAILED, f"{_one_line(exc)}. Pass --create to create it") from exc
        api = settings.api()
        entity, project, run_id = api.parse_run_path(path)
        run = api.create_run(run_id, project, entity)
        click.echo(f"Created run {'/'.join(run.path)}")
    if not local:
        click.echo("Nothing to upload: no files in " + ", ".join(str(f) for f in files))
        return
    started = time.monotonic()
    failures: list[tuple[str, BaseException]] = []
    interrupted: Interrupted | None = None
    try:
        with _sigterm_as_interrupt():
            uploaded = run.upload_files(local, root=root, max_workers=workers,
                                        progress=False if no_progress else None)
    except UploadError as exc:
        uploaded, failures = list(exc.results), list(exc.failures)
    except Interrupted as exc:
        interrupted = exc
        uploaded, failures = [], list(exc.failures)
    seconds = time.monotonic() - started
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
    _report_failures(failures, "upload", len(uploaded))
    if failures:
        raise click.exceptions.Exit(EXIT_FAILED)


def _walk(items: Iterable[Path]) -> list[Path]:
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
                    click.echo(f"skipped: {safe_name(str(Path(folder, name)))}: a symbolic link to a folder "
                               "(not followed)", err=True)
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


# --- rm ------------------------------------------------------------------------------------------------------


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
@click.option("--pattern", metavar="GLOB", help=_GLOB_HELP)
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
            _fail(EXIT_FAILED, f"nothing to remove in {where}. 'wandb-files ls {path}' lists its files")
        click.echo(f"No files match {pattern!r} in {where}; nothing removed.")
        return

    total = sum(f.size for f in found)
    click.echo(f"{plural(len(found), 'file')} ({human_size(total)}) to remove from {where}:")
    for f in found:
        click.echo(f"  {safe_name(f.name)}")
    if not yes:
        if not sys.stdin.isatty():
            _fail(EXIT_FAILED, "not removing anything without confirmation, and there is no terminal to ask on. "
                               "Pass --yes to remove these files")
        if not click.confirm(f"Remove {'this file' if len(found) == 1 else f'these {len(found)} files'}?"):
            _fail(EXIT_FAILED, "nothing removed")

    failures: list[tuple[str, BaseException]] = []
    try:
        removed = delete_files(run.client, found)
    except DeleteError as exc:
        removed, failures = list(exc.results), list(exc.failures)
    removed_bytes = sum(f.size for f in removed)
    click.echo(f"Removed {plural(len(removed), 'file')} ({removed_bytes:,} bytes) from {where}")
    _report_failures(failures, "remove", len(removed))
    if failures or missing:
        raise click.exceptions.Exit(EXIT_FAILED)


def _fail(code: int, message: str) -> NoReturn:
    raise CliError(code, message)
