"""The Run type (its files connection included) and the upsertBucket mutation."""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from ariadne import MutationType, ObjectType
from sqlalchemy.exc import IntegrityError

from ...db.database import write_transaction
from ...db.filerows import file_page_rows
from ...db.models import File, Project, Run, utcnow
from ...names import InvalidName, validate_run_or_project_name
from ..context import FileRow, FileView, Info, ctx_of
from ..errors import bad_input
from ..ids import cursors_of, decode_cursor, encode_node_id
from .common import (
    _check_like_pattern,
    _connection,
    _entity_for,
    _files_url_prefix,
    _json_object_text,
    _optional_text,
    _page_size,
    _project,
    _run,
)
from .projects import resolve_read_only

DEFAULT_PROJECT = "uncategorized"  # W&B's project when none is named
_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits


# --- Run -------------------------------------------------------------------------------------------

run_type = ObjectType("Run")
run_type.set_field("readOnly", resolve_read_only)
run_type.set_alias("createdAt", "created_at")
run_type.set_alias("heartbeatAt", "heartbeat_at")
run_type.set_alias("updatedAt", "updated_at")
run_type.set_alias("jobType", "job_type")
run_type.set_alias("projectId", "project_id")


@run_type.field("id")
def resolve_run_id(run: Run, info: Info) -> str:
    """Opaque run id."""
    return encode_node_id("Run", run.id)


@run_type.field("displayName")
def resolve_run_display_name(run: Run, info: Info) -> str:
    """The display name, defaulting to the run id."""
    return run.display_name or run.name


@run_type.field("config")
def resolve_run_config(run: Run, info: Info) -> str:
    """The config as a JSON string."""
    return run.config or "{}"


@run_type.field("summaryMetrics")
def resolve_run_summary(run: Run, info: Info) -> str:
    """The summary as a JSON string."""
    return run.summary or "{}"


@run_type.field("systemMetrics")
def resolve_run_system_metrics(run: Run, info: Info) -> str:
    """System metrics are not recorded."""
    return "{}"


@run_type.field("tags")
def resolve_run_tags(run: Run, info: Info) -> list[str]:
    """The tags list."""
    return list(json.loads(run.tags)) if run.tags else []


@run_type.field("sweepName")
@run_type.field("historyKeys")
def resolve_none(obj: Any, info: Info) -> None:
    """Sweeps are not kept by this server, nor history keys."""
    return None


@run_type.field("fileCount")
def resolve_file_count(run: Run, info: Info) -> int:
    """All files of the run, whatever a files() call filters: a counter kept with the rows, not a COUNT."""
    return run.file_count


@run_type.field("files")
def resolve_run_files(
    run: Run,
    info: Info,
    names: list[str | None] | None = None,
    after: str | None = None,
    first: int | None = None,
    pattern: str | None = None,
) -> dict[str, Any]:
    """A page of files ordered by name: one keyset query (never OFFSET), first+1 rows to see if more follow."""
    limit = _page_size(first)
    wanted = [n for n in names or [] if n is not None]
    if pattern == "":
        pattern = None
    if wanted and pattern is not None:
        raise bad_input("`names` and `pattern` cannot be combined")
    if pattern is not None:
        _check_like_pattern(pattern)
    after_name = decode_cursor("file", after) if after is not None else None
    # Only the columns the fields read, as plain tuples: ORM objects cost more than the rest of a page.
    rows = file_page_rows(
        ctx_of(info).session, _FILE_ROW_COLUMNS, run.id, after_name, limit + 1, names=wanted, pattern=pattern
    )
    prefix = _files_url_prefix(run)
    # tuple.__new__ and cursors_of: the namedtuples' and encode_cursor's very values, without a Python frame
    # for each of them (a page makes three a file).
    new = tuple.__new__
    page = [new(FileRow, row) for row in rows[:limit]]
    edges = [
        {"node": new(FileView, (row, run, prefix)), "cursor": cursor}
        for row, cursor in zip(page, cursors_of("file", [row.name for row in page]), strict=True)
    ]
    return _connection(edges, has_next=len(rows) > limit)


_FILE_ROW_COLUMNS = tuple(getattr(File, field) for field in FileRow._fields)


mutation = MutationType()


@mutation.field("upsertBucket")
def resolve_upsert_bucket(_: None, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    """Create the project if needed, then create or update the run."""
    ctx = ctx_of(info)
    try:
        project_name = validate_run_or_project_name(input.get("modelName") or DEFAULT_PROJECT, "modelName")
        run_name = input.get("name")
        if run_name is not None:
            validate_run_or_project_name(run_name, "name")
    except InvalidName as exc:
        raise bad_input(str(exc)) from None
    config = _json_object_text(input["config"], "config") if input.get("config") is not None else None
    summary = (
        _json_object_text(input["summaryMetrics"], "summaryMetrics")
        if input.get("summaryMetrics") is not None
        else None
    )
    state = input.get("state")
    if state is not None and not (isinstance(state, str) and 1 <= len(state) <= 32):
        raise bad_input("`state` must be 1-32 characters")
    tags = input.get("tags")
    updates: dict[str, Any] = {
        "display_name": _optional_text(input, "displayName"),
        "description": _optional_text(input, "description"),
        "notes": _optional_text(input, "notes"),
        "group": _optional_text(input, "groupName"),
        "job_type": _optional_text(input, "jobType"),
        "commit": _optional_text(input, "commit"),
        "config": config,
        "summary": summary,
        "state": state,
        "tags": json.dumps(list(tags)) if tags is not None else None,
        # Sent by the wandb SDK; its other extra fields (id, debug, jobRepo, sweep) are accepted and ignored.
        "host": _optional_text(input, "host"),
        "program": _optional_text(input, "jobProgram"),
    }
    updates = {k: v for k, v in updates.items() if v is not None}

    # One retry: a concurrent upsert may create the same project or run between our check and insert.
    for attempt in range(2):
        try:
            with write_transaction(ctx.session):
                entity = _entity_for(ctx, input.get("entityName"))
                project = _project(ctx, entity, project_name)
                if project is None:
                    project = Project(entity_id=entity.id, name=project_name, created_at=utcnow())
                    ctx.session.add(project)
                    ctx.session.flush()
                name = run_name
                run = _run(ctx, project, name) if name is not None else None
                inserted = run is None
                now = utcnow()
                if run is None:
                    while name is None or _run(ctx, project, name) is not None:
                        name = "".join(secrets.choice(_RUN_ID_ALPHABET) for _ in range(8))
                    run = Run(
                        project_id=project.id,
                        name=name,
                        user_id=ctx.viewer.id,
                        created_at=now,
                        state="running",
                    )
                    ctx.session.add(run)
                for key, value in updates.items():
                    setattr(run, key, value)
                run.updated_at = now
                run.heartbeat_at = now
                ctx.session.flush()
                run_id = run.id
            break
        except IntegrityError:
            if attempt == 1:
                raise
    # Reload with project, entity and user joined, for the answer.
    return {"bucket": ctx.session.get(Run, run_id, populate_existing=True), "inserted": inserted}
