"""The Query root: viewer, project, models (projects), serverInfo."""

from __future__ import annotations

from typing import Any

from ariadne import QueryType

from ...db import access
from ...db.models import Project
from ..context import Info, Viewer, ctx_of
from ..ids import decode_cursor, encode_cursor
from .common import entity_for, page_connection, page_size

# --- Query -----------------------------------------------------------------------------------------

query = QueryType()


@query.field("viewer")
def resolve_viewer(_: None, info: Info) -> Viewer:
    """The authenticated user."""
    return ctx_of(info).viewer


@query.field("project")
def resolve_project(_: None, info: Info, name: str, entityName: str | None = None) -> Project | None:
    """A project of an accessible entity, or null."""
    ctx = ctx_of(info)
    project = access.owned_project(ctx.session, ctx.viewer.id, entityName or ctx.viewer.name, name)
    if project is None:
        entity_for(ctx, entityName)  # an entity missing or not the viewer's is an error, a missing project null
    return project


@query.field("models")
def resolve_models(
    _: None, info: Info, entityName: str | None = None, after: str | None = None, first: int | None = None
) -> dict[str, Any]:
    """The projects of an entity (W&B's old word for them is models), keyset-paged by name."""
    ctx = ctx_of(info)
    entity = entity_for(ctx, entityName)
    limit = page_size(first)
    after_name = decode_cursor("project", after) if after is not None else None
    projects = access.projects_page(ctx.session, entity.id, after_name, limit + 1)
    edges = [{"node": p, "cursor": encode_cursor("project", p.name)} for p in projects[:limit]]
    return page_connection(edges, has_next=len(projects) > limit)


MARK_RUN_FILES_UPLOADED = "MARK_RUN_FILES_UPLOADED"
SIGNED_UPLOAD_CHECKSUMS = "SIGNED_UPLOAD_CHECKSUMS"


@query.field("serverInfo")
def resolve_server_info(_: None, info: Info) -> dict[str, Any]:
    """Local store: no optional features (the upload PUT commits, and our server reads every byte). S3:
    uploads are committed by markRunFilesUploaded, which clients send after their PUTs; and createRunFiles
    signs the URLs of files given a fileSpec for exactly that size and md5."""
    if ctx_of(info).store.presigned:
        return {
            "features": [
                {"name": MARK_RUN_FILES_UPLOADED, "isEnabled": True},
                {"name": SIGNED_UPLOAD_CHECKSUMS, "isEnabled": True},
            ]
        }
    return {"features": []}
