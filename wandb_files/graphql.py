"""GraphQL over the client's HTTP layer: one `gql` client on `HTTPClient`'s pooled session, retries, and the
mapping of GraphQL errors to ours.

`GraphQLClient` is an `HTTPClient` (`wandb_files.http`): byte transfers use the same session, the same
`auth_for` and the same failure mapping; this module adds only what is GraphQL's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.requests import RequestsHTTPTransport
from graphql import ExecutionResult

from wandb_files import documents
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
from wandb_files.http import HTTPClient, connection_problem, error_for_status, retryable
from wandb_files.retry import REFUSED_GRACE_SECONDS, RETRYABLE_STATUS, Backoff, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

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


def _error_class(errors: list[Any], status: int | None) -> type[APIError]:
    for error in errors:
        code = (error.get("extensions") or {}).get("code") if isinstance(error, Mapping) else None
        if code in _CODE_TO_ERROR:
            return _CODE_TO_ERROR[code]
    return error_for_status(status)


def _messages(errors: list[Any]) -> str:
    return "; ".join(str(e.get("message", e)) if isinstance(e, Mapping) else str(e) for e in errors)


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


class GraphQLClient(HTTPClient):
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
        super().__init__(base_url, api_key, timeout=timeout, retry=retry, session=session)
        self.key_source = key_source
        self._features: set[str] | None = None
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
                    info = self.execute(documents.SERVER_FEATURES).get("serverInfo") or {}
                except BadRequestError:
                    info = {}
                self._features = {f["name"] for f in info.get("features") or [] if f.get("isEnabled")}
            return name in self._features

    def execute(
        self,
        document: GraphQLRequest,
        variables: Mapping[str, Any] | None = None,
        *,
        retry_safe: bool | None = None,
    ) -> dict[str, Any]:
        """Run a GraphQL operation and return its `data`.

        Args:
            document: A parsed operation (see `wandb_files.documents`).
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
                backoff.failed(error, exc.retry_after, retryable=retry_safe and retryable(exc.status))
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
        super().close()


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
