"""The `wandb-files` command line."""

from __future__ import annotations

import click

SERVER_EXTRA_HINT = "The server needs the [server] extra: pip install 'wandb-files[server]'"


class _Cli(click.Group):
    """Attaches the server's commands on demand, so the client works without the server's dependencies."""

    _SERVER_COMMANDS = ("server", "user")

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


@click.group(cls=_Cli)
@click.version_option(package_name="wandb-files")
def main() -> None:
    """List, download, upload and delete the files of W&B runs, and run a W&B-compatible file server."""
