"""POST /graphql: authenticate, then execute the request's document against the schema."""

from __future__ import annotations

import json
import logging
from typing import Any

from ariadne import graphql_sync
from graphql import Executor, GraphQLError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..db.database import StatementDeadline
from ..graphql.context import RequestContext
from ..graphql.documents import QueryDepthRule
from ..graphql.errors import UNAUTHENTICATED, error_body, format_error
from ..graphql.planned import PlannedExecutor
from ..graphql.unimplemented import explain_unimplemented
from .auth import api_key_from_authorization
from .readahead import Queries, TimeLimitExceeded
from .state import ServerState, read_body

__all__ = ["GraphQLEndpoint"]

MAX_GRAPHQL_BODY_BYTES = 10 * 1024 * 1024

logger = logging.getLogger(__name__)
# Ariadne logs every GraphQL error, including expected ones, with tracebacks; format_error logs the
# unexpected ones instead, so Ariadne's own logging goes to a silenced logger.
_ariadne_logger = logging.getLogger("wandb_files.server.ariadne")
_ariadne_logger.propagate = False
_ariadne_logger.addHandler(logging.NullHandler())


_VALIDATION_RULES = (QueryDepthRule,)


class GraphQLEndpoint(ServerState):
    """The GraphQL route."""

    # Executes every request (http/readahead.py): where it runs, and the pages read ahead.
    queries: Queries

    def __post_init__(self) -> None:
        super().__post_init__()
        self.queries = Queries(
            self.execute_graphql,
            self.documents,
            self.config,
            self.engine,
            self.store,
            idle=lambda: self.requests_in_flight <= 1,  # only the request asking
        )
        if self.queries.off_reason is not None:
            logger.debug("no read-ahead: %s", self.queries.off_reason)

    def execute_graphql(
        self,
        api_key: str,
        body: dict[str, Any],
        public_url: str,
        executor_class: type[Executor[Any]] = PlannedExecutor,
        *,
        deadline: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Authenticate and execute one GraphQL request (one session).

        Args:
            api_key: The request's API key.
            body: The request's JSON body (query, variables, operationName).
            public_url: The base of the absolute URLs in the answer.
            executor_class: graphql-core's executor to run the document with (the tests compare the two).
            deadline: Abort the request's SQLite statements past this moment (`time.monotonic()`): it is
                executing on the event loop.

        Returns:
            The HTTP status and the GraphQL result.

        Raises:
            TimeLimitExceeded: a statement ran past `deadline` (nothing was written: queries only read).
        """
        with self.sessions() as session:
            if deadline is None:
                return self._execute_in(session, api_key, body, public_url, executor_class, None)
            limit = StatementDeadline(deadline)
            try:
                with limit.over(session):
                    return self._execute_in(session, api_key, body, public_url, executor_class, limit)
            except OperationalError:
                if limit.passed:  # authentication's own statement was the one aborted
                    raise TimeLimitExceeded from None
                raise

    def _execute_in(
        self,
        session: Session,
        api_key: str,
        body: dict[str, Any],
        public_url: str,
        executor_class: type[Executor[Any]],
        limit: StatementDeadline | None,
    ) -> tuple[int, dict[str, Any]]:
        viewer = self.viewer(session, api_key)
        if viewer is None:
            return 401, error_body(UNAUTHENTICATED, "the API key is not valid")
        ctx = RequestContext(
            session=session,
            viewer=viewer,
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
            error_formatter=format_error if limit is None else _quiet_when_aborted(limit),
            execution_context_class=executor_class,
        )
        errors = result.get("errors") or []
        executed = "data" in result and (result["data"] is not None or any("path" in e for e in errors))
        if not executed:
            result = explain_unimplemented(body, result) or result
        if limit is not None and limit.passed:  # a resolver's statement was aborted: its error is not the answer
            raise TimeLimitExceeded
        return (200 if executed else 400), result

    async def graphql(self, request: Request) -> Response:
        """POST /graphql."""
        api_key = api_key_from_authorization(request.headers.get("authorization"))
        if api_key is None:
            return JSONResponse(error_body(UNAUTHENTICATED, "an API key is missing (HTTP Basic auth)"), 401)
        raw = await read_body(request, MAX_GRAPHQL_BODY_BYTES)
        if raw is None:
            return JSONResponse(error_body("BAD_USER_INPUT", "request body too large"), 413)
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse(error_body("BAD_USER_INPUT", "request body is not valid JSON"), 400)
        if not isinstance(body, dict):
            return JSONResponse(error_body("BAD_USER_INPUT", "request body must be a JSON object"), 400)
        return await self.queries.respond(api_key, body, self.public_url(request))


def _quiet_when_aborted(limit: StatementDeadline) -> Any:
    """format_error, except once a statement was aborted past the deadline: its errors are not logged (the
    query is executed again in a thread)."""

    def formatted(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
        if limit.passed:
            return {"message": "aborted"}
        return format_error(error, debug)

    return formatted
