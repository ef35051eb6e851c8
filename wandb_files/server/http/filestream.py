"""POST /files/{entity}/{project}/{run}/file_stream: the wandb SDK's stream of history, console, summary, state.

Authenticated as /graphql is (HTTP Basic with the API key). What is kept and how is in db/streams.py; this
route also makes the run's output.log file again from the stored console lines whenever they change, so the
file can be downloaded, through every client, while the run still runs and after it crashed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import tempfile
import uuid
import zlib
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import orjson
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..db import access
from ..db.database import write_transaction
from ..db.filerows import PathClash, file_blob_key, lock_run, store_file
from ..db.models import Run
from ..db.streams import (
    OUTPUT,
    OUTPUT_FILE,
    SUMMARY_FILE,
    StreamError,
    StreamRequest,
    apply_stream_request,
    mark_silent_runs,
    md5_b64_of,
    parse_stream_request,
    stream_lines,
)
from ..graphql.context import RequestContext, Viewer
from ..graphql.errors import ApiError
from ..graphql.resolvers.file_mutations import resolve_mark_run_files_uploaded
from ..storage import PrefixUnavailable
from .auth import api_key_from_authorization
from .outputlog import MadeFile, OutputLogs
from .state import HttpError, ServerState, json_error, read_body

logger = logging.getLogger("wandb_files.server")

#: Larger bodies are refused; the client sends at most about 10 MiB a request.
MAX_STREAM_BODY_BYTES = 64 * 1024 * 1024


def gunzip(data: bytes | bytearray, limit: int) -> bytearray | None:
    """The bytes of a gzip body (one member or several), or None once they pass `limit` bytes.

    Decompressed a bounded piece at a time: the body's own limit says nothing of what a few compressed
    megabytes expand to, and this runs before the key is checked.

    Raises:
        zlib.error: not gzip data.
        EOFError: the data ends inside a member.
    """
    out = bytearray()
    rest = bytes(data)
    while rest:
        member = zlib.decompressobj(wbits=31)
        out += member.decompress(rest, limit + 1 - len(out))
        if len(out) > limit:
            return None
        if not member.eof:
            raise EOFError("the gzip data ends inside a member")
        rest = member.unused_data
    return out


class FileStream(ServerState):
    """The file stream route."""

    async def file_stream(self, request: Request) -> Response:
        """POST /files/{entity}/{project}/{run}/file_stream."""
        api_key = api_key_from_authorization(request.headers.get("authorization"))
        if api_key is None:
            return json_error(401, "an API key is missing (HTTP Basic auth)")
        raw = await read_body(request, MAX_STREAM_BODY_BYTES)
        if raw is None:
            return json_error(413, "request body too large")
        try:
            if request.headers.get("content-encoding", "").lower() == "gzip":
                unzipped = gunzip(raw, MAX_STREAM_BODY_BYTES)
                if unzipped is None:
                    return json_error(413, "request body too large once decompressed")
                raw = unzipped
            stream = parse_stream_request(orjson.loads(raw))
        except (orjson.JSONDecodeError, OSError, EOFError, zlib.error):
            return json_error(400, "the body is not (gzipped) JSON")
        except StreamError as exc:
            return json_error(400, str(exc))
        params = request.path_params
        try:
            await run_in_threadpool(
                self.store_stream, api_key, params["entity"], params["project"], params["run"], stream
            )
        except HttpError as exc:
            return json_error(exc.status, exc.message)
        # W&B's answer; the client reads only an optional "stopped": true (a stop asked for in the web UI).
        return JSONResponse({"exitcode": None, "limits": {}})

    def store_stream(self, api_key: str, entity: str, project: str, run_name: str, stream: StreamRequest) -> None:
        """Apply one checked file stream request to run `entity/project/run_name` (in a worker thread).

        Raises:
            HttpError: the key is not valid (401) or the run is not the key owner's (404).
        """
        with self.sessions() as session:
            viewer = self.viewer(session, api_key)
            if viewer is None:
                raise HttpError(401, "the API key is not valid")
            run = access.owned_run(session, viewer.id, entity, project, run_name)
            if run is None:
                raise HttpError(404, f"run {entity}/{project}/{run_name} not found")
            run_id = run.id
            with write_transaction(session):
                if not lock_run(session, run_id):
                    raise HttpError(404, f"run {entity}/{project}/{run_name} not found")
                run = session.get(Run, run_id, populate_existing=True)
                assert run is not None
                line_count = run.log_line_count
                output_changed = apply_stream_request(session, run, stream)
                # In the same transaction: two requests of a run never store their files out of order.
                old_keys = []
                if output_changed:
                    old_keys.append(self._store_output_log(session, run, line_count, stream))
                if stream.summary is not None:
                    # The summary as a file too, as the client uploads it when it finishes: in step with
                    # summaryMetrics while the run runs (and after a crash).
                    data = stream.summary.encode()
                    old_keys.append(self._store_text_file(session, run_id, SUMMARY_FILE, data, md5_b64_of(data)))
            for old_key in old_keys:
                if old_key is not None:
                    self.store.delete(old_key)
            if stream.uploaded and self.store.presigned:
                self._commit_uploaded(
                    session,
                    viewer,
                    {"entityName": entity, "projectName": project, "runName": run_name, "files": stream.uploaded},
                )

    def _commit_uploaded(self, session: Session, viewer: Viewer, mark_input: dict[str, Any]) -> None:
        """Commit the presigned uploads the client says are done, as markRunFilesUploaded does.

        The client sends that mutation only when it learnt the feature from serverInfo; when that query
        failed (a dropped connection, say), the stream's `uploaded` list is its only word that a PUT straight
        into the bucket finished. A file that cannot be committed is logged, and the stream goes on.
        """
        info = SimpleNamespace(
            context=RequestContext(
                session=session,
                viewer=viewer,
                signer=self.signer,
                store=self.store,
                public_url=self.config.public_url or "",
                sessions=self.sessions,
                max_upload_bytes=self.config.max_upload_bytes,
            )
        )
        try:
            resolve_mark_run_files_uploaded(None, info, mark_input)
        except ApiError as exc:
            logger.info("file stream: uploaded files of run %s not all committed: %s", mark_input["runName"], exc)

    @cached_property
    def _output_logs(self) -> OutputLogs:
        return OutputLogs()

    def _store_output_log(self, session: Session, run: Run, line_count: int, stream: StreamRequest) -> str | None:
        """Store the run's output.log after `stream` stored its console lines (`line_count` of them before it);
        the replaced blob key.

        Made from the previous file when this process made that one (see http/outputlog.py), else, or when the
        store cannot make it so (the previous blob is gone), from every stored console line.
        """
        current = file_blob_key(session, run.id, OUTPUT_FILE)
        chunk = stream.lines.get(OUTPUT)
        if chunk is None and self._output_logs.current(run.id, current, line_count):
            return None  # the final request: the file already holds every line
        if chunk is not None and current is not None:
            offset, lines = chunk
            made = self._output_log_file(
                lambda fh: self._output_logs.extend(
                    run.id,
                    current,
                    line_count,
                    offset,
                    lines,
                    lambda start, stop: stream_lines(session, run.id, OUTPUT, start, stop),
                    fh,
                )
            )
            if made is not None:
                try:
                    return self._store_made_output_log(session, run, made, current)
                except PrefixUnavailable as exc:  # removed behind the server's back: the lines still make it
                    logger.warning("output.log of run %d made from every stored line: %s", run.id, exc)
        made = self._output_log_file(lambda fh: OutputLogs.remake(stream_lines(session, run.id, OUTPUT), fh))
        assert made is not None
        return self._store_made_output_log(session, run, made, None)

    def _output_log_file(self, make: Callable[[BinaryIO], MadeFile | None]) -> tuple[Path, MadeFile] | None:
        """`make` run on a new temp file: the file and what it made, or None (the file removed) if it made none."""
        fd, temp = tempfile.mkstemp(dir=self.config.tmp_dir, prefix="output-")
        temp_path = Path(temp)
        try:
            with os.fdopen(fd, "w+b") as fh:
                made = make(fh)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        if made is None:
            temp_path.unlink(missing_ok=True)
            return None
        return temp_path, made

    def _store_made_output_log(
        self, session: Session, run: Run, file: tuple[Path, MadeFile], prefix_of: str | None
    ) -> str | None:
        """Store an output.log `file` made (after the first bytes of blob `prefix_of`, if any); the replaced key."""
        temp_path, made = file
        md5_b64 = base64.b64encode(made.md5_digest).decode()
        prefix = (prefix_of, made.prefix_len) if made.prefix_len and prefix_of is not None else None
        try:
            key, replaced = self._store_temp_file(session, run.id, OUTPUT_FILE, temp_path, made.size, md5_b64, prefix)
        except BaseException:
            self._output_logs.forget(run.id)
            raise
        finally:
            temp_path.unlink(missing_ok=True)
        if key is None:
            self._output_logs.forget(run.id)
        else:
            self._output_logs.stored(run.id, key, made)
        return replaced

    def _store_text_file(self, session: Session, run_id: int, name: str, data: bytes, md5_b64: str) -> str | None:
        """Store `data` as run file `name` (a new blob; the row added or pointed at it); the replaced blob key."""
        fd, temp = tempfile.mkstemp(dir=self.config.tmp_dir, prefix="output-")
        temp_path = Path(temp)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return self._store_temp_file(session, run_id, name, temp_path, len(data), md5_b64)[1]
        finally:
            temp_path.unlink(missing_ok=True)

    def _store_temp_file(
        self,
        session: Session,
        run_id: int,
        name: str,
        temp_path: Path,
        size: int,
        md5_b64: str,
        prefix: tuple[str, int] | None = None,
    ) -> tuple[str | None, str | None]:
        """Store a finished temp file as run file `name` (after the first bytes of another blob: `prefix` is
        its key and how many), of `size` bytes in all: the new blob key (None when the name clashes) and the
        replaced one."""
        key = uuid.uuid4().hex
        try:
            if prefix is None:
                self.store.put(key, temp_path)
            else:
                self.store.put_composed(key, prefix[0], prefix[1], temp_path)
            try:
                return key, store_file(session, run_id, name, key, size, md5_b64)
            except PathClash as exc:
                # A folder of that name: what was streamed is kept all the same; only the file cannot be made.
                logger.warning("%s of run %d not made: %s", name, run_id, exc)
                self.store.delete(key)
                return None, None
        except BaseException:
            self.store.delete(key)
            raise


async def mark_silent_runs_periodically(sessions: sessionmaker[Session], timeout_seconds: float) -> None:
    """Every so often (a quarter of the timeout, at most a minute), mark runs whose file stream has been
    silent for `timeout_seconds` as crashed. Runs until cancelled; a failed sweep is logged and retried."""
    interval = max(1.0, min(60.0, timeout_seconds / 4))
    while True:
        await asyncio.sleep(interval)
        try:
            changed = await run_in_threadpool(_mark, sessions, timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - the database may be back at the next sweep
            logger.warning("marking silent runs as crashed failed: %s", exc)
            continue
        if changed:
            logger.info("marked %d silent runs as crashed", changed)


def _mark(sessions: sessionmaker[Session], timeout_seconds: float) -> int:
    with sessions() as session:
        return mark_silent_runs(session, timeout_seconds)
