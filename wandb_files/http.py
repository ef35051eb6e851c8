"""The client's one HTTP layer: the pooled session, the streaming GET, where the API key may go, and what a
failed request means.

GraphQL (`wandb_files.graphql`) and every byte transfer (`wandb_files.transfer`, the fsspec filesystem) go
through `HTTPClient`, and read failures through the same few names:

- `BROKEN_CONNECTION` is what a connection that failed or broke raises; `connection_problem` says why in a few
  words and whether nothing answers there at all;
- `retryable` says which HTTP statuses are worth another attempt, `check_status` raises the mapped `APIError`
  for any other error status (wrapped in `Retryable` for those that are);
- `parse_content_range` reads a ``Content-Range`` header, `read_arrived` the next bytes of a streamed body;
- the waits between attempts are `wandb_files.retry`'s `Backoff`.
"""

from __future__ import annotations

import re
import socket
import threading
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth

from wandb_files import redact
from wandb_files._version import __version__
from wandb_files.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)
from wandb_files.retry import REFUSED_GRACE_SECONDS, RETRYABLE_STATUS, Backoff, RetryPolicy, parse_retry_after

redact.install()  # URLs with signatures and keys may reach the debug logs of urllib3 and ours

USER_AGENT = f"wandb-files/{__version__}"

#: A connection that failed or broke: worth another attempt. requests' exceptions are OSErrors, and a reset
#: while a body is read surfaces from urllib3 as one of its own HTTPErrors (ProtocolError, ReadTimeoutError).
BROKEN_CONNECTION = (OSError, urllib3.exceptions.HTTPError)

_STATUS_TO_ERROR: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


# --- what a failure means ---------------------------------------------------------------------------------


def retryable(status: int) -> bool:
    """Whether an HTTP status is worth another attempt: the server or something in front of it is overloaded or
    restarting (408, 429, 5xx gateways)."""
    return status in RETRYABLE_STATUS


def error_for_status(status: int | None) -> type[APIError]:
    """The exception class that stands for an HTTP status."""
    if status is None:
        return APIError
    if status >= 500:
        return ServerError
    return _STATUS_TO_ERROR.get(status, APIError)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it wraps: causes, contexts, and the `reason` urllib3 and requests keep."""
    found: list[BaseException] = []
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or any(item is seen for seen in found):
            continue
        found.append(item)
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return found


def connection_problem(exc: BaseException) -> tuple[str, bool]:
    """Why a connection failed, in a few words, and whether nothing answers at that address at all.

    Refused connections and unknown host names are not worth retrying for long: nothing listens there.
    """
    chain = _chain(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused: nothing is listening at that address", True
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "the host name could not be resolved", True
    if any(isinstance(e, (TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError)) for e in chain):
        return "no answer within the timeout", False
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "the connection was reset", False
    return f"the connection failed ({type(exc).__name__})", False


class Retryable(Exception):
    """A failed attempt worth another: `error` is what to raise when no attempt is left.

    Args:
        error: The mapped error.
        retry_after: The server's ``Retry-After``, in seconds.
        within: Retry only while the call is younger than this (a refused connection: nothing listens there).
    """

    def __init__(self, error: Exception, retry_after: float | None = None, within: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.within = within

    def wait(self, backoff: Backoff, sleep: Callable[[float], None] | None = None) -> None:
        """Count this failure against `backoff` and sleep before the next attempt (`sleep` may be cancellable).

        Raises:
            Exception: `error`, when the attempts or the time are spent.
        """
        if sleep is None:
            backoff.failed(self.error, self.retry_after, within=self.within)
        else:
            backoff.failed(self.error, self.retry_after, within=self.within, sleep=sleep)


def connection_failure(name: str, exc: BaseException, action: str = "connect to download") -> Retryable:
    """The retryable error for a request to `name` that could not be made (`action`: what could not be done)."""
    problem, unreachable = connection_problem(exc)
    return Retryable(
        TransportError(f"{name}: could not {action} it ({problem})"),
        within=REFUSED_GRACE_SECONDS if unreachable else None,
    )


def connection_broke(name: str, exc: BaseException) -> Retryable:
    """The retryable error for a body that stopped arriving: the bytes so far are kept for a resume."""
    problem, _ = connection_problem(exc)
    return Retryable(TransportError(f"{name}: the connection broke mid-download ({problem})"))


def status_error(response: HTTPResponse, what: str) -> APIError:
    """The mapped `APIError` for an error answer; `what` names the file (never a URL: it may carry a signature)."""
    cls = error_for_status(response.status_code)
    detail = response.text.strip()[:200] if "json" in response.headers.get("Content-Type", "") else response.reason
    return cls(f"{what}: HTTP {response.status_code} {detail}", status_code=response.status_code)


def raise_for_status(response: HTTPResponse, what: str) -> None:
    """Raise the mapped `APIError` for a non-2xx byte-transfer response.

    Args:
        response: The response to check.
        what: What was being transferred, for the message (a file name, never a signed URL).

    Raises:
        APIError: a subclass chosen by the status.
    """
    if response.status_code >= 400:
        raise status_error(response, what)


def check_status(response: HTTPResponse, what: str) -> None:
    """Like `raise_for_status`, but a `retryable` status raises `Retryable` (with the server's ``Retry-After``).

    Raises:
        Retryable: 408, 429 or 5xx.
        APIError: any other error status.
    """
    if response.status_code >= 400:
        error = status_error(response, what)
        if retryable(response.status_code):
            raise Retryable(error, parse_retry_after(response.headers))
        raise error


class ContentRange(NamedTuple):
    """A ``Content-Range: bytes first-last/total`` header; `total` is None for ``*`` (unknown)."""

    first: int
    last: int
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """The byte range a 206 answer says it carries, or None when the header is missing or not a byte range."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    total = match.group(3)
    return ContentRange(int(match.group(1)), int(match.group(2)), None if total == "*" else int(total))


# --- responses ---------------------------------------------------------------------------------------------


class StreamedResponse:
    """The parts of `requests.Response` that transfers use, over a urllib3 response (see `HTTPClient.stream_get`)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.raw = raw
        self.status_code = raw.status
        self.headers = raw.headers
        self.reason = raw.reason

    @property
    def text(self) -> str:
        """The body, decoded as UTF-8 (for error messages)."""
        return self.raw.read(decode_content=True).decode("utf-8", "replace")

    def close(self) -> None:
        """Give the connection back to its pool."""
        self.raw.release_conn()

    def __enter__(self) -> StreamedResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.raw.closed:  # the body was not read to its end: the connection cannot serve another request
            self.raw.close()
        self.raw.release_conn()


#: What byte transfers read: requests' response, or the lean one of the fast path.
HTTPResponse: typing.TypeAlias = "StreamedResponse | requests.Response"


def read_arrived(response: HTTPResponse, limit: int) -> bytes:
    """What has arrived of the body, up to `limit` bytes, exactly as stored; ``b""`` at its end.

    It does not wait for a whole `limit`: on a slow link the bytes reach the temp file (and the progress bar) as
    they come, so an interruption keeps them for the resume. A ``Content-Encoding`` is not undone: the md5 a
    download is checked against is of the stored bytes.

    Raises:
        OSError, urllib3.exceptions.HTTPError: the connection broke (see `BROKEN_CONNECTION`).
    """
    return response.raw.read1(limit, decode_content=False)


def _read_range(response: HTTPResponse, start: int, end: int | None) -> bytes | None:
    """The asked-for bytes ``[start, end)`` of a 206 (or of a 200 that ignored the Range); None if the body
    broke off.

    Raises:
        TransportError: a 206 for another range than the one asked for.
    """
    skip = 0
    if response.status_code == 200:
        skip = start  # the whole file came: pass over what precedes the range (rare: servers honour Range)
    else:
        got = parse_content_range(response.headers.get("Content-Range"))
        if got is None or got.first != start:
            raise TransportError(
                f"the server answered another range than bytes {start}-: {response.headers.get('Content-Range')!r}"
            )
    wanted = None if end is None else end - start
    chunks = []
    received = 0
    read = response.raw.read
    try:
        while skip:
            skipped = read(min(skip, 1 << 20), decode_content=False)
            if not skipped:
                return None
            skip -= len(skipped)
        while wanted is None or received < wanted:
            chunk = read((1 << 20) if wanted is None else min(1 << 20, wanted - received), decode_content=False)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
    except BROKEN_CONNECTION:
        return None
    if wanted is not None and received < wanted:
        return None
    return b"".join(chunks)


# --- the session -------------------------------------------------------------------------------------------


def mount_pool(session: requests.Session, pool_size: int) -> None:
    """Give `session` a connection pool of `pool_size` connections an origin (requests retries nothing itself)."""
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class _NoAuth(requests.auth.AuthBase):
    """Sends no credentials. As the session's default it stops requests from reading ~/.netrc on every call."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _Session(requests.Session):
    """A `requests` session that reads the environment once per origin, not on every request.

    requests re-reads every environment variable for proxy settings on each call (as costly as a whole small
    download on loopback). The answer only depends on the origin, so it is cached;
    proxies, `no_proxy` and CA-bundle variables keep their meaning. Credentials from ~/.netrc are never
    added: the API key goes only where `HTTPClient.auth_for` says, and a presigned URL must carry no
    other credentials.
    """

    _CACHE_LIMIT = 256

    def __init__(self) -> None:
        super().__init__()
        self.auth = _NoAuth()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        text = url.decode() if isinstance(url, bytes) else (url or "")
        key = (origin(text), tuple(sorted((proxies or {}).items())), stream, verify, cert)
        cached: dict[str, Any] | None = self._environment.get(key)
        if cached is None:
            cached = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            if len(self._environment) < self._CACHE_LIMIT:
                self._environment[key] = cached
        return {name: dict(value) if isinstance(value, dict) else value for name, value in cached.items()}


def make_session(pool_size: int = 16) -> requests.Session:
    """A `requests` session with a connection pool big enough for `pool_size` concurrent transfers."""
    session = _Session()
    mount_pool(session, pool_size)
    session.headers["User-Agent"] = USER_AGENT
    return session


def origin(url: str) -> tuple[str, str, int | None]:
    """The scheme, lower-case host and port (the scheme's default when omitted) of `url`."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class HTTPClient:
    """One server, one API key, one pooled session: what GraphQL calls and byte transfers share.

    Args:
        base_url: The server, e.g. ``https://api.wandb.ai``.
        api_key: The API key, sent as HTTP Basic auth (user ``api``) to `base_url`'s origin only.
        timeout: Seconds one call may take, its retries included (for a transfer: without receiving a byte).
        retry: When to try again after a connection failure, a timeout, 408, 429 or 5xx.
        session: A `requests` session to share; a pooled one is made when omitted.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = session or make_session()
        self._pool_size = 16
        self._pool_lock = threading.Lock()
        self._direct_pools: dict[tuple[str, str, int | None], urllib3.HTTPConnectionPool | None] = {}
        #: The ``Authorization`` header value of the key (for engines that build their own requests).
        self.authorization = requests.auth._basic_auth_str("api", api_key)
        self._auth = HTTPBasicAuth("api", api_key)

    def ensure_pool(self, workers: int) -> None:
        """Grow the session's connection pool to keep one connection per concurrent transfer.

        Growing replaces the pool; connections in use finish on the old one.
        """
        with self._pool_lock:
            if workers > self._pool_size:
                mount_pool(self.session, workers)
                self._pool_size = workers
                self._direct_pools.clear()  # they belonged to the replaced adapter

    def auth_for(self, url: str) -> HTTPBasicAuth | None:
        """The API key's auth when `url` is on the server's exact scheme, host and port; otherwise None.

        The key must never travel to another host (a storage bucket, a CDN, a redirect target).
        """
        return self._auth if origin(url) == origin(self.base_url) else None

    def stream_get(
        self, url: str, headers: Mapping[str, str], timeout: float | None = None
    ) -> StreamedResponse | requests.Response:
        """GET `url` for streaming its body, with the key only if `url` is on the server's own origin.

        The common case (no proxy for that origin, no redirect) goes straight to the connection pool of the
        session's adapter: requests' per-call machinery costs about three times the CPU of the request itself,
        and a bulk download makes thousands of them. The pool, its TLS settings and its connections stay
        requests'. A proxy, or a redirect (say to a bucket), takes the ordinary requests path, which follows
        redirects and drops the key when the host changes.

        Args:
            url: What to fetch.
            headers: Request headers (the key is added only for the server's own origin).
            timeout: Seconds to wait to connect and for each read; defaults to the client's timeout.

        Returns:
            The response, its body not read yet.

        Raises:
            OSError, urllib3.exceptions.HTTPError: the connection failed (see `BROKEN_CONNECTION`).
        """
        timeout = self.timeout if timeout is None else timeout
        auth = self.auth_for(url)
        pool = self.direct_pool(url)
        if pool is not None:
            parts = urlsplit(url)
            sent: dict[str, Any] = {**self.session.headers, **headers}
            if auth is not None:
                sent["Authorization"] = self.authorization
            raw = pool.urlopen(
                "GET",
                parts.path + (f"?{parts.query}" if parts.query else ""),
                headers=sent,
                preload_content=False,
                decode_content=False,
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
            )
            if raw.status not in _REDIRECTS:
                return StreamedResponse(raw)
            raw.drain_conn()
            raw.release_conn()
        return self.session.get(url, headers=dict(headers), auth=auth, stream=True, timeout=timeout)

    def put(self, url: str, data: Any, headers: Mapping[str, str], timeout: float | None = None) -> requests.Response:
        """PUT `data` (bytes or a file-like object with a length) to `url`, with the key only on the server's origin.

        Raises:
            OSError, urllib3.exceptions.HTTPError: the connection failed (see `BROKEN_CONNECTION`).
        """
        timeout = self.timeout if timeout is None else timeout
        return self.session.put(url, data=data, headers=dict(headers), auth=self.auth_for(url), timeout=timeout)

    def get_bytes(
        self,
        url: str,
        name: str,
        *,
        start: int = 0,
        last: int | None = None,
        validator: str | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        """A streaming GET of the stored bytes of `url` from `start` to `last` (inclusive; None: to the end).

        The bytes are asked for exactly as stored (no content encoding: an md5 is of those), with a ``Range``
        unless the whole file is asked for, and ``If-Range: validator`` when given (a changed file then comes
        whole, with 200).

        Args:
            url: What to fetch.
            name: The file, for messages.
            start: The first byte.
            last: The last byte, or None for the end of the file.
            validator: The ETag the range must be of.
            timeout: Seconds to wait to connect and for each read; defaults to the client's timeout.

        Returns:
            The response, its status not checked and its body not read yet.

        Raises:
            Retryable: the connection could not be made.
        """
        headers = {"Accept-Encoding": "identity"}
        if start or last is not None:
            headers["Range"] = f"bytes={start}-{'' if last is None else last}"
            if validator:
                headers["If-Range"] = validator
        try:
            return self.stream_get(url, headers, timeout=timeout)
        except BROKEN_CONNECTION as exc:
            raise connection_failure(name, exc) from None

    def read_range(
        self,
        url: str,
        name: str,
        start: int,
        end: int | None,
        *,
        check: Callable[[HTTPResponse], None] | None = None,
    ) -> bytes:
        """Bytes ``[start, end)`` of `url` (`end` None: to its end) with one ranged GET, retried like a download.

        Args:
            url: What to read.
            name: The file, for messages.
            start: The first byte.
            end: One past the last byte, or None.
            check: Called with each successful answer before its body is read (it may raise).

        Returns:
            The bytes; empty when there is nothing at or after `start` (416).

        Raises:
            TransportError: the server could not be reached, or kept breaking the connection.
            APIError: the server refused the read, or kept failing.
        """
        backoff = Backoff(self.retry, f"read of {name}", deadline=self.timeout)
        while True:
            try:
                last = None if end is None else end - 1
                response = self.get_bytes(url, name, start=start, last=last, timeout=backoff.attempt_timeout())
                with response:
                    if response.status_code == 416:  # nothing at or after `start`
                        return b""
                    check_status(response, name)
                    if check is not None:
                        check(response)
                    got = _read_range(response, start, end)
                    if got is not None:
                        return got
                raise Retryable(TransportError(f"{name}: the connection broke in the middle of a read"))
            except Retryable as exc:
                exc.wait(backoff)

    def direct_pool(self, url: str) -> urllib3.HTTPConnectionPool | None:
        """The connection pool of the session's adapter for `url`'s origin, for requests that skip requests'
        per-call machinery; None when that origin goes through a proxy (or an adapter of another kind)."""
        key = origin(url)
        with self._pool_lock:
            if key in self._direct_pools:
                return self._direct_pools[key]
        settings = self.session.merge_environment_settings(url, {}, True, None, None)
        pool = None
        if not requests.utils.select_proxy(url, settings.get("proxies") or {}):
            adapter = self.session.get_adapter(url)
            if isinstance(adapter, HTTPAdapter):
                probe = requests.PreparedRequest()
                probe.url = url
                verify = settings.get("verify")
                host, pool_kwargs = adapter.build_connection_pool_key_attributes(
                    probe, True if verify is None else verify, None
                )
                pool = adapter.poolmanager.connection_from_host(**host, pool_kwargs=pool_kwargs)
                # What requests' send() does to a pool before each request: its CA bundle (certifi's for
                # verify=True), not OpenSSL's defaults, so the fast path trusts exactly what requests trusts.
                adapter.cert_verify(pool, url, True if verify is None else verify, None)  # type: ignore[no-untyped-call]
        with self._pool_lock:
            self._direct_pools[key] = pool
        return pool

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
