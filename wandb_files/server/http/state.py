"""The state all requests of one app share, and the errors that end a non-GraphQL request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from graphql import GraphQLSchema
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..config import ServerConfig
from ..graphql.documents import DocumentCache
from ..signing import ExpiredToken, InvalidToken, UrlSigner
from ..storage import BlobStore

_T = TypeVar("_T")


class _HttpError(Exception):
    """Ends a non-GraphQL request with a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@dataclass
class ServerState:
    """The state shared by all requests of one app."""

    config: ServerConfig
    engine: Engine
    sessions: sessionmaker[Session]
    signer: UrlSigner
    store: BlobStore
    schema: GraphQLSchema
    documents: DocumentCache

    def public_url(self, request: Request) -> str:
        """The base of absolute URLs: --public-url, else the URL this request came in on."""
        return self.config.public_url or str(request.base_url).rstrip("/")

    def _read_token(self, read: Callable[[str], _T], token: str) -> _T:
        try:
            return read(token)
        except ExpiredToken:
            raise _HttpError(403, "the signed URL has expired") from None
        except InvalidToken:
            raise _HttpError(403, "the signed URL is not valid") from None
