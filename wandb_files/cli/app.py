"""The `wandb-files` group: global options, the settings built from them, exit codes, and how every failure
becomes one line on stderr (``error: <what went wrong>. <what to do>``) and an exit status.

Start-up time matters for a command line, so the package imports only click at the top: the SDK (gql,
requests, pydantic), rich and the server (Ariadne, SQLAlchemy) are imported inside the commands that use them,
and `--help` lists `server` and `user` from short help strings here without importing the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

import click

from wandb_files.cli.output import one_line, safe_name
from wandb_files.errors import BulkTransferError, Interrupted, is_transient, plural

if TYPE_CHECKING:
    from wandb_files.api import Api
    from wandb_files.runs import Run

T = TypeVar("T")

SERVER_EXTRA_HINT = "The server needs the [server] extra: pip install 'wandb-files[server]'"

EXIT_OK = 0
EXIT_FAILED = 1  # a file, the run, or the server failed
EXIT_USAGE = 2  # bad arguments or input (click uses 2 for its own usage errors too)
EXIT_AUTH = 3  # no usable API key or base URL, a refused key, or a key that may not access the entity
EXIT_BUSY = 4  # another sync into the same destination is running: try again when it has finished
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as shells report SIGINT (128 + 2)

EXIT_CODES_HELP = """\b
Exit status:
  0  success
  1  a file, the run or the server failed: not found, a transfer failed,
     the server could not be reached or answered 5xx
  2  usage error or bad input, including local files that differ when
     neither --replace nor --skip-existing is given
  3  authentication or configuration: no API key, the key was refused or
     may not access the entity, a base URL that is not http(s) or does
     not answer with GraphQL
  4  busy: another sync into the same DEST is running; run again when it ends
  130  interrupted (Ctrl-C or SIGTERM); run the same command again to resume"""

#: `--help` of the group lists these without importing the server; keep in step with wandb_files/server/cli.py.
LAZY_HELP = {
    "server": "Run the W&B-compatible file server in the foreground.",
    "user": "Manage the users of a wandb-files server.",
}

GLOB_HELP = (
    "Only names matching this shell-style pattern: * is any run of characters (including /), ? is one "
    "character; matched against the whole name, case-sensitively."
)

#: The options of every command that moves bytes.
WORKERS_OPTION = click.option(
    "--workers",
    type=click.IntRange(min=1),
    metavar="N",
    help="Parallel transfers (default 32, or WANDB_FILES_MAX_WORKERS).",
)


def _bandwidth(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from wandb_files.transfer import parse_bandwidth

    try:
        return parse_bandwidth(value, "--max-bandwidth")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


MAX_BANDWIDTH_OPTION = click.option(
    "--max-bandwidth",
    metavar="RATE",
    callback=_bandwidth,
    help="Bytes per second across all transfers: 5000000, 5MB, 4MiB (default: no limit, or WANDB_FILES_MAX_BANDWIDTH).",
)
NO_PROGRESS_OPTION = click.option(
    "--no-progress", is_flag=True, help="No progress bar (it is shown on terminals only anyway)."
)


class CliError(Exception):
    """A failure the command has already put into words: printed as one line, exits with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


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


def error_line(exc: BaseException, settings: Settings | None, command: str | None) -> tuple[int, str]:
    """The exit status and the one line that reports `exc`."""
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    from wandb_files import errors

    message = one_line(exc)
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
    if isinstance(exc, errors.NotGraphQLError):
        return EXIT_AUTH, f"{exc.summary}. Pass --base-url or set WANDB_BASE_URL"
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
    if isinstance(exc, errors.DestinationBusyError):
        return EXIT_BUSY, message  # it says what to do
    if isinstance(exc, errors.MirrorConflictError):
        return EXIT_USAGE, message  # the destination does not fit the source; it says what to do
    if isinstance(exc, errors.ManifestError):
        return EXIT_FAILED, message  # it names the path and what to do
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

    _SERVER_COMMANDS = tuple(LAZY_HELP)

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
            if name in LAZY_HELP:
                rows.append((name, LAZY_HELP[name]))
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
        except BrokenPipeError:
            # The reader left (`| head`): it has what it wanted. The same quiet success for every command;
            # stdout goes to /dev/null so that the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_OK)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit status
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            if settings is not None and settings.debug:
                import traceback

                traceback.print_exception(exc)
            code, line = error_line(exc, settings, ctx.invoked_subcommand)
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


def report_failures(failures: list[tuple[str, BaseException]], verb: str, succeeded: int) -> None:
    """One ``failed: NAME: reason`` line a file, then the count, and a hint to rerun if that may help."""
    for name, error in failures:
        reason = one_line(error)
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
    click.echo(
        line + (" (finished files are not downloaded again)" if verb == "download" and transient else ""), err=True
    )


def sigterm_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM stops a transfer the way Ctrl-C does: promptly, keeping what can be resumed (see the runner's)."""
    from wandb_files.transfer.runner import sigterm_as_interrupt as in_the_runner

    return in_the_runner(force=True)


@dataclasses.dataclass
class BulkOutcome(Generic[T]):
    """What a bulk transfer of a command gave: finished results, failures, the interruption if any, and its time."""

    results: list[T]
    failures: list[tuple[str, BaseException]]
    interrupted: Interrupted | None
    seconds: float


def run_bulk(call: Callable[[], Sequence[T]]) -> BulkOutcome[T]:
    """Run a bulk download or upload with SIGTERM as Ctrl-C, and gather what finished and what failed.

    Args:
        call: The SDK call (it raises `BulkTransferError` when some files failed, `Interrupted` when stopped).

    Returns:
        The outcome; other exceptions propagate.
    """
    started = time.monotonic()
    interrupted: Interrupted | None = None
    failures: list[tuple[str, BaseException]] = []
    try:
        with sigterm_as_interrupt():
            results = list(call())
    except BulkTransferError as exc:
        results, failures = list(exc.results), list(exc.failures)
    except Interrupted as exc:
        interrupted = exc
        results, failures = list(exc.results), list(exc.failures)
    return BulkOutcome(results, failures, interrupted, time.monotonic() - started)


def fail(code: int, message: str) -> NoReturn:
    raise CliError(code, message)
