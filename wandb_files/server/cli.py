"""The `wandb-files server` and `wandb-files user` commands."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from .config import (
    DEFAULT_INLINE_QUERY_MS,
    DEFAULT_KEY_CACHE_SECONDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_RUN_TIMEOUT_SECONDS,
    DEFAULT_SIGNED_URL_TTL,
    DEFAULT_UPLOAD_CLEANUP_INTERVAL,
    DEFAULT_WORKERS,
    LOG_FORMAT,
    ServerConfig,
)
from .db.database import create_db_engine, make_session_factory
from .db.users import UserError, create_user, ensure_admin

_LOG_LEVELS = click.Choice(["critical", "error", "warning", "info", "debug"], case_sensitive=False)
_data_dir_option = click.option(
    "--data-dir",
    envvar="WANDB_FILES_DATA_DIR",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory holding the SQLite database and the files' bytes (by default), and upload temp files.",
)
_database_url_option = click.option(
    "--database-url",
    envvar="WANDB_FILES_DATABASE_URL",
    help="SQLAlchemy URL of the database, e.g. postgresql+psycopg://user:pass@host/db "
    "[default: the SQLite file DATA_DIR/wandb-files.db].",
)


@click.command(
    "server",
    epilog="""\b
Examples:
  export WANDB_FILES_API_KEY=$(python -c 'import secrets; print(secrets.token_hex(20))')
  wandb-files server --data-dir ./wf-data
  wandb-files server --host 0.0.0.0 --port 8080 --data-dir /var/tmp/wf \\
      --database-url postgresql+psycopg://wandb@db/wandb_files --blob-store s3://bucket/prefix

\b
Without an admin key (--api-key or WANDB_FILES_API_KEY), the first start generates
one and prints it once.

\b
The web page: open http://HOST:PORT/ in a browser and sign in with an API key.""",
)
@click.option("--host", envvar="WANDB_FILES_HOST", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", envvar="WANDB_FILES_PORT", default=8080, show_default=True, type=click.IntRange(0, 65535))
@_data_dir_option
@click.option(
    "--api-key",
    envvar="WANDB_FILES_API_KEY",
    help="API key of the admin user (set on every start). Prefer the environment variable: a command line is "
    "visible to every local user.",
)
@click.option("--public-url", envvar="WANDB_FILES_PUBLIC_URL", help="Base URL clients reach this server at.")
@_database_url_option
@click.option(
    "--blob-store",
    envvar="WANDB_FILES_BLOB_STORE",
    help="Where files' bytes live: s3://bucket/prefix for an S3 bucket (credentials from AWS_* variables) "
    "[default: DATA_DIR/blobs].",
)
@click.option(
    "--s3-endpoint-url",
    envvar="WANDB_FILES_S3_ENDPOINT_URL",
    help="Endpoint of an S3-compatible service (MinIO, Ceph, ...) [default: AWS S3].",
)
@click.option(
    "--signed-url-ttl",
    default=DEFAULT_SIGNED_URL_TTL,
    show_default=True,
    type=click.IntRange(min=1),
    help="Lifetime of signed upload and direct URLs, in seconds.",
)
@click.option(
    "--max-upload-bytes",
    default=DEFAULT_MAX_UPLOAD_BYTES,
    show_default=True,
    type=click.IntRange(min=0),
    help="Largest accepted upload.",
)
@click.option(
    "--upload-cleanup-interval",
    metavar="SECONDS",
    default=DEFAULT_UPLOAD_CLEANUP_INTERVAL,
    show_default=True,
    type=click.IntRange(min=1),
    help="With an S3 blob store: how often to remove presigned uploads never marked as uploaded, long after "
    "their URLs expired (also done at start).",
)
@click.option(
    "--workers",
    envvar="WANDB_FILES_WORKERS",
    default=DEFAULT_WORKERS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes sharing the port (each with its own event loop); the database is migrated once, "
    "before they start.",
)
@click.option(
    "--key-cache-seconds",
    default=DEFAULT_KEY_CACHE_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0),
    help="How long downloads trust an API key they saw valid without asking the database: a revoked key "
    "stops working within this time (0: ask every time).",
)
@click.option(
    "--read-ahead/--no-read-ahead",
    default=True,
    show_default=True,
    help="Over SQLite, compute the next page of a listing that is past its first page while the client reads "
    "this one, and answer from it if nothing was committed in between.",
)
@click.option(
    "--inline-query-ms",
    default=DEFAULT_INLINE_QUERY_MS,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Over SQLite with local blobs, a query runs on the event loop (no thread switch) until its SQL "
    "statements have taken this many milliseconds; then it is aborted and run again in a worker thread, so "
    "a slow query never holds up other requests. 0 runs every query in a thread.",
)
@click.option(
    "--run-timeout",
    "run_timeout_seconds",
    metavar="SECONDS",
    default=DEFAULT_RUN_TIMEOUT_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="A run logged by the wandb SDK whose file stream has sent nothing (not even its 30-second "
    "heartbeat) for this long is marked crashed.",
)
@click.option("--log-level", default="info", show_default=True, type=_LOG_LEVELS)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log every request (the log then contains signed URL tokens).",
)
def server_command(
    host: str,
    port: int,
    data_dir: Path,
    api_key: str | None,
    public_url: str | None,
    database_url: str | None,
    blob_store: str | None,
    s3_endpoint_url: str | None,
    signed_url_ttl: int,
    max_upload_bytes: int,
    upload_cleanup_interval: int,
    workers: int,
    key_cache_seconds: float,
    read_ahead: bool,
    inline_query_ms: float,
    run_timeout_seconds: float,
    log_level: str,
    access_log: bool,
) -> None:
    """Run the W&B-compatible file server in the foreground."""
    import uvicorn

    from .http.app import CONFIG_ENV, PARENT_ENV, create_app

    config = ServerConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        public_url=public_url,
        signed_url_ttl=signed_url_ttl,
        max_upload_bytes=max_upload_bytes,
        upload_cleanup_interval=upload_cleanup_interval,
        key_cache_seconds=key_cache_seconds,
        read_ahead=read_ahead,
        inline_query_ms=inline_query_ms,
        run_timeout_seconds=run_timeout_seconds,
        log_level=log_level.lower(),
        access_log=access_log,
        database_url=database_url,
        blob_store=blob_store,
        s3_endpoint_url=s3_endpoint_url,
    )
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    try:
        app = create_app(config)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise click.ClickException(str(exc)) from None
    engine = create_db_engine(config.database)
    try:
        with make_session_factory(engine)() as session:
            generated = ensure_admin(session, api_key)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    if generated is not None:
        # Shown once: only its hash is stored.
        click.echo(f"admin API key: {generated}")
        sys.stdout.flush()
    # "auto" picks httptools and uvloop when installed (the server extra installs them): faster uploads
    # and downloads than the pure-Python h11 parser and asyncio loop.
    http_impl = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop_impl = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    logging.getLogger("wandb_files.server").info("HTTP parser: %s, event loop: %s", http_impl, loop_impl)
    options: dict[str, Any] = {"host": host, "port": port, "log_level": config.log_level, "access_log": access_log}
    if workers == 1:
        uvicorn.run(app, loop="auto", http="auto", **options)
        return
    # The app above did the start-up work once (migrations, sweeps); each worker builds its own app without it.
    app.state.server.engine.dispose()
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ[PARENT_ENV] = str(os.getpid())
    uvicorn.run(
        "wandb_files.server.http.app:worker_app", factory=True, workers=workers, loop="auto", http="auto", **options
    )


@click.group(
    "user",
    epilog="""\b
Examples:
  wandb-files user add alice --data-dir ./wf-data
  wandb-files user add bob --data-dir /var/tmp/wf --database-url postgresql+psycopg://wandb@db/wandb_files""",
)
def user_group() -> None:
    """Manage the users of a wandb-files server."""


@user_group.command(
    "add",
    epilog="""\b
Examples:
  wandb-files user add alice --data-dir ./wf-data        # prints a random 40-hex key, once
  wandb-files user add ci-bot --data-dir ./wf-data --api-key "$KEY"   # 32-256 characters

The key is stored only as its SHA-256; a lost key cannot be shown again.""",
)
@click.argument("name")
@_data_dir_option
@_database_url_option
@click.option("--api-key", help="Use this API key instead of generating one.")
def add_user_command(name: str, data_dir: Path, database_url: str | None, api_key: str | None) -> None:
    """Create user NAME with an entity of the same name, and print its API key."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(ServerConfig(data_dir=data_dir, database_url=database_url).database)
    try:
        with make_session_factory(engine)() as session:
            _, key = create_user(session, name, api_key)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"API key for {name}: {key}")
