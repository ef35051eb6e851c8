"""PUT /uploads/{token}: a signed upload URL's bytes, spooled to a temp file and committed as the file's blob."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..db.database import lock_runs, write_transaction
from ..db.filerows import FileArrival, PathClash, store_files
from ..names import InvalidName, validate_file_name
from .state import HttpError, ServerState, json_error

WRITE_BUFFER_BYTES = 1024 * 1024
#: A body that declares up to this size is read into memory whole; one sent without a length is written on the
#: event loop when its last part is up to this size.
INLINE_WRITE_BYTES = 64 * 1024


@dataclass
class _Arrival:
    """One finished upload waiting for its file row, and how its commit went."""

    run_id: int
    name: str
    blob_key: str
    size: int
    md5_b64: str
    done: bool = False
    old_key: str | None = None
    error: BaseException | None = None


class _GroupCommit:
    """Commits the file rows of uploads that finish at once in one write transaction (a group commit).

    The wandb SDK PUTs every file of a run at once when it finishes; one transaction each made them queue for
    the database's write lock one by one. While one thread commits a batch, the uploads arriving queue up; when
    it is done, one of them commits all of those, and each thread returns as soon as its own batch is done.
    """

    def __init__(self) -> None:
        self._queue: list[_Arrival] = []
        self._changed = threading.Condition()
        self._committing = False

    def commit(self, sessions: sessionmaker[Session], arrival: _Arrival) -> None:
        """Commit `arrival`'s row, with whatever else is queued; its `old_key`/`error` tell how it went."""
        with self._changed:
            self._queue.append(arrival)
            while self._committing and not arrival.done:
                self._changed.wait()
            if arrival.done:  # committed in another thread's batch
                return
            self._committing = True
            batch, self._queue = self._queue, []
        try:
            self._commit_batch(sessions, batch)
        except BaseException as exc:
            for each in batch:
                each.old_key, each.error = None, exc
            raise
        finally:
            with self._changed:
                for each in batch:
                    each.done = True
                self._committing = False
                self._changed.notify_all()

    @staticmethod
    def _commit_batch(sessions: sessionmaker[Session], batch: list[_Arrival]) -> None:
        by_run: dict[int, list[_Arrival]] = {}
        for each in batch:
            by_run.setdefault(each.run_id, []).append(each)
        with sessions() as session, write_transaction(session):
            live = lock_runs(session, set(by_run))
            for run_id, arrivals in by_run.items():
                if run_id not in live:
                    for each in arrivals:
                        each.error = HttpError(404, "the run of this upload URL no longer exists")
                    continue
                results = store_files(
                    session, run_id, [FileArrival(a.name, a.blob_key, a.size, a.md5_b64) for a in arrivals]
                )
                for each, result in zip(arrivals, results, strict=True):
                    if isinstance(result, PathClash):  # nothing of it written: the others still commit
                        each.error = result
                    else:
                        each.old_key = result


class Uploads(ServerState):
    """The upload route."""

    @cached_property
    def _upload_commits(self) -> _GroupCommit:
        # Two threads racing to make it each get a working one (the database still orders their commits).
        return _GroupCommit()

    def commit_upload(self, run_id: int, name: str, temp_path: Path, size: int, md5_b64: str) -> None:
        """Move a finished upload into the blob store and point the file row at it.

        Raises:
            HttpError: the run no longer exists (404).
            PathClash: the name clashes with the run's files.
        """
        arrival = _Arrival(run_id, name, uuid.uuid4().hex, size, md5_b64)
        self.store.put(arrival.blob_key, temp_path)
        try:
            self._upload_commits.commit(self.sessions, arrival)
        except BaseException:
            # The row never pointed at the new blob; do not leave it behind.
            self.store.delete(arrival.blob_key)
            raise
        if arrival.error is not None:
            self.store.delete(arrival.blob_key)
            raise arrival.error
        if arrival.old_key is not None:
            self.store.delete(arrival.old_key)

    async def upload(self, request: Request) -> Response:
        """PUT /uploads/{token}: stream the body to a temp file, then store it as the file's bytes."""
        try:
            run_id, name = self._read_token(self.signer.read_upload_token, request.path_params["token"])
            validate_file_name(name)
            declared = self._content_length(request)
            if declared is not None and declared > self.config.max_upload_bytes:
                raise HttpError(413, f"upload is larger than the limit of {self.config.max_upload_bytes} bytes")
            if declared is not None and declared <= INLINE_WRITE_BYTES:
                # A small body is read whole; its temp file is made in the worker thread, not on the event loop.
                body = await self._small_body(request, declared)
                size, md5_b64 = len(body), await run_in_threadpool(self._commit_small_upload, run_id, name, body)
            else:
                temp_path, size, md5_b64 = await self._spool(request, declared)
                try:
                    await run_in_threadpool(self.commit_upload, run_id, name, temp_path, size, md5_b64)
                finally:
                    temp_path.unlink(missing_ok=True)  # already moved on success
        except HttpError as exc:
            return json_error(exc.status, exc.message)
        except InvalidName:
            return json_error(403, "the signed URL is not valid")
        except PathClash as exc:
            return json_error(409, str(exc))
        return JSONResponse({"name": name, "sizeBytes": size, "md5": md5_b64})

    def _commit_small_upload(self, run_id: int, name: str, body: bytes) -> str:
        """Write a small upload's bytes to a temp file and commit it as commit_upload does; its base64 md5."""
        md5_b64 = base64.b64encode(hashlib.md5(body).digest()).decode()
        fd, temp = tempfile.mkstemp(dir=self.config.tmp_dir, prefix="upload-")
        temp_path = Path(temp)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            self.commit_upload(run_id, name, temp_path, len(body), md5_b64)
        finally:
            temp_path.unlink(missing_ok=True)  # already moved on success
        return md5_b64

    @staticmethod
    async def _small_body(request: Request, declared: int) -> bytes:
        """The whole body of a request that declared `declared` bytes (at most INLINE_WRITE_BYTES)."""
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > declared:
                    break
        except ClientDisconnect:
            raise HttpError(400, "upload body ended early") from None
        if len(body) != declared:
            raise HttpError(400, "upload body ended early")
        return bytes(body)

    @staticmethod
    def _content_length(request: Request) -> int | None:
        header = request.headers.get("content-length")
        if header is None:
            return None
        if not header.isdigit():
            raise HttpError(400, "invalid Content-Length")
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
                            raise HttpError(
                                413, f"upload is larger than the limit of {self.config.max_upload_bytes} bytes"
                            )
                        buffer += chunk
                        if len(buffer) >= WRITE_BUFFER_BYTES:
                            await run_in_threadpool(flush, fh, bytes(buffer))
                            buffer.clear()
                except ClientDisconnect:
                    raise HttpError(400, "upload body ended early") from None
                if len(buffer) > INLINE_WRITE_BYTES:
                    await run_in_threadpool(flush, fh, bytes(buffer))
                elif buffer:
                    flush(fh, bytes(buffer))  # a small body: cheaper here than the hop to a worker thread
            if declared is not None and size != declared:
                raise HttpError(400, "upload body ended early")
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return temp_path, size, base64.b64encode(md5.digest()).decode()
