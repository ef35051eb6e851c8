"""The Project type (its runs connection included)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ariadne import ObjectType

from ...db import runfilters
from ...db.models import Project, Run, User
from ..context import Info, ctx_of
from ..errors import bad_input
from ..ids import decode_cursor, encode_cursor, encode_node_id
from .common import find_run, page_connection, page_size

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


def _selection(info: Info, filters: str | None, order: str | None = None) -> runfilters.Selection:
    """The checked filter document and order; BAD_USER_INPUT naming the offending path when either is wrong."""
    try:
        return runfilters.selection(filters, order, ctx_of(info).session.get_bind().dialect.name)
    except runfilters.RunFilterError as exc:
        raise bad_input(str(exc)) from None


@project_type.field("runCount")
def resolve_run_count(project: Project, info: Info, filters: str | None = None) -> int:
    """The number of runs in the project that `filters` selects (counted in the database)."""
    sel = _selection(info, filters)
    return runfilters.count_runs(ctx_of(info).session, project.id, sel)


@project_type.field("run")
def resolve_project_run(project: Project, info: Info, name: str) -> Run | None:
    """A run by its run id, or null."""
    return find_run(ctx_of(info), project, name)


@project_type.field("runs")
def resolve_project_runs(
    project: Project,
    info: Info,
    filters: str | None = None,
    after: str | None = None,
    first: int | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    """A page of the runs `filters` selects in `order`, keyset-paged (see db/runfilters.py)."""
    sel = _selection(info, filters, order)
    limit = page_size(first)
    position = None
    if after is not None:
        try:
            position = runfilters.parse_position(sel.order, decode_cursor(_CURSOR_KIND, after))
        except runfilters.RunFilterError as exc:
            raise bad_input(str(exc)) from None
    found = runfilters.runs_page(ctx_of(info).session, project.id, sel, position, limit + 1)
    edges = [
        {"node": run, "cursor": encode_cursor(_CURSOR_KIND, runfilters.position_text(sel.order, pos))}
        for run, pos in found[:limit]
    ]
    return page_connection(edges, has_next=len(found) > limit)


_CURSOR_KIND = "runs"
