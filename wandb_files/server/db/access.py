"""What a viewer may see: the lookups and keyset pages shared by the GraphQL resolvers and the web page.

Every lookup starts from the viewer's own entities, so another user's entity, project, run or file is never
found at all: callers answer it exactly as a missing one, and nothing can be probed for existence. Pages are
keyset-paged (never OFFSET): page 2,000 costs what page 1 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Select, bindparam, select
from sqlalchemy.orm import Session, contains_eager, lazyload

from .models import Entity, File, Project, Run, User

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

__all__ = [
    "KeyedFile",
    "file_for_key",
    "like_pattern_problem",
    "owned_entity",
    "owned_file",
    "owned_files_by_id",
    "owned_files_run_ids",
    "owned_project",
    "owned_run",
    "owned_run_by_id",
    "project_named",
    "projects_page",
    "run_named",
    "viewer_entities",
]


def viewer_entities(session: Session, viewer_id: int, limit: int | None = None) -> Sequence[Entity]:
    """The entities `viewer_id` owns, by name.

    Args:
        session: An open session.
        viewer_id: The user's row id.
        limit: At most this many (None: all).

    Returns:
        The entities.
    """
    stmt = select(Entity).where(Entity.owner_id == viewer_id).order_by(Entity.name)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()


def owned_entity(session: Session, viewer_id: int, name: str) -> Entity | None:
    """Entity `name` if `viewer_id` owns it, else None (missing or another user's: the same answer).

    Args:
        session: An open session.
        viewer_id: The user's row id.
        name: The entity's name.

    Returns:
        The entity, or None.
    """
    return session.scalar(_OWNED_ENTITY, {"name": name, "owner_id": viewer_id})


def project_named(session: Session, entity_id: int, name: str) -> Project | None:
    """Project `name` of an entity the caller already may see, or None.

    Args:
        session: An open session.
        entity_id: The entity's row id (from `owned_entity`).
        name: The project's name.

    Returns:
        The project, or None.
    """
    return session.scalar(_PROJECT_NAMED, {"entity_id": entity_id, "name": name})


def owned_project(session: Session, viewer_id: int, entity: str, name: str) -> Project | None:
    """Project `name` of entity `entity` if `viewer_id` owns the entity, else None, in one query.

    Args:
        session: An open session.
        viewer_id: The user's row id.
        entity: The entity's name.
        name: The project's name.

    Returns:
        The project (its entity loaded), or None: a missing project, or an entity missing or not the viewer's.
    """
    return session.scalar(_OWNED_PROJECT, {"entity": entity, "owner_id": viewer_id, "name": name})


def run_named(session: Session, project_id: int, name: str) -> Run | None:
    """Run `name` (its run id) of a project the caller already may see, or None.

    Args:
        session: An open session.
        project_id: The project's row id (from `project_named`).
        name: The run id.

    Returns:
        The run, or None.
    """
    return session.scalar(_RUN_NAMED, {"project_id": project_id, "name": name})


# Made once: building a statement costs more than running it, and every GraphQL request looks these up.
_OWNED_ENTITY = select(Entity).where(Entity.name == bindparam("name"), Entity.owner_id == bindparam("owner_id"))
_PROJECT_NAMED = select(Project).where(Project.entity_id == bindparam("entity_id"), Project.name == bindparam("name"))
_OWNED_PROJECT = (
    select(Project)
    .join(Project.entity)
    .options(contains_eager(Project.entity))
    .where(
        Entity.name == bindparam("entity"), Entity.owner_id == bindparam("owner_id"), Project.name == bindparam("name")
    )
)
# The run's project is the one the caller holds (in the session already): taken from there, not joined again.
_RUN_NAMED = (
    select(Run)
    .options(lazyload(Run.project))
    .where(Run.project_id == bindparam("project_id"), Run.name == bindparam("name"))
)


def owned_run(session: Session, viewer_id: int, entity: str, project: str, run: str) -> Run | None:
    """Run `entity/project/run` if `viewer_id` owns its entity, else None.

    Args:
        session: An open session.
        viewer_id: The user's row id.
        entity: The entity's name.
        project: The project's name.
        run: The run id.

    Returns:
        The run (with its project and entity loaded), or None.
    """
    entity_row = owned_entity(session, viewer_id, entity)
    project_row = project_named(session, entity_row.id, project) if entity_row is not None else None
    return run_named(session, project_row.id, run) if project_row is not None else None


def owned_run_by_id(session: Session, viewer_id: int, run_id: int) -> Run | None:
    """The run with row id `run_id` if `viewer_id` owns its entity, else None (missing or another user's).

    Args:
        session: An open session.
        viewer_id: The user's row id.
        run_id: The run's row id (inside its opaque node id).

    Returns:
        The run (with its project and entity loaded), or None.
    """
    return session.scalar(_OWNED_RUN_BY_ID, {"run_id": run_id, "owner_id": viewer_id})


_OWNED_RUN_BY_ID = (
    select(Run)
    .join(Project, Run.project_id == Project.id)
    .join(Entity, Project.entity_id == Entity.id)
    .where(Run.id == bindparam("run_id"), Entity.owner_id == bindparam("owner_id"))
)


def _owned_file(owner: ColumnElement[bool], *columns: Any) -> Select[Any]:
    """The one rule for "may read this file": file `name` of run `entity/project/run` whose entity's owner
    (a user row) matches `owner`. Every way of reaching a file by its path goes through here."""
    return (
        select(*columns)
        .select_from(File)
        .join(Run, File.run_id == Run.id)
        .join(Project, Run.project_id == Project.id)
        .join(Entity, Project.entity_id == Entity.id)
        .join(User, Entity.owner_id == User.id)
        .where(
            owner,
            Entity.name == bindparam("entity"),
            Project.name == bindparam("project"),
            Run.name == bindparam("run"),
            File.name == bindparam("name"),
        )
    )


_OWNED_FILE = _owned_file(User.id == bindparam("owner_id"), File)
# A /files download in one Core query: the key's user and the file, no ORM session and no separate key lookup.
_KEYED_FILE = _owned_file(
    User.api_key_sha256 == bindparam("key_hash"),
    File.name,
    File.blob_key,
    File.md5,
    File.mimetype,
    User.id.label("user_id"),
    User.name.label("user_name"),
    User.admin,
)


def owned_file(session: Session, viewer_id: int, entity: str, project: str, run: str, name: str) -> File | None:
    """File `name` of run `entity/project/run` if `viewer_id` owns the entity, else None.

    Args:
        session: An open session.
        viewer_id: The user's row id.
        entity: The entity's name.
        project: The project's name.
        run: The run id.
        name: The file's name in the run.

    Returns:
        The file row, or None.
    """
    params = {"owner_id": viewer_id, "entity": entity, "project": project, "run": run, "name": name}
    file: File | None = session.scalar(_OWNED_FILE, params)
    return file


class KeyedFile(NamedTuple):
    """A file as a download with an API key finds it: what serving its blob needs, and the key's user."""

    name: str
    blob_key: str
    md5: str
    mimetype: str
    user_id: int
    user_name: str
    admin: bool


def file_for_key(
    connection: Connection, key_hash: str, entity: str, project: str, run: str, name: str
) -> KeyedFile | None:
    """File `name` of run `entity/project/run` if the user holding the key owns the entity, else None (a key
    nobody holds, a missing file and another user's file alike: callers tell 401 from 404 afterwards).

    Args:
        connection: An open connection.
        key_hash: The SHA-256 of the request's API key (`users.hash_api_key`).
        entity: The entity's name.
        project: The project's name.
        run: The run id.
        name: The file's name in the run.

    Returns:
        The file and the key's user, or None.
    """
    params = {"key_hash": key_hash, "entity": entity, "project": project, "run": run, "name": name}
    row = connection.execute(_KEYED_FILE, params).first()
    return KeyedFile(*row) if row is not None else None


def _owned_by_id(stmt: Select[Unpack[_Ts]], viewer_id: int, ids: set[int]) -> Select[Unpack[_Ts]]:
    """`stmt` over the files `ids` that belong to `viewer_id` (joined through run, project and entity)."""
    return (
        stmt.select_from(File)
        .join(Run, File.run_id == Run.id)
        .join(Project, Run.project_id == Project.id)
        .join(Entity, Project.entity_id == Entity.id)
        .where(File.id.in_(ids), Entity.owner_id == viewer_id)
    )


def owned_files_run_ids(session: Session, viewer_id: int, ids: set[int]) -> set[int]:
    """The runs of those files `ids` that `viewer_id` owns (to lock them before reading the files).

    Args:
        session: An open session.
        viewer_id: The user's row id.
        ids: File row ids.

    Returns:
        The run ids.
    """
    return set(session.scalars(_owned_by_id(select(File.run_id), viewer_id, ids).distinct()))


def owned_files_by_id(session: Session, viewer_id: int, ids: set[int]) -> dict[int, tuple[File, Run]]:
    """Those files `ids` that `viewer_id` owns, with their runs; another user's file is left out as a missing one.

    Args:
        session: An open session.
        viewer_id: The user's row id.
        ids: File row ids.

    Returns:
        File id → (file, run).
    """
    return {f.id: (f, r) for f, r in session.execute(_owned_by_id(select(File, Run), viewer_id, ids))}


def projects_page(session: Session, entity_id: int, after_name: str | None, limit: int) -> list[Project]:
    """Up to `limit` projects of an entity after `after_name`, by name.

    Args:
        session: An open session.
        entity_id: The entity's row id.
        after_name: The name of the last project of the previous page, or None for the first page.
        limit: At most this many (ask for one more than shown to learn whether more follow).

    Returns:
        The projects.
    """
    stmt = select(Project).where(Project.entity_id == entity_id)
    if after_name is not None:
        stmt = stmt.where(Project.name > after_name)
    return list(session.scalars(stmt.order_by(Project.name).limit(limit)))


def like_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a LIKE pattern the files listing takes (an unpaired trailing backslash), or None.

    Args:
        pattern: A LIKE pattern (`%`, `_`; backslash escapes).

    Returns:
        The reason, or None when it is fine.
    """
    escaped = False
    for ch in pattern:
        escaped = not escaped and ch == "\\"
    return "`pattern` ends with an unpaired backslash" if escaped else None
