"""What every resolver of one GraphQL request is given: the viewer, the session, the stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeAlias

from graphql import GraphQLResolveInfo
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import Run
from ..signing import UrlSigner
from ..storage import BlobStore


@dataclass(frozen=True)
class Viewer:
    """The authenticated user, as plain values (immune to session expiry)."""

    id: int
    name: str
    admin: bool


@dataclass
class RequestContext:
    """What every resolver of one GraphQL request shares."""

    session: Session
    viewer: Viewer
    signer: UrlSigner
    store: BlobStore
    public_url: str
    # For writes that must not disturb the request's own session (upload URLs handed out inside a query).
    sessions: sessionmaker[Session] | None = None
    max_upload_bytes: int | None = None


class FileRow(NamedTuple):
    """The columns of a file row that its GraphQL fields read (a listing selects only these, no ORM objects)."""

    id: int
    name: str
    size_bytes: int
    md5: str
    mimetype: str
    blob_key: str
    updated_at: datetime


class FileView(NamedTuple):
    """A file row with its run (and through it project and entity), so URLs need no further queries."""

    file: FileRow
    run: Run
    # quote()d "entity/project/run" of the run's /files URLs, computed once per page.
    url_prefix: str


# The `info` every resolver is given: its context is the request's RequestContext (app.py passes one).
# A string: GraphQLResolveInfo cannot be subscripted at run time before graphql-core 3.3, nor on Python 3.10.
Info: TypeAlias = "GraphQLResolveInfo[RequestContext]"


def ctx_of(info: Info) -> RequestContext:
    return info.context
