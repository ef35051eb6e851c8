"""What a viewer may see: the lookups and keyset pages shared by the GraphQL resolvers and the web page.

Every lookup starts from the viewer's own entities, so another user's entity, project, run or file is never
found at all: callers answer it exactly as a missing one, and nothing can be probed for existence. Pages are
keyset-paged (never OFFSET): page 2,000 costs what page 1 does.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, contains_eager, lazyload

from .filerows import files_page_statement
from .models import Entity, File, Project, Run

# The page of a run's files lives with the writers of file rows (filerows); re-exported as part of this access path.
__all__ = [
    "files_page_statement",
    "like_pattern_problem",
    "owned_entity",
    "owned_file",
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
    return session.scalar(
        select(File)
        .join(Run, File.run_id == Run.id)
        .join(Project, Run.project_id == Project.id)
        .join(Entity, Project.entity_id == Entity.id)
        .where(
            Entity.name == entity,
            Entity.owner_id == viewer_id,
            Project.name == project,
            Run.name == run,
            File.name == name,
        )
    )


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
