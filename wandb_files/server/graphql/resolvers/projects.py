"""The Project type (its runs connection included)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ariadne import ObjectType
from sqlalchemy import func, select

from ...db import access
from ...db.models import Project, Run, User
from ..context import Info, ctx_of
from ..errors import bad_input
from ..ids import decode_cursor, encode_cursor, encode_node_id
from .common import _check_filters, _connection, _page_size, _run

# --- Project ---------------------------------------------------------------------------------------

project_type = ObjectType("Project")


@project_type.field("id")
def resolve_project_id(project: Project, info: Info) -> str:
    """Opaque project id."""
    return encode_node_id("Project", project.id)


@project_type.field("internalId")
def resolve_project_internal_id(project: Project, info: Info) -> str:
    """The integer id as a string."""
    return str(project.id)


@project_type.field("entityName")
def resolve_project_entity_name(project: Project, info: Info) -> str:
    """The owning entity's name."""
    return project.entity.name


@project_type.field("createdAt")
def resolve_project_created_at(project: Project, info: Info) -> datetime:
    """Creation time."""
    return project.created_at


@project_type.field("user")
def resolve_project_user(project: Project, info: Info) -> User | None:
    """The owner of the project's entity."""
    return ctx_of(info).session.get(User, project.entity.owner_id)


@project_type.field("isBenchmark")
def resolve_project_is_benchmark(project: Project, info: Info) -> bool:
    """W&B benchmarks do not exist here."""
    return False


@project_type.field("readOnly")
def resolve_read_only(obj: Any, info: Info) -> bool:
    """Everything accessible is writable by its owner."""
    return False


@project_type.field("runCount")
def resolve_run_count(project: Project, info: Info, filters: str | None = None) -> int:
    """The number of runs in the project."""
    _check_filters(filters)
    return ctx_of(info).session.scalar(select(func.count()).select_from(Run).where(Run.project_id == project.id)) or 0


@project_type.field("run")
def resolve_project_run(project: Project, info: Info, name: str) -> Run | None:
    """A run by its run id, or null."""
    return _run(ctx_of(info), project, name)


@project_type.field("runs")
def resolve_project_runs(
    project: Project,
    info: Info,
    filters: str | None = None,
    after: str | None = None,
    first: int | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    """A page of runs, keyset-paged on the run row id (creation order)."""
    _check_filters(filters)
    limit = _page_size(first)
    if order in (None, "", "-createdAt", "-created_at"):
        newest_first = True
    elif order in ("+createdAt", "createdAt", "+created_at", "created_at"):
        newest_first = False
    else:
        raise bad_input(f"`order` {order!r} is not supported; use -createdAt or +createdAt")
    after_id = None
    if after is not None:
        raw = decode_cursor("run", after)
        if not raw.isdigit():
            raise bad_input("invalid cursor")
        after_id = int(raw)
    runs = access.runs_page(ctx_of(info).session, project.id, after_id, limit + 1, newest_first=newest_first)
    edges = [{"node": r, "cursor": encode_cursor("run", str(r.id))} for r in runs[:limit]]
    return _connection(edges, has_next=len(runs) > limit)
