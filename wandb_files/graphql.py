"""The GraphQL transport: one `gql` client over one pooled `requests` session, retries, and error mapping.

Everything that talks HTTP to the server goes through `GraphQLClient`: GraphQL calls use `execute`, and byte
transfers borrow its `session` and ask `auth_for(url)` whether a URL may see the API key.
"""

from __future__ import annotations

import logging
import socket
import threading
import typing
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
import urllib3
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.requests import RequestsHTTPTransport
from graphql import ExecutionResult
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth

from wandb_files import queries, redact
from wandb_files._version import __version__
from wandb_files.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    NotGraphQLError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)
from wandb_files.retry import REFUSED_GRACE_SECONDS, RETRYABLE_STATUS, Backoff, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)
redact.install()

USER_AGENT = f"wandb-files/{__version__}"

_CODE_TO_ERROR: dict[str, type[APIError]] = {
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "FORBIDDEN": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "BAD_USER_INPUT": BadRequestError,
    "GRAPHQL_VALIDATION_FAILED": BadRequestError,
    "GRAPHQL_PARSE_FAILED": BadRequestError,
    "INTERNAL": ServerError,
    "INTERNAL_SERVER_ERROR": ServerError,
}
_STATUS_TO_ERROR: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}


def error_for_status(status: int | None) -> type[APIError]:
    """The exception class that stands for an HTTP status."""
    if status is None:
        return APIError
    if status >= 500:
        return ServerError
    return _STATUS_TO_ERROR.get(status, APIError)


def _error_class(errors: list[Any], status: int | None) -> type[APIError]:
    for error in errors:
        code = (error.get("extensions") or {}).get("code") if isinstance(error, Mapping) else None
        if code in _CODE_TO_ERROR:
            return _CODE_TO_ERROR[code]
    return error_for_status(status)


def _messages(errors: list[Any]) -> str:
    return "; ".join(str(e.get("message", e)) if isinstance(e, Mapping) else str(e) for e in errors)


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


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class StreamedResponse:
    """The parts of `requests.Response` that transfers use, over a urllib3 response (see `stream_get`)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.raw = raw
        self.status_code = raw.status
        self.headers = raw.headers
        self.reason = raw.reason

    @property
    def text(self) -> str:
        return self.raw.read(decode_content=True).decode("utf-8", "replace")

    def close(self) -> None:
        self.raw.release_conn()

    def __enter__(self) -> StreamedResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.raw.closed:  # the body was not read to its end: the connection cannot serve another request
            self.raw.close()
        self.raw.release_conn()


#: What byte transfers read: requests' response, or the lean one of the fast path.
HTTPResponse: typing.TypeAlias = "StreamedResponse | requests.Response"


class _HTTPError(Exception):
    """Raised inside the transport for a non-2xx answer, carrying what the mapping needs."""

    def __init__(self, status: int, errors: list[Any], retry_after: float | None, detail: str) -> None:
        super().__init__(status)
        self.status = status
        self.errors = errors
        self.retry_after = retry_after
        self.detail = detail


class _NotGraphQL(Exception):
    """Raised inside the transport for an answer that is not GraphQL's (a web page, plain text, other JSON)."""

    def __init__(self, response: requests.Response, what: str) -> None:
        super().__init__(what)
        self.status = response.status_code
        self.content_type = response.headers.get("Content-Type", "")
        self.url = urlsplit(response.url)._replace(query="", fragment="").geturl()
        self.redirected = bool(response.history)
        self.what = what


#: Statuses that say something about the request or the server whatever the body is: a refused key, a busy or
#: failing server. Any other status without a GraphQL body means the URL is not a GraphQL endpoint.
_STATUS_WITHOUT_BODY = RETRYABLE_STATUS | {401, 403}


def _graphql_body(response: requests.Response) -> tuple[dict[str, Any] | None, str]:
    """The answer as a GraphQL response object (``data`` and/or ``errors``), or None and what it is instead.

    Whatever the content type says: a body that is a GraphQL response is one.
    """
    content_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if not response.content:
        return None, "an empty body"
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        if "html" in content_type:
            return None, "a web page"
        if "json" in content_type:
            return None, "invalid JSON"
        return None, f"a body of type {content_type}" if content_type else "a body without a content type"
    data, errors = (body.get("data"), body.get("errors")) if isinstance(body, dict) else (None, None)
    if not isinstance(errors, (list, type(None))) or not (isinstance(data, dict) or errors):
        return None, "JSON of another shape"
    return body, ""


class _Transport(RequestsHTTPTransport):
    """gql's requests transport over a shared session, keeping the HTTP status of error answers.

    gql would make a session of its own and drop the status of JSON error bodies; we need one pooled session
    for GraphQL and byte transfers, and the status to tell a bad key from a busy server. An answer that is not
    GraphQL's is told apart from one that is (never shown: it may be a whole web page).
    """

    def __init__(self, *, shared_session: requests.Session, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shared_session = shared_session

    def connect(self) -> None:
        self.session = self._shared_session

    def close(self) -> None:
        self.session = None  # the owner of the shared session closes it

    def _prepare_result(self, response: requests.Response) -> Any:
        self.response_headers = response.headers
        body, what = _graphql_body(response)
        status = response.status_code
        if status >= 400:
            if body is None and status not in _STATUS_WITHOUT_BODY:
                raise _NotGraphQL(response, what)
            errors = list((body or {}).get("errors") or [])
            json_detail = "json" in response.headers.get("Content-Type", "")
            detail = response.text.strip()[:200] if body is not None or json_detail else response.reason
            raise _HTTPError(status, errors, parse_retry_after(response.headers), " ".join(detail.split()))
        if body is None:
            raise _NotGraphQL(response, what)
        return ExecutionResult(data=body.get("data"), errors=body.get("errors"), extensions=body.get("extensions"))


def _mount_pool(session: requests.Session, pool_size: int) -> None:
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class _NoAuth(requests.auth.AuthBase):
    """Sends no credentials. As the session's default it stops requests from reading ~/.netrc on every call."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _Session(requests.Session):
    """A `requests` session that reads the environment once per origin, not on every request.

    requests re-reads every environment variable for proxy settings on each call (about half a millisecond,
    as much as a whole small download on loopback). The answer only depends on the origin, so it is cached;
    proxies, `no_proxy` and CA-bundle variables keep their meaning. Credentials from ~/.netrc are never
    added: the API key goes only where `GraphQLClient.auth_for` says, and a presigned URL must carry no
    other credentials.
    """

    _CACHE_LIMIT = 256

    def __init__(self) -> None:
        super().__init__()
        self.auth = _NoAuth()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        text = url.decode() if isinstance(url, bytes) else (url or "")
        key = (_origin(text), tuple(sorted((proxies or {}).items())), stream, verify, cert)
        cached: dict[str, Any] | None = self._environment.get(key)
        if cached is None:
            cached = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            if len(self._environment) < self._CACHE_LIMIT:
                self._environment[key] = cached
        return {name: dict(value) if isinstance(value, dict) else value for name, value in cached.items()}


def make_session(pool_size: int = 16) -> requests.Session:
    """A `requests` session with a connection pool big enough for `pool_size` concurrent transfers."""
    session = _Session()
    _mount_pool(session, pool_size)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class GraphQLClient:
    """A GraphQL client for one server and one API key (what `Api.client` is).

    Args:
        base_url: The server, e.g. ``https://api.wandb.ai``; GraphQL is at ``{base_url}/graphql``.
        api_key: The API key, sent as HTTP Basic auth (user ``api``) to `base_url` only.
        timeout: Seconds one call may take, its retries included (for a transfer: without receiving a byte).
        retry: When to try again after a connection failure, a timeout, 408, 429 or 5xx.
        key_source: Where the key came from, for error messages (never the key itself).
        session: A `requests` session to share; a pooled one is made when omitted.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        key_source: str = "the api_key argument",
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.key_source = key_source
        self.session = session or make_session()
        self._pool_size = 16
        self._pool_lock = threading.Lock()
        self._features: set[str] | None = None
        self._fast_pools: dict[tuple[str, str, int | None], urllib3.HTTPConnectionPool | None] = {}
        self._basic = requests.auth._basic_auth_str("api", api_key)
        self._auth = HTTPBasicAuth("api", api_key)
        transport = _Transport(
            shared_session=self.session,
            url=f"{self.base_url}/graphql",
            auth=self._auth,
            timeout=timeout,
            json_deserialize=orjson.loads,
        )
        self._gql = Client(transport=transport, fetch_schema_from_transport=False)
        self._gql_session = self._gql.connect_sync()  # type: ignore[no-untyped-call]  # gql leaves it unannotated

    def __repr__(self) -> str:
        return f"<GraphQLClient {self.base_url}>"

    def feature_enabled(self, name: str) -> bool:
        """Whether the server advertises an optional feature (`serverInfo.features`); asked once per client.

        A server that does not know `serverInfo` has no optional features.
        """
        with self._pool_lock:
            if self._features is None:
                try:
                    info = self.execute(queries.SERVER_FEATURES).get("serverInfo") or {}
                except BadRequestError:
                    info = {}
                self._features = {f["name"] for f in info.get("features") or [] if f.get("isEnabled")}
            return name in self._features

    def ensure_pool(self, workers: int) -> None:
        """Grow the session's connection pool to keep one connection per concurrent transfer.

        Growing replaces the pool; connections in use finish on the old one.
        """
        with self._pool_lock:
            if workers > self._pool_size:
                _mount_pool(self.session, workers)
                self._pool_size = workers
                self._fast_pools.clear()  # they belonged to the replaced adapter

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

        Raises:
            requests.RequestException, urllib3.exceptions.HTTPError: the connection failed.
        """
        timeout = self.timeout if timeout is None else timeout
        auth = self.auth_for(url)
        pool = self._fast_pool(url)
        if pool is not None:
            parts = urlsplit(url)
            sent: dict[str, Any] = {**self.session.headers, **headers}
            if auth is not None:
                sent["Authorization"] = self._basic
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

    def _fast_pool(self, url: str) -> urllib3.HTTPConnectionPool | None:
        origin = _origin(url)
        with self._pool_lock:
            if origin in self._fast_pools:
                return self._fast_pools[origin]
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
            self._fast_pools[origin] = pool
        return pool

    def auth_for(self, url: str) -> HTTPBasicAuth | None:
        """The API key's auth when `url` is on the server's exact scheme, host and port; otherwise None.

        The key must never travel to another host (a storage bucket, a CDN, a redirect target).
        """
        return self._auth if _origin(url) == _origin(self.base_url) else None

    def execute(
        self,
        document: GraphQLRequest,
        variables: Mapping[str, Any] | None = None,
        *,
        retry_safe: bool | None = None,
    ) -> dict[str, Any]:
        """Run a GraphQL operation and return its `data`.

        Args:
            document: A parsed operation (see `wandb_files.queries`).
            variables: The operation's variables.
            retry_safe: Whether the operation may be sent again after a failure whose outcome is unknown.
                Defaults to True for queries and False for mutations.

        Returns:
            The `data` object of the answer.

        Raises:
            AuthenticationError: the key was missing or refused.
            PermissionDeniedError, NotFoundError, BadRequestError: the server refused the operation.
            ServerError: the server kept failing.
            NotGraphQLError: the base URL answered with something that is not GraphQL (a web page, say).
            TransportError: the server could not be reached after all retries.
        """
        if retry_safe is None:
            retry_safe = not _is_mutation(document)
        request = GraphQLRequest(document, variable_values=dict(variables or {}))
        operation = _operation_name(document)
        backoff = Backoff(self.retry, operation, deadline=self.timeout)
        while True:
            try:
                data: dict[str, Any] = self._gql_session.execute(request, timeout=backoff.attempt_timeout())
                log.debug("%s answered in %.0f ms", operation, backoff.elapsed() * 1000)
                return data
            except TransportQueryError as exc:
                errors = list(exc.errors or [])
                cls = _error_class(errors, None)
                raise cls(self._describe(cls, _messages(errors)), errors=errors) from None
            except _HTTPError as exc:
                cls = _error_class(exc.errors, exc.status)
                message = _messages(exc.errors) if exc.errors else f"HTTP {exc.status}: {exc.detail}"
                error = cls(self._describe(cls, message), status_code=exc.status, errors=exc.errors)
                backoff.failed(error, exc.retry_after, retryable=retry_safe and exc.status in RETRYABLE_STATUS)
            except (TransportConnectionFailed, requests.RequestException) as exc:
                problem, unreachable = connection_problem(exc)
                backoff.failed(
                    TransportError(
                        f"The server at {self.base_url} is not reachable ({problem}; "
                        f"{backoff.failures + 1} attempt(s) in {backoff.elapsed():.1f} s). "
                        "Check the base URL (WANDB_BASE_URL) and that the server is running."
                    ),
                    retryable=retry_safe,
                    within=REFUSED_GRACE_SECONDS if unreachable else None,
                )
            except _NotGraphQL as exc:
                raise self._not_graphql(exc) from None
            except (TransportServerError, TransportProtocolError) as exc:
                raise ServerError(
                    f"{self.base_url} did not answer with GraphQL: {' '.join(str(exc).split())[:200]}"
                ) from None

    def _not_graphql(self, exc: _NotGraphQL) -> NotGraphQLError:
        redirect = f" (after a redirect to {exc.url})" if exc.redirected else ""
        parts = urlsplit(self.base_url)
        hint = f" (such as {parts.scheme}://{parts.netloc})" if parts.path not in ("", "/") else ""
        return NotGraphQLError(
            f"{self.base_url}/graphql answered HTTP {exc.status} with {exc.what}{redirect}, not GraphQL: the base URL "
            f"is likely wrong; it must be the server's API address{hint}, not a web page's",
            status_code=exc.status,
            content_type=exc.content_type,
            url=exc.url,
        )

    def _describe(self, cls: type[APIError], message: str) -> str:
        if cls is AuthenticationError:
            return (
                f"{self.base_url} did not accept the API key from {self.key_source} ({message}). "
                "Check the key, or pass api_key= / set WANDB_API_KEY."
            )
        return message

    def close(self) -> None:
        """Close the pooled connections."""
        self._gql.close_sync()  # type: ignore[no-untyped-call]  # gql leaves it unannotated
        self.session.close()


def _is_mutation(document: GraphQLRequest) -> bool:
    return any(
        getattr(getattr(d, "operation", None), "value", None) == "mutation" for d in document.document.definitions
    )


def _operation_name(document: GraphQLRequest) -> str:
    for d in document.document.definitions:
        name = getattr(d, "name", None)
        if getattr(d, "operation", None) and name is not None:
            return str(name.value)
    return "operation"


def raise_for_status(response: HTTPResponse, what: str) -> None:
    """Raise the mapped `APIError` for a non-2xx byte-transfer response.

    Args:
        response: The response to check.
        what: What was being transferred, for the message (a file name, never a signed URL).

    Raises:
        APIError: a subclass chosen by the status.
    """
    if response.status_code < 400:
        return
    cls = error_for_status(response.status_code)
    detail = response.text.strip()[:200] if "json" in response.headers.get("Content-Type", "") else response.reason
    raise cls(f"{what}: HTTP {response.status_code} {detail}", status_code=response.status_code)
