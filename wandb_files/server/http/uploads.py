"""PUT /uploads/{token}: a signed upload URL's bytes, spooled to a temp file and committed as the file's blob."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..db.database import write_transaction
from ..db.filerows import PathClash, lock_run, store_file
from ..names import InvalidName, validate_file_name
from .state import ServerState, _HttpError, _json_error

WRITE_BUFFER_BYTES = 1024 * 1024


class Uploads(ServerState):
    """The upload route."""

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
