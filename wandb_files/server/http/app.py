"""The Starlette application: GraphQL endpoint, upload and download routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import LOG_FORMAT, ServerConfig
from ..db.database import create_db_engine, make_session_factory
from ..db.filerows import clean_abandoned_uploads
from ..graphql.documents import DocumentCache
from ..graphql.schema import build_schema
from ..signing import UrlSigner, load_or_create_secret
from ..storage import BlobStore, open_blob_store
from ..web import MOUNT, create_web_app
from .downloads import Downloads
from .filestream import FileStream, mark_silent_runs_periodically
from .graphql_endpoint import GraphQLEndpoint
from .state import ServerState, json_error
from .uploads import Uploads

logger = logging.getLogger("wandb_files.server")

STALE_TEMP_SECONDS = 24 * 3600


class _Server(GraphQLEndpoint, Uploads, Downloads, FileStream):
    """The state shared by all requests of one app, with the routes that use it."""


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "not found", 405: "method not allowed"}.get(status, "error")
    return json_error(status, message)


async def _server_error(request: Request, exc: Exception) -> Response:
    return json_error(500, "internal server error")


def _remove_stale_temp_files(tmp_dir: Path) -> None:
    # Other server processes may be writing here right now, so only clearly abandoned files go.
    cutoff = time.time() - STALE_TEMP_SECONDS
    for path in tmp_dir.iterdir():
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()


def _clean_abandoned(config: ServerConfig, sessions: sessionmaker[Session], store: BlobStore) -> None:
    """Remove presigned uploads nobody marked long after their URLs expired (their objects are litter), and
    abort the store's unfinished uploads as old (a process killed mid-upload left them)."""
    removed = clean_abandoned_uploads(sessions, store, older_than_seconds=config.abandoned_upload_seconds)
    aborted = store.abort_stale_uploads(config.abandoned_upload_seconds)
    if removed or aborted:
        logger.info("removed %d abandoned uploads, aborted %d unfinished ones", removed, aborted)


async def _clean_periodically(config: ServerConfig, sessions: sessionmaker[Session], store: BlobStore) -> None:
    """Every `upload_cleanup_interval` seconds, `_clean_abandoned` (in a worker thread); several instances may
    do so at once. Runs until cancelled; a failed sweep is logged and retried."""
    while True:
        await asyncio.sleep(config.upload_cleanup_interval)
        try:
            await anyio.to_thread.run_sync(_clean_abandoned, config, sessions, store)
        except Exception as exc:  # noqa: BLE001 - the database or bucket may be back at the next sweep
            logger.warning("removing abandoned uploads failed: %s", exc)


# Young-generation collections once per this many net allocations (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc_for_serving() -> None:
    """Make the cyclic garbage collector cheap for a serving process (called as it starts serving).

    A page of 1,000 files allocates some 10,000 short-lived containers, which at CPython's default thresholds
    sets off dozens of collections a page, each scanning what survived before. What exists at startup
    (modules, the schema, the app) is frozen out of every collection, and young collections are rarer (cycles
    are still collected, a little later).
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def create_app(config: ServerConfig, *, prepare: bool = True) -> Starlette:
    """Build the server app over `config`.

    Everything a request needs lives in the database and the blob store, so any number of processes
    over the same PostgreSQL database and bucket serve the same data.

    Args:
        config: The settings.
        prepare: Do the start-up work first: create the directories, migrate the database, remove stale temp
            files and abandoned uploads. The workers of `--workers N` leave it to the process that forks them.

    Returns:
        The ASGI app.

    Raises:
        ValueError: the blob store or database URL is not one this server can use.
        RuntimeError: the blob store cannot be used (the message says why).
    """
    if prepare:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.tmp_dir.mkdir(exist_ok=True)
        _remove_stale_temp_files(config.tmp_dir)
    store = open_blob_store(
        config.blob_store,
        local_root=config.blob_dir,
        endpoint_url=config.s3_endpoint_url,
        url_ttl=config.signed_url_ttl,
    )
    if prepare:
        store.check()
    engine = create_db_engine(config.database, migrate=prepare)
    sessions = make_session_factory(engine)
    with sessions() as session:
        secret = load_or_create_secret(session)
    if prepare and store.presigned:
        _clean_abandoned(config, sessions, store)
    server = _Server(
        config=config,
        engine=engine,
        sessions=sessions,
        signer=UrlSigner(secret, config.signed_url_ttl),
        store=store,
        schema=build_schema(),
        documents=DocumentCache(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tune_gc_for_serving()
        # A server that runs for weeks must not wait for its next restart to drop abandoned uploads.
        cleaner = asyncio.create_task(_clean_periodically(config, sessions, store)) if store.presigned else None
        # Every process sweeps (an UPDATE of the few silent runs; several at once do no harm).
        marker = asyncio.create_task(mark_silent_runs_periodically(sessions, config.run_timeout_seconds))
        try:
            yield
        finally:
            marker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await marker
            if cleaner is not None:
                # A sweep under way finishes its batch first (worker threads are not abandoned).
                cleaner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cleaner
            server.queries.close()
            engine.dispose()

    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/graphql", server.graphql, methods=["POST"]),
        Route("/uploads/{token}", server.upload, methods=["PUT"]),
        Route("/files/{entity}/{project}/{run}/file_stream", server.file_stream, methods=["POST"]),
        Route("/files/{entity}/{project}/{run}/{path:path}", server.download, methods=["GET", "HEAD"]),
        Route("/blobs/{token}", server.direct, methods=["GET", "HEAD"]),
        # The web page (wandb_files.server.web), at /web; / is its home.
        Route("/", lambda request: RedirectResponse(MOUNT + "/", status_code=307), methods=["GET", "HEAD"]),
        Mount(MOUNT, create_web_app(sessions, secret, server.open_attachment, public_url=config.public_url)),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        middleware=[Middleware(_CountRequests, state=server)],
        lifespan=lifespan,
    )
    app.state.server = server
    return app


class _CountRequests:
    """Keeps `ServerState.requests_in_flight`: the HTTP requests of this process not finished yet (a request's
    background work included), so that read-ahead runs only in an otherwise idle process."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.state.requests_in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.requests_in_flight -= 1


#: Where `wandb-files server --workers N` hands its settings to the worker processes it starts.
CONFIG_ENV = "WANDB_FILES_SERVER_CONFIG"
#: ... and its own pid, which a worker still starting when that process died could not learn from getppid().
PARENT_ENV = "WANDB_FILES_SERVER_PARENT"


def worker_app() -> Starlette:
    """The app of one worker of `--workers N` (an app factory for uvicorn), from the settings in CONFIG_ENV.

    Returns:
        The ASGI app, over a database the starting process has already migrated.
    """
    config = ServerConfig.from_json(os.environ[CONFIG_ENV])
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    parent = int(os.environ.get(PARENT_ENV, os.getppid()))
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    return create_app(config, prepare=False)


def _exit_with_parent(parent: int) -> None:
    """Stop this worker gracefully once the process that started it is gone (killed, say, with SIGKILL), so no
    orphan keeps serving the port."""
    while os.getppid() == parent:
        time.sleep(1)
    logger.warning("the server's parent process %d is gone: stopping this worker", parent)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
