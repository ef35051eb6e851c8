"""The state all requests of one app share, and the errors that end a non-GraphQL request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from graphql import GraphQLSchema
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..config import ServerConfig
from ..db.users import authenticate, hash_api_key
from ..graphql.context import Viewer
from ..graphql.documents import DocumentCache
from ..signing import ExpiredToken, InvalidToken, UrlSigner
from ..storage import BlobStore
from .cache import TtlCache

_T = TypeVar("_T")


class HttpError(Exception):
    """Ends a non-GraphQL request with a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_error(status: int, message: str) -> JSONResponse:
    """A JSON error answer: ``{"error": message}`` with `status`."""
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytearray | None:
    """The request's whole body, or None as soon as it is longer than `limit` bytes (the rest is not read)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return None
    return raw


@dataclass(frozen=True)
class LocatedFile:
    """What serving a file's blob needs, as a /files lookup found it (and the location cache keeps it)."""

    name: str
    blob_key: str
    md5: str
    mimetype: str


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
    # sha256 of an API key → its user, and (user id, entity, project, run, name) → the file's blob, for
    # config.key_cache_seconds: a revoked key, or a file moved to another blob, is seen within that bound.
    key_users: TtlCache[str, Viewer] = field(init=False)
    locations: TtlCache[tuple[int, str, str, str, str], LocatedFile] = field(init=False)
    # HTTP requests being served by this process, their background work included (app.py counts them):
    # read-ahead runs only in an otherwise idle process.
    requests_in_flight: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.key_users = TtlCache(self.config.key_cache_seconds)
        self.locations = TtlCache(self.config.key_cache_seconds)

    def public_url(self, request: Request) -> str:
        """The base of absolute URLs: --public-url, else the URL this request came in on."""
        return self.config.public_url or str(request.base_url).rstrip("/")

    def viewer(self, session: Session, api_key: str) -> Viewer | None:
        """The user holding `api_key` (None if nobody does): from the key cache, else from the database.

        Args:
            session: Where to look it up on a miss.
            api_key: The key the request came with.

        Returns:
            The user, or None for a key no user holds.
        """
        key_hash = hash_api_key(api_key)
        viewer = self.key_users.get(key_hash)
        if viewer is None:
            user = authenticate(session, api_key)
            if user is None:
                return None
            viewer = Viewer(id=user.id, name=user.name, admin=user.admin)
            self.key_users.put(key_hash, viewer)
        return viewer

    def _read_token(self, read: Callable[[str], _T], token: str) -> _T:
        try:
            return read(token)
        except ExpiredToken:
            raise HttpError(403, "the signed URL has expired") from None
        except InvalidToken:
            raise HttpError(403, "the signed URL is not valid") from None
