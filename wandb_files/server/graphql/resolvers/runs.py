"""The Run type (its files connection included) and the upsertBucket mutation."""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from ariadne import MutationType, ObjectType
from sqlalchemy.exc import IntegrityError

from ...db import access
from ...db.database import write_transaction
from ...db.filepages import file_page_rows
from ...db.models import File, Project, Run, utcnow
from ...db.runvalues import store_run_values
from ...names import InvalidName, validate_run_or_project_name
from ..context import FileRow, FileView, Info, RequestContext, ctx_of
from ..errors import bad_input, not_found
from ..ids import cursors_of, decode_cursor, decode_node_id, encode_node_id
from .common import (
    check_like_pattern,
    entity_for,
    files_url_prefix,
    find_project,
    find_run,
    json_object_text,
    optional_text,
    page_connection,
    page_size,
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
def resolve_none(obj: Any, info: Info) -> None:
    """Sweeps are not kept by this server."""
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
    limit = page_size(first)
    wanted = [n for n in names or [] if n is not None]
    if pattern == "":
        pattern = None
    if wanted and pattern is not None:
        raise bad_input("`names` and `pattern` cannot be combined")
    if pattern is not None:
        check_like_pattern(pattern)
    after_name = decode_cursor("file", after) if after is not None else None
    # Only the columns the fields read, as plain tuples: ORM objects cost more than the rest of a page.
    rows = file_page_rows(
        ctx_of(info).session, _FILE_ROW_COLUMNS, run.id, after_name, limit + 1, names=wanted, pattern=pattern
    )
    prefix = files_url_prefix(run)
    # tuple.__new__ and cursors_of: the namedtuples' and encode_cursor's very values, without a Python frame
    # for each of them (a page makes three a file).
    new = tuple.__new__
    page = [new(FileRow, row) for row in rows[:limit]]
    edges = [
        {"node": new(FileView, (row, run, prefix)), "cursor": cursor}
        for row, cursor in zip(page, cursors_of("file", [row.name for row in page]), strict=True)
    ]
    return page_connection(edges, has_next=len(rows) > limit)


_FILE_ROW_COLUMNS = tuple(getattr(File, field) for field in FileRow._fields)


mutation = MutationType()

# W&B's run states (Run.state); anything else is refused rather than stored.
RUN_STATES = frozenset(("running", "finished", "crashed", "failed", "killed", "preempting", "preempted", "pending"))
MAX_TAG_LENGTH = 256
MAX_TAGS = 1_000

# Optional text inputs and the columns they set. An empty string clears the column.
_TEXT_FIELDS = {
    "displayName": "display_name",
    "description": "description",
    "notes": "notes",
    "groupName": "group",
    "jobType": "job_type",
    "commit": "commit",
    # Sent by the wandb SDK (wandb-core) with every upsert.
    "host": "host",
    "jobProgram": "program",
}


def normalized_config_text(value: object) -> str:
    """The config input as stored: W&B's wire form ``{"key": {"value": v, "desc": ...}}``.

    A top-level entry that is not an object with a "value" key becomes ``{"value": entry}``, so every stored
    entry has its value at ``$.key.value`` whichever client wrote it (the run filters rely on that).
    """
    config = json.loads(json_object_text(value, "config"))
    wrapped = {
        key: entry if isinstance(entry, dict) and "value" in entry else {"value": entry}
        for key, entry in config.items()
    }
    return json.dumps(wrapped, separators=(",", ":"))


def _upsert_updates(input: dict[str, Any]) -> dict[str, Any]:
    """The columns an upsertBucket input sets, checked (BAD_USER_INPUT naming the field otherwise)."""
    updates: dict[str, Any] = {}
    for field, column in _TEXT_FIELDS.items():
        text = optional_text(input, field)
        if text is not None:
            updates[column] = text or None
    if input.get("config") is not None:
        updates["config"] = normalized_config_text(input["config"])
    if input.get("summaryMetrics") is not None:
        # The whole summary: W&B's clients send all of it (HTTPSummary writes its full dict), so it replaces.
        updates["summary"] = json_object_text(input["summaryMetrics"], "summaryMetrics")
    state = input.get("state")
    if state is not None:
        if state not in RUN_STATES:
            raise bad_input(f"`state` must be one of {', '.join(sorted(RUN_STATES))}, got {state!r}")
        updates["state"] = state
    tags = input.get("tags")
    if tags is not None:
        if len(tags) > MAX_TAGS:
            raise bad_input(f"`tags` holds more than {MAX_TAGS} tags")
        for tag in tags:
            if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH:
                raise bad_input(f"`tags` must be strings of 1 to {MAX_TAG_LENGTH} characters, got {tag!r}")
        updates["tags"] = json.dumps(list(tags))
    return updates


def _run_by_node_id(ctx: RequestContext, input: dict[str, Any]) -> Run:
    """The run `input["id"]` names, if the viewer owns it; NOT_FOUND otherwise (another user's run included)."""
    node_id = input["id"]
    run = access.owned_run_by_id(ctx.session, ctx.viewer.id, decode_node_id("Run", node_id))
    if run is None:
        raise not_found(f"run {node_id} not found")
    named = {"name": run.name, "modelName": run.project.name, "entityName": run.project.entity.name}
    for field, actual in named.items():
        given = input.get(field)
        if given is not None and given != actual:
            raise bad_input(f"`{field}` {given!r} does not match run {node_id} ({actual!r})")
    return run


@mutation.field("upsertBucket")
def resolve_upsert_bucket(_: None, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    """Update the run `id` names; or create the project if needed, then create or update run `name`."""
    ctx = ctx_of(info)
    by_id = input.get("id") is not None
    try:
        project_name = validate_run_or_project_name(input.get("modelName") or DEFAULT_PROJECT, "modelName")
        run_name = input.get("name")
        if run_name is not None:
            validate_run_or_project_name(run_name, "name")
    except InvalidName as exc:
        raise bad_input(str(exc)) from None
    updates = _upsert_updates(input)

    # One retry: a concurrent upsert may create the same project or run between our check and insert.
    for attempt in range(2):
        try:
            with write_transaction(ctx.session):
                now = utcnow()
                inserted = False
                if by_id:
                    run = _run_by_node_id(ctx, input)
                else:
                    entity = entity_for(ctx, input.get("entityName"))
                    project = find_project(ctx, entity, project_name)
                    if project is None:
                        project = Project(entity_id=entity.id, name=project_name, created_at=now)
                        ctx.session.add(project)
                        ctx.session.flush()
                    name = run_name
                    found = find_run(ctx, project, name) if name is not None else None
                    if found is None:
                        inserted = True
                        while name is None or find_run(ctx, project, name) is not None:
                            name = "".join(secrets.choice(_RUN_ID_ALPHABET) for _ in range(8))
                        found = Run(
                            project_id=project.id,
                            name=name,
                            user_id=ctx.viewer.id,
                            created_at=now,
                            state="running",
                        )
                        ctx.session.add(found)
                    run = found
                for key, value in updates.items():
                    setattr(run, key, value)
                run.updated_at = now
                # The writer of a run (name+project) is its process reporting in; an edit by id (the public
                # API's run.update()) is not a sign of life, so it leaves the heartbeat alone.
                if not by_id or run.heartbeat_at is None:
                    run.heartbeat_at = now
                ctx.session.flush()
                store_run_values(ctx.session, run)  # the run_values rows filters and orders read
                run_id = run.id
            break
        except IntegrityError:
            if attempt == 1 or by_id:
                raise
    # Reload with project, entity and user joined, for the answer.
    return {"bucket": ctx.session.get(Run, run_id, populate_existing=True), "inserted": inserted}
