"""GET|HEAD /files/... (with the API key) and /blobs/{token} (signed): a file's bytes, or a redirect with S3."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, BinaryIO, Protocol

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from ..db import access
from ..db.models import File
from ..db.users import authenticate, hash_api_key
from ..graphql.context import Viewer
from ..signing import BlobRef
from ..storage import LocalBlobStore, S3BlobStore
from ..web.pages import attachment_disposition
from .auth import api_key_from_authorization
from .state import HttpError, LocatedFile, ServerState, json_error

logger = logging.getLogger("wandb_files.server")

#: Full GETs of blobs up to this size are read in one piece on the event loop, not streamed in thread hops.
INLINE_BYTES = 1024 * 1024


class _StoredFile(Protocol):
    """What serving a file's bytes needs: a `File` row, what `access.file_for_key` finds, or a blob token's."""

    @property
    def blob_key(self) -> str: ...
    @property
    def md5(self) -> str: ...
    @property
    def mimetype(self) -> str: ...


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

    def close(self) -> None:
        """Close the file (when the response will not be sent)."""
        self._file.close()

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        # Starlette's hook for opening self.path; the handle is closed in __call__, not here.
        yield anyio.wrap_file(self._file)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions") or {}
        if "http.response.pathsend" in extensions:
            scope = {**scope, "extensions": {k: v for k, v in extensions.items() if k != "http.response.pathsend"}}
        try:
            size = self.stat_result.st_size if self.stat_result is not None else INLINE_BYTES + 1
            if size <= INLINE_BYTES and scope["method"] == "GET" and all(k != b"range" for k, _ in scope["headers"]):
                # The whole body in one read: from the page cache this costs less than one thread hop would.
                body = os.pread(self._file.fileno(), size, 0)
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": body})
            else:
                await super().__call__(scope, receive, send)
        finally:
            self._file.close()


if not hasattr(FileResponse, "_open_file"):  # pragma: no cover - guarded by the server extra's starlette>=1.8
    raise ImportError("wandb-files server needs starlette>=1.8 (FileResponse._open_file)")


class Downloads(ServerState):
    """The download routes."""

    def _open_blob(self, file: _StoredFile, filename: str) -> BlobResponse | None:
        """A response over the file's blob, opened now; None if the blob is gone (deleted or replaced).

        The blob is opened before the response starts, so a re-upload or delete that unlinks it from
        now on cannot break the download: the open handle keeps serving the old bytes. Opening a local
        file takes microseconds, so this runs on the event loop too.
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
                filename=filename,
            )
        except BaseException:
            fh.close()
            raise

    def _lookup(self, api_key: str | None, entity: str, project: str, run: str, name: str) -> _StoredFile:
        """The file behind a /files URL if the key may read it (one query when all is well), or a 401 (no or a
        bad key) or 404 (anything else, another user's file too: nothing can be probed for existence).

        A hit is remembered (key → user, and the user's file → its blob) for `key_cache_seconds`.
        """
        if api_key:
            key_hash = hash_api_key(api_key)
            with self.engine.connect() as connection:
                found = access.file_for_key(connection, key_hash, entity, project, run, name)
            if found is not None:
                located = LocatedFile(found.name, found.blob_key, found.md5, found.mimetype)
                self.key_users.put(key_hash, Viewer(id=found.user_id, name=found.user_name, admin=found.admin))
                self.locations.put((found.user_id, entity, project, run, name), located)
                return located
            with self.sessions() as session:
                if authenticate(session, api_key) is not None:
                    raise HttpError(404, "no such file")
        raise HttpError(401, "an API key is missing or not valid")

    def open_attachment(self, file: File) -> Response | None:
        """The web page's download of `file`: its bytes as an attachment (with S3, a redirect to a presigned
        GET that says the same), or None if the blob is gone (replaced or deleted since the lookup)."""
        disposition = attachment_disposition(file.name)
        if isinstance(self.store, S3BlobStore):
            url = self.store.presigned_get(file.blob_key, file.mimetype, disposition=disposition)
            return RedirectResponse(url, status_code=302)
        response = self._open_blob(file, file.name.rsplit("/", 1)[-1])
        if response is not None:
            response.headers["content-disposition"] = disposition
        return response

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
            response = self._open_blob(file, name.rsplit("/", 1)[-1])
            if response is not None:
                return response
            # Re-uploaded or deleted between the lookup and the open: look again on a fresh snapshot.
        logger.error("the file %s/%s/%s/%s keeps pointing at a missing blob", entity, project, run, name)
        raise HttpError(404, "the file's bytes are missing")

    def _open_cached(self, api_key: str, entity: str, project: str, run: str, name: str) -> Response | None:
        """The response from the caches alone (no database), or None to look the file up.

        Local store only: the blob's existence stays the truth, so a file deleted or re-uploaded since it
        was cached (its blob is gone) is looked up again. With S3 the object is not checked here.
        """
        if self.store.presigned:
            return None
        viewer = self.key_users.get(hash_api_key(api_key))
        if viewer is None:
            return None
        cache_key = (viewer.id, entity, project, run, name)
        located = self.locations.get(cache_key)
        if located is None:
            return None
        response = self._open_blob(located, name.rsplit("/", 1)[-1])
        if response is None:
            self.locations.discard(cache_key)
        return response

    async def download(self, request: Request) -> Response:
        """GET|HEAD /files/{entity}/{project}/{run}/{path}: the file's bytes, for its owner."""
        p = request.path_params
        api_key = api_key_from_authorization(request.headers.get("authorization"))
        if api_key:
            cached = self._open_cached(api_key, p["entity"], p["project"], p["run"], p["path"])
            if cached is not None:
                return cached
        try:
            return await run_in_threadpool(self.open_file, api_key, p["entity"], p["project"], p["run"], p["path"])
        except HttpError as exc:
            response = json_error(exc.status, exc.message)
            if exc.status == 401:
                response.headers["www-authenticate"] = 'Basic realm="wandb-files"'
            return response

    def open_blob_ref(self, ref: BlobRef) -> Response | None:
        """The blob a token names, from the token alone: None when it is gone (deleted, or its file replaced)."""
        located = LocatedFile(ref.filename, ref.blob_key, ref.md5, ref.mimetype)
        if self.store.presigned:
            return self._redirect(located)
        response = self._open_blob(located, ref.filename)
        if response is not None and (response.stat_result is None or response.stat_result.st_size != ref.size):
            response.close()  # not the blob the token was made for
            return None
        return response

    async def direct(self, request: Request) -> Response:
        """GET|HEAD /blobs/{token}: a blob by signed token, no API key and no database."""
        try:
            ref = self._read_token(self.signer.read_blob_token, request.path_params["token"])
        except HttpError as exc:
            return json_error(exc.status, exc.message)
        response = self.open_blob_ref(ref)
        return response if response is not None else json_error(404, "no such file")
