"""POST /graphql: authenticate, then execute the request's document against the schema."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import orjson
from ariadne import graphql_sync
from graphql import Executor
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..graphql.context import RequestContext
from ..graphql.documents import QueryDepthRule
from ..graphql.errors import UNAUTHENTICATED, error_body, format_error
from ..graphql.planned import PlannedExecutor
from ..graphql.unimplemented import explain_unimplemented
from .auth import api_key_from_authorization
from .state import ServerState

MAX_GRAPHQL_BODY_BYTES = 10 * 1024 * 1024
# On an answer that was computed ahead (http/readahead.py): for tests and for whoever wonders.
READ_AHEAD_HEADER = "X-Wandb-Files-Read-Ahead"

logger = logging.getLogger(__name__)
# Ariadne logs every GraphQL error, including expected ones, with tracebacks; format_error logs the
# unexpected ones instead, so Ariadne's own logging goes to a silenced logger.
_ariadne_logger = logging.getLogger("wandb_files.server.ariadne")
_ariadne_logger.propagate = False
_ariadne_logger.addHandler(logging.NullHandler())


_VALIDATION_RULES = (QueryDepthRule,)


class GraphQLEndpoint(ServerState):
    """The GraphQL route."""

    def execute_graphql(
        self,
        api_key: str,
        body: dict[str, Any],
        public_url: str,
        executor_class: type[Executor[Any]] = PlannedExecutor,
    ) -> tuple[int, dict[str, Any]]:
        """Authenticate and execute one GraphQL request (runs in a worker thread, one session).

        Args:
            api_key: The request's API key.
            body: The request's JSON body (query, variables, operationName).
            public_url: The base of the absolute URLs in the answer.
            executor_class: graphql-core's executor to run the document with (the tests compare the two).

        Returns:
            The HTTP status and the GraphQL result.
        """
        with self.sessions() as session:
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
                error_formatter=format_error,
                execution_context_class=executor_class,
            )
        errors = result.get("errors") or []
        executed = "data" in result and (result["data"] is not None or any("path" in e for e in errors))
        if not executed:
            result = explain_unimplemented(body, result) or result
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
        public_url = self.public_url(request)
        if not self._runs_inline(body):
            status, result = await run_in_threadpool(self.execute_graphql, api_key, body, public_url)
            return GraphQLResponse(result, status)
        read_ahead = self.read_ahead
        kept = read_ahead.take(api_key, body, public_url) if read_ahead is not None else None
        if kept is not None:
            status, result, headers = 200, kept, {READ_AHEAD_HEADER: "hit"}
        else:
            status, result = self.execute_graphql(api_key, body, public_url)
            headers = None
        ahead = None
        if read_ahead is not None and status == 200 and self.requests_in_flight <= 1:  # only this one
            document = self.documents.parse(None, {"query": body["query"]})
            ahead = read_ahead.next_request(document, body, result)
        background = BackgroundTask(self._compute_ahead, api_key, ahead, public_url) if ahead is not None else None
        return GraphQLResponse(result, status, headers=headers, background=background)

    async def _compute_ahead(self, api_key: str, body: dict[str, Any], public_url: str) -> None:
        """Execute `body` (the next page of a walk) after this response went out, and keep its answer.

        It runs on the event loop, as inline requests do: under the GIL a thread would finish no sooner, and
        the request it is for waits in the loop meanwhile, to be answered from it.
        """
        await asyncio.sleep(0)  # let the transport send what it could not at once of the page just answered
        read_ahead = self.read_ahead
        if read_ahead is None or self.requests_in_flight > 1:  # others came meanwhile: theirs come first
            return
        try:
            version = read_ahead.data_version()  # before any read: a commit after it makes the answer unusable
            status, result = self.execute_graphql(api_key, body, public_url)
        except Exception:  # the request itself, if it comes, is executed and reports it
            logger.debug("reading ahead failed", exc_info=True)
            return
        if status == 200:
            read_ahead.keep(api_key, body, public_url, version, result)

    def _runs_inline(self, body: dict[str, Any]) -> bool:
        """Whether to execute this request on the event loop rather than in a worker thread.

        A query over SQLite with the local blob store only computes: WAL reads never wait for a writer, and
        no query field writes (upload URLs are signed, not stored). Under the GIL a thread would run it no
        sooner, and its two thread switches cost as much as a small page (measured with
        benchmarks/bench_listing_replay.py). Mutations, and anything over PostgreSQL or S3 (network waits),
        go to the thread pool.
        """
        return (
            self.engine.dialect.name == "sqlite"
            and not self.store.presigned
            and self.documents.is_query(body.get("query"), body.get("operationName"))
        )


class GraphQLResponse(JSONResponse):
    """A JSON response encoded by orjson: the very bytes of Starlette's json.dumps (compact, UTF-8, keys in
    order) for the values GraphQL results hold, several times faster on a page of files."""

    def render(self, content: Any) -> bytes:
        """The UTF-8 JSON text of `content`."""
        return orjson.dumps(content)
