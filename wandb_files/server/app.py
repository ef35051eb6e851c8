"""The Starlette application: GraphQL endpoint, upload and download routes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import anyio
from ariadne import graphql_sync
from graphql import GraphQLSchema
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from .auth import api_key_from_authorization
from .config import ServerConfig
from .database import create_db_engine, make_session_factory, write_transaction
from .documents import DocumentCache, QueryDepthRule
from .errors import UNAUTHENTICATED, error_body, format_error
from .filerows import PathClash, clean_abandoned_uploads, lock_run, store_file
from .models import Entity, File, Project, Run, User
from .names import InvalidName, validate_file_name
from .resolvers import RequestContext, Viewer, build_schema
from .signing import ExpiredToken, InvalidToken, UrlSigner, load_or_create_secret
from .storage import BlobStore, LocalBlobStore, S3BlobStore, open_blob_store
from .users import authenticate, hash_api_key
from .web import MOUNT, attachment_disposition, create_web_app

logger = logging.getLogger("wandb_files.server")

_T = TypeVar("_T")

MAX_GRAPHQL_BODY_BYTES = 10 * 1024 * 1024
WRITE_BUFFER_BYTES = 1024 * 1024
STALE_TEMP_SECONDS = 24 * 3600

# Ariadne logs every GraphQL error, including expected ones, with tracebacks; format_error logs the
# unexpected ones instead, so Ariadne's own logging goes to a silenced logger.
_ariadne_logger = logging.getLogger("wandb_files.server.ariadne")
_ariadne_logger.propagate = False
_ariadne_logger.addHandler(logging.NullHandler())


_VALIDATION_RULES = (QueryDepthRule,)


class _StoredFile(Protocol):
    """What serving a file's bytes needs: a `File` row, or the columns `_OWNED_FILE` selects."""

    id: int
    name: str
    blob_key: str
    md5: str
    mimetype: str


# The common case of a /files download (a valid key, its owner's entity, a file that exists) in one Core query:
# no ORM session, no separate key lookup. Anything else falls back to `_find_file`, which tells 401 from 404.
_OWNED_FILE = (
    select(File.id, File.name, File.blob_key, File.md5, File.mimetype)
    .join(Run, File.run_id == Run.id)
    .join(Project, Run.project_id == Project.id)
    .join(Entity, Project.entity_id == Entity.id)
    .join(User, Entity.owner_id == User.id)
    .where(
        User.api_key_sha256 == bindparam("key_hash"),
        Entity.name == bindparam("entity"),
        Project.name == bindparam("project"),
        Run.name == bindparam("run"),
        File.name == bindparam("name"),
    )
)


class BlobResponse(FileResponse):
    """FileResponse (Range, If-Range, HEAD, multipart ranges) over an already open file, in 1 MiB chunks.

    FileResponse opens its path only once the response has started, so a blob unlinked in between (a
    re-upload or delete) would fail the request mid-way. This one streams from the handle opened by the
    request handler and never reopens the path (no ASGI pathsend either). The handle is closed when the
    response has been sent.
    """

    chunk_size = 1024 * 1024

    def __init__(self, file: BinaryIO, **kwargs: Any) -> None:
        self._file = file
        super().__init__(file.name, stat_result=os.fstat(file.fileno()), **kwargs)

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        # Starlette's hook for opening self.path; the handle is closed in __call__, not here.
        yield anyio.wrap_file(self._file)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions") or {}
        if "http.response.pathsend" in extensions:
            scope = {**scope, "extensions": {k: v for k, v in extensions.items() if k != "http.response.pathsend"}}
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._file.close()


if not hasattr(FileResponse, "_open_file"):  # pragma: no cover - guarded by the server extra's starlette>=1.8
    raise ImportError("wandb-files server needs starlette>=1.8 (FileResponse._open_file)")


class _HttpError(Exception):
    """Ends a non-GraphQL request with a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@dataclass
class _Server:
    """The state shared by all requests of one app."""

    config: ServerConfig
    engine: Engine
    sessions: sessionmaker[Session]
    signer: UrlSigner
    store: BlobStore
    schema: GraphQLSchema
    documents: DocumentCache

    def public_url(self, request: Request) -> str:
        """The base of absolute URLs: --public-url, else the URL this request came in on."""
        return self.config.public_url or str(request.base_url).rstrip("/")

    # --- GraphQL -----------------------------------------------------------------------------------

    def execute_graphql(self, api_key: str, body: dict[str, Any], public_url: str) -> tuple[int, dict[str, Any]]:
        """Authenticate and execute one GraphQL request (runs in a worker thread, one session)."""
        with self.sessions() as session:
            user = authenticate(session, api_key)
            if user is None:
                return 401, error_body(UNAUTHENTICATED, "the API key is not valid")
            ctx = RequestContext(
                session=session,
                viewer=Viewer(id=user.id, name=user.name, admin=user.admin),
                signer=self.signer,
                store=self.store,
                public_url=public_url,
                sessions=self.sessions,
                max_upload_bytes=self.config.max_upload_bytes,
            )
            data = {
                "query": body.get("query"),
                "variables": body.get("variables"),
                # W&B's Python layer sends "" for anonymous operations; graphql-core wants None.
                "operationName": body.get("operationName") or None,
            }
            _, result = graphql_sync(
                self.schema,
                data,
                context_value=ctx,
                query_parser=self.documents.parse,
                query_validator=self.documents.validate,
                validation_rules=_VALIDATION_RULES,
                debug=False,
                logger=_ariadne_logger,
                error_formatter=format_error,
            )
        errors = result.get("errors") or []
        executed = "data" in result and (result["data"] is not None or any("path" in e for e in errors))
        return (200 if executed else 400), result

    async def graphql(self, request: Request) -> Response:
        """POST /graphql."""
        api_key = api_key_from_authorization(request.headers.get("authorization"))
        if api_key is None:
            return JSONResponse(error_body(UNAUTHENTICATED, "an API key is missing (HTTP Basic auth)"), 401)
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_GRAPHQL_BODY_BYTES:
                return JSONResponse(error_body("BAD_USER_INPUT", "request body too large"), 413)
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse(error_body("BAD_USER_INPUT", "request body is not valid JSON"), 400)
        if not isinstance(body, dict):
            return JSONResponse(error_body("BAD_USER_INPUT", "request body must be a JSON object"), 400)
        status, result = await run_in_threadpool(self.execute_graphql, api_key, body, self.public_url(request))
        return JSONResponse(result, status)

    # --- uploads -----------------------------------------------------------------------------------

    def _read_token(self, read: Callable[[str], _T], token: str) -> _T:
        try:
            return read(token)
        except ExpiredToken:
            raise _HttpError(403, "the signed URL has expired") from None
        except InvalidToken:
            raise _HttpError(403, "the signed URL is not valid") from None

    def commit_upload(self, run_id: int, name: str, temp_path: Path, size: int, md5_b64: str) -> None:
        """Move a finished upload into the blob store and point the file row at it."""
        key = uuid.uuid4().hex
        self.store.put(key, temp_path)
        old_key: str | None = None
        try:
            with self.sessions() as session, write_transaction(session):
                if not lock_run(session, run_id):
                    raise _HttpError(404, "the run of this upload URL no longer exists")
                old_key = store_file(session, run_id, name, key, size, md5_b64)
        except BaseException:
            # The row never pointed at the new blob; do not leave it behind.
            self.store.delete(key)
            raise
        if old_key is not None:
            self.store.delete(old_key)

    async def upload(self, request: Request) -> Response:
        """PUT /uploads/{token}: stream the body to a temp file, then store it as the file's bytes."""
        try:
            run_id, name = self._read_token(self.signer.read_upload_token, request.path_params["token"])
            validate_file_name(name)
            declared = self._content_length(request)
            if declared is not None and declared > self.config.max_upload_bytes:
                raise _HttpError(413, f"upload is larger than the limit of {self.config.max_upload_bytes} bytes")
            temp_path, size, md5_b64 = await self._spool(request, declared)
            try:
                await run_in_threadpool(self.commit_upload, run_id, name, temp_path, size, md5_b64)
            finally:
                temp_path.unlink(missing_ok=True)  # already moved on success
        except _HttpError as exc:
            return _json_error(exc.status, exc.message)
        except InvalidName:
            return _json_error(403, "the signed URL is not valid")
        except PathClash as exc:
            return _json_error(409, str(exc))
        return JSONResponse({"name": name, "sizeBytes": size, "md5": md5_b64})

    @staticmethod
    def _content_length(request: Request) -> int | None:
        header = request.headers.get("content-length")
        if header is None:
            return None
        if not header.isdigit():
            raise _HttpError(400, "invalid Content-Length")
        return int(header)

    async def _spool(self, request: Request, declared: int | None) -> tuple[Path, int, str]:
        """Write the request body to a temp file in tmp/, hashing as it goes; never holds the body in memory."""
        fd, name = tempfile.mkstemp(dir=self.config.tmp_dir, prefix="upload-")
        temp_path = Path(name)
        md5 = hashlib.md5()
        size = 0
        buffer = bytearray()

        def flush(fh: BinaryIO, data: bytes) -> None:
            # Disk writes and hashing off the event loop; hashlib releases the GIL on big buffers.
            md5.update(data)
            fh.write(data)

        try:
            with os.fdopen(fd, "wb") as fh:
                try:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > self.config.max_upload_bytes:
                            raise _HttpError(
                                413, f"upload is larger than the limit of {self.config.max_upload_bytes} bytes"
                            )
                        buffer += chunk
                        if len(buffer) >= WRITE_BUFFER_BYTES:
                            await run_in_threadpool(flush, fh, bytes(buffer))
                            buffer.clear()
                except ClientDisconnect:
                    raise _HttpError(400, "upload body ended early") from None
                if buffer:
                    await run_in_threadpool(flush, fh, bytes(buffer))
            if declared is not None and size != declared:
                raise _HttpError(400, "upload body ended early")
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return temp_path, size, base64.b64encode(md5.digest()).decode()

    # --- downloads ---------------------------------------------------------------------------------

    def _open_blob(self, file: _StoredFile) -> BlobResponse | None:
        """A response over the file's blob, opened now; None if the blob is gone (deleted or replaced).

        The blob is opened before the response starts, so a re-upload or delete that unlinks it from
        now on cannot break the download: the open handle keeps serving the old bytes.
        """
        assert isinstance(self.store, LocalBlobStore)
        try:
            fh = open(self.store.resolve(file.blob_key), "rb")  # noqa: SIM115 - closed by BlobResponse
        except FileNotFoundError:
            return None
        try:
            return BlobResponse(
                fh,
                headers={"etag": '"' + base64.b64decode(file.md5).hex() + '"'},
                media_type=file.mimetype,
                filename=file.name.rsplit("/", 1)[-1],
            )
        except BaseException:
            fh.close()
            raise

    def _find_file(self, session: Session, api_key: str | None, entity: str, project: str, run: str, name: str) -> File:
        """The file behind a /files URL, or a 401 (no or a bad key) or 404 (anything else, another user's too)."""
        user = authenticate(session, api_key) if api_key else None
        if user is None:
            raise _HttpError(401, "an API key is missing or not valid")
        # Another user's entity answers as a missing one does: nothing can be probed for existence.
        entity_row = session.scalar(select(Entity).where(Entity.name == entity, Entity.owner_id == user.id))
        if entity_row is None:
            raise _HttpError(404, "no such file")
        file = session.scalar(
            select(File)
            .join(Run, File.run_id == Run.id)
            .join(Project, Run.project_id == Project.id)
            .where(Project.entity_id == entity_row.id, Project.name == project, Run.name == run, File.name == name)
        )
        if file is None:
            raise _HttpError(404, "no such file")
        return file

    def _lookup(self, api_key: str | None, entity: str, project: str, run: str, name: str) -> _StoredFile:
        """The file behind a /files URL if the key may read it: one query when all is well."""
        if api_key:
            params = {"entity": entity, "project": project, "run": run, "name": name, "key_hash": hash_api_key(api_key)}
            with self.engine.connect() as connection:
                row = connection.execute(_OWNED_FILE, params).first()
            if row is not None:
                return row
        with self.sessions() as session:
            return self._find_file(session, api_key, entity, project, run, name)

    def _redirect(self, file: _StoredFile) -> Response:
        """S3 mode: 302 to a presigned GET of the file's object; the bytes never pass through here."""
        assert isinstance(self.store, S3BlobStore)
        return RedirectResponse(self.store.presigned_get(file.blob_key, file.mimetype), status_code=302)

    def open_file(self, api_key: str | None, entity: str, project: str, run: str, name: str) -> Response:
        """The opened bytes behind a /files URL (or, with S3, a redirect), checking the key and the entity's owner."""
        for _ in range(3):
            file = self._lookup(api_key, entity, project, run, name)
            if self.store.presigned:
                return self._redirect(file)
            response = self._open_blob(file)
            if response is not None:
                return response
            # Re-uploaded or deleted between the lookup and the open: look again on a fresh snapshot.
        logger.error("file row %s keeps pointing at a missing blob", file.id)
        raise _HttpError(404, "the file's bytes are missing")

    async def download(self, request: Request) -> Response:
        """GET|HEAD /files/{entity}/{project}/{run}/{path}: the file's bytes, for its owner."""
        p = request.path_params
        api_key = api_key_from_authorization(request.headers.get("authorization"))
        try:
            return await run_in_threadpool(self.open_file, api_key, p["entity"], p["project"], p["run"], p["path"])
        except _HttpError as exc:
            response = _json_error(exc.status, exc.message)
            if exc.status == 401:
                response.headers["www-authenticate"] = 'Basic realm="wandb-files"'
            return response

    def open_attachment(self, file: File) -> Response | None:
        """The web page's download of `file`: its bytes as an attachment (with S3, a redirect to a presigned
        GET that says the same), or None if the blob is gone (replaced or deleted since the lookup)."""
        disposition = attachment_disposition(file.name)
        if isinstance(self.store, S3BlobStore):
            url = self.store.presigned_get(file.blob_key, file.mimetype, disposition=disposition)
            return RedirectResponse(url, status_code=302)
        response = self._open_blob(file)
        if response is not None:
            response.headers["content-disposition"] = disposition
        return response

    def open_blob_key(self, blob_key: str) -> Response | None:
        """The opened blob `blob_key` (or, with S3, a redirect), if a file row still uses it."""
        with self.sessions() as session:
            file = session.scalar(select(File).where(File.blob_key == blob_key))
        # None when the file was deleted or re-uploaded since the URL was made (or just now).
        if file is None:
            return None
        return self._redirect(file) if self.store.presigned else self._open_blob(file)

    async def direct(self, request: Request) -> Response:
        """GET|HEAD /blobs/{token}: a blob by signed token, no API key."""
        try:
            blob_key = self._read_token(self.signer.read_blob_token, request.path_params["token"])
        except _HttpError as exc:
            return _json_error(exc.status, exc.message)
        response = await run_in_threadpool(self.open_blob_key, blob_key)
        return response if response is not None else _json_error(404, "no such file")


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "not found", 405: "method not allowed"}.get(status, "error")
    return _json_error(status, message)


async def _server_error(request: Request, exc: Exception) -> Response:
    return _json_error(500, "internal server error")


def _remove_stale_temp_files(tmp_dir: Path) -> None:
    # Other server processes may be writing here right now, so only clearly abandoned files go.
    cutoff = time.time() - STALE_TEMP_SECONDS
    for path in tmp_dir.iterdir():
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()


async def _clean_periodically(config: ServerConfig, sessions: sessionmaker[Session], store: BlobStore) -> None:
    """Every `upload_cleanup_interval` seconds, remove abandoned presigned uploads (in a worker thread);
    several instances may do so at once. Runs until cancelled; a failed sweep is logged and retried."""
    while True:
        await asyncio.sleep(config.upload_cleanup_interval)
        try:
            removed = await anyio.to_thread.run_sync(
                clean_abandoned_uploads, sessions, store, config.abandoned_upload_seconds
            )
        except Exception as exc:  # noqa: BLE001 - the database or bucket may be back at the next sweep
            logger.warning("removing abandoned uploads failed: %s", exc)
            continue
        if removed:
            logger.info("removed %d abandoned uploads", removed)


def _https(config: ServerConfig) -> bool:
    return bool(config.public_url and config.public_url.startswith("https:"))


def create_app(config: ServerConfig) -> Starlette:
    """Build the server app over `config` (creating or migrating the database and directories as needed).

    Everything a request needs lives in the database and the blob store, so any number of processes
    over the same PostgreSQL database and bucket serve the same data.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.tmp_dir.mkdir(exist_ok=True)
    _remove_stale_temp_files(config.tmp_dir)
    store = open_blob_store(
        config.blob_store,
        local_root=config.blob_dir,
        endpoint_url=config.s3_endpoint_url,
        url_ttl=config.signed_url_ttl,
    )
    store.check()
    engine = create_db_engine(config.database)
    sessions = make_session_factory(engine)
    with sessions() as session:
        secret = load_or_create_secret(session)
    if store.presigned:
        # Upload URLs nobody marked as uploaded long after they expired: their objects are litter.
        removed = clean_abandoned_uploads(sessions, store, older_than_seconds=config.abandoned_upload_seconds)
        if removed:
            logger.info("removed %d abandoned uploads", removed)
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
        # A server that runs for weeks must not wait for its next restart to drop abandoned uploads.
        cleaner = asyncio.create_task(_clean_periodically(config, sessions, store)) if store.presigned else None
        try:
            yield
        finally:
            if cleaner is not None:
                # A sweep under way finishes its batch first (worker threads are not abandoned).
                cleaner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cleaner
            engine.dispose()

    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/graphql", server.graphql, methods=["POST"]),
        Route("/uploads/{token}", server.upload, methods=["PUT"]),
        Route("/files/{entity}/{project}/{run}/{path:path}", server.download, methods=["GET", "HEAD"]),
        Route("/blobs/{token}", server.direct, methods=["GET", "HEAD"]),
        # The web page (wandb_files.server.web), at /web; / is its home.
        Route("/", lambda request: RedirectResponse(MOUNT + "/", status_code=307), methods=["GET", "HEAD"]),
        Mount(MOUNT, create_web_app(sessions, secret, server.open_attachment, https=_https(config))),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.server = server
    return app
