"""What the wandb SDK (wandb-core) asks about a run it logs: W&B's old names `model`/`bucket` for projects and
runs (the resume query), the streamed files' line counts and tails, and the SDK's own config keys."""

from __future__ import annotations

import json
from typing import Any

from ariadne import ObjectType

from ...db import access
from ...db.models import Entity, Project, Run
from ...db.streams import EVENTS, HISTORY, TAIL_LINES, tail_json
from ..context import Info, ctx_of
from .common import find_run
from .query import query, resolve_project

DEFAULT_PROJECT = "uncategorized"  # W&B's project when none is named

logging_run_type = ObjectType("Run")
logging_run_type.set_alias("historyLineCount", "history_line_count")
logging_run_type.set_alias("eventsLineCount", "events_line_count")
logging_run_type.set_alias("logLineCount", "log_line_count")
logging_run_type.set_alias("exitCode", "exit_code")

logging_project_type = ObjectType("Project")


@query.field("model")
def resolve_model(_: None, info: Info, name: str | None = None, entityName: str | None = None) -> Project | None:
    """A project by W&B's old name for it: null when missing, an error for an entity not the viewer's."""
    project: Project | None = resolve_project(None, info, name or DEFAULT_PROJECT, entityName)
    return project


@query.field("entity")
def resolve_entity(_: None, info: Info, name: str) -> Entity | None:
    """An entity of the viewer's, or null (the SDK asks whether its organization runs on CoreWeave)."""
    ctx = ctx_of(info)
    return access.owned_entity(ctx.session, ctx.viewer.id, name)


@logging_project_type.field("bucket")
def resolve_bucket(project: Project, info: Info, name: str, missingOk: bool | None = None) -> Run | None:
    """A run by its run id, or null (whatever missingOk says: a missing run is never an error here)."""
    return find_run(ctx_of(info), project, name)


@logging_run_type.field("historyTail")
def resolve_history_tail(run: Run, info: Info) -> str:
    """The last history rows: the client resumes its step count from the last one's _step."""
    return tail_json(ctx_of(info).session, run.id, HISTORY, TAIL_LINES) if run.history_line_count else "[]"


@logging_run_type.field("eventsTail")
def resolve_events_tail(run: Run, info: Info) -> str:
    """The last wandb-events.jsonl lines: the client resumes its _runtime from the last one."""
    return tail_json(ctx_of(info).session, run.id, EVENTS, TAIL_LINES) if run.events_line_count else "[]"


@logging_run_type.field("wandbConfig")
def resolve_wandb_config(run: Run, info: Info, keys: list[str] | None = None) -> str:
    """The named keys of the config's `_wandb` value (all when none are named), as a JSON object string.

    The client treats a run whose `_wandb` has no "t" as never started: resuming it starts it afresh.
    """
    try:
        config = json.loads(run.config) if run.config else {}
    except ValueError:
        config = {}
    own: Any = config.get("_wandb") if isinstance(config, dict) else None
    if isinstance(own, dict) and isinstance(own.get("value"), dict):
        own = own["value"]
    if not isinstance(own, dict):
        return "{}"
    return json.dumps({k: v for k, v in own.items() if keys is None or k in keys})


@logging_run_type.field("stopped")
def resolve_stopped(run: Run, info: Info) -> bool:
    """Runs cannot be stopped from this server."""
    return False
