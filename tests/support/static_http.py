"""Tiny loopback HTTP servers. `StaticServer` holds one file, for the ranged-download tests: it can ignore Range
(as some servers and proxies do), honour it with If-Range, and swap the file's bytes after a number of requests
(a remote that changes mid-download); it counts what it answers. `AnswerServer` gives one fixed answer to every
request (what a wrong base URL reaches)."""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class StaticServer:
    """Serves `data` at every path of ``url``, with a strong ETag (its md5 in hex, quoted).

    Args:
        data: The file's bytes.
        ranges: Answer ``Range: bytes=a-b`` with a 206 (honouring If-Range); False: always a 200 of it all.
        then: Bytes to serve instead once `change_after` GET requests were answered (a new version).
        change_after: How many GETs see `data` before `then` replaces it.
        send_etag: Whether answers carry an ETag at all.
        token_uses: If set, ``url`` answers 302 to ``file.bin?token=N`` (as our server in S3 mode redirects to
            a presigned URL), and each token is good for this many GETs, then answers 403 (it expired).

    Attributes:
        url: ``http://127.0.0.1:port/file.bin``.
        statuses: The status of every GET answered, in order.
        ranges_asked: The Range header of every GET (None when absent), in order.
    """

    def __init__(
        self,
        data: bytes,
        *,
        ranges: bool = True,
        then: bytes | None = None,
        change_after: int | None = None,
        send_etag: bool = True,
        token_uses: int | None = None,
    ) -> None:
        self.data = data
        self.ranges = ranges
        self.then = then
        self.change_after = change_after
        self.send_etag = send_etag
        self.token_uses = token_uses
        self.tokens: dict[str, int] = {}  # token -> GETs it answered
        self.redirects = 0
        self.statuses: list[int] = []
        self.ranges_asked: list[str | None] = []
        self.body_bytes = 0
        self._seen = 0  # GETs that arrived
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._answer(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/" + ("start" if token_uses else "file.bin")
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _current(self) -> bytes:
        with self._lock:
            self._seen += 1
            if self.then is not None and self.change_after is not None and self._seen > self.change_after:
                return self.then
            return self.data

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        if self.token_uses is not None:
            if handler.path == "/start":
                with self._lock:
                    self.redirects += 1
                    token = str(self.redirects)
                    self.tokens[token] = 0
                handler.send_response(302)
                handler.send_header("Location", f"/file.bin?token={token}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            token = handler.path.partition("?token=")[2]
            with self._lock:
                uses = self.tokens.get(token)
                expired = uses is None or uses >= self.token_uses
                if not expired:
                    self.tokens[token] += 1
            if expired:
                handler.send_response(403)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
        data = self._current()
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        asked = handler.headers.get("Range")
        if_range = handler.headers.get("If-Range")
        match = _RANGE.match(asked or "")
        status, start, end = 200, 0, len(data) - 1
        if self.ranges and match and (if_range is None or if_range == etag):
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            status = 206
            if start >= len(data):
                status, start, end = 416, 0, -1
        with self._lock:
            self.statuses.append(status)
            self.ranges_asked.append(asked)
        handler.send_response(status)
        if self.send_etag:
            handler.send_header("ETag", etag)
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        if status == 416:
            handler.send_header("Content-Range", f"bytes */{len(data)}")
        handler.send_header("Content-Length", str(end + 1 - start))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        view = memoryview(data)[start : end + 1]
        try:
            for offset in range(0, len(view), 65536):
                handler.wfile.write(view[offset : offset + 65536])
                with self._lock:
                    self.body_bytes += len(view[offset : offset + 65536])
        except OSError:
            pass  # the client went away (a fallback closes the first answer once it has its headers)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StaticServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AnswerServer:
    """Answers every request (any method, any path) with one fixed answer: for pretending to be what a wrong base
    URL reaches (a web page, a login redirect, a JSON API of another kind).

    Args:
        status: The HTTP status.
        body: The body.
        content_type: The Content-Type header; None for none.
        redirect_to: If set, every path but this one answers 302 to it, and this one answers with the rest.

    Attributes:
        url: ``http://127.0.0.1:port``.
        requests: ``(method, path)`` of every request, in order.
    """

    def __init__(
        self, status: int, body: bytes, content_type: str | None = None, *, redirect_to: str | None = None
    ) -> None:
        self.requests: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append((self.command, self.path))
                if redirect_to is not None and self.path != redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(status)
                if content_type is not None:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> AnswerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
