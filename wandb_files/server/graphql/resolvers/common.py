"""What the resolvers of several types share: paging, entity/project/run lookups, input checks."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from ...db import access
from ...db.models import Entity, Project, Run
from ...names import InvalidName, validate_file_name
from ..context import FileView, RequestContext
from ..errors import bad_input, entity_not_found, not_found

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 10_000


# --- helpers ---------------------------------------------------------------------------------------


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise bad_input(f"`first` must be between 0 and {MAX_PAGE_SIZE}, got {first}")
    return first


def page_connection(edges: list[dict[str, Any]], *, has_next: bool) -> dict[str, Any]:
    """A Relay connection of keyset-paged edges (only forward paging exists)."""
    return {
        "edges": edges,
        "pageInfo": {
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": has_next,
            "hasPreviousPage": False,
        },
    }


def entity_for(ctx: RequestContext, entity_name: str | None) -> Entity:
    """The entity named (or the viewer's own), if the viewer may use it.

    Another user's entity gets the very answer a missing one gets, so names cannot be probed for existence.
    """
    name = entity_name or ctx.viewer.name
    entity = access.owned_entity(ctx.session, ctx.viewer.id, name)
    if entity is None:
        raise entity_not_found(name)
    return entity


def find_project(ctx: RequestContext, entity: Entity, name: str) -> Project | None:
    return access.project_named(ctx.session, entity.id, name)


def find_run(ctx: RequestContext, project: Project, name: str) -> Run | None:
    return access.run_named(ctx.session, project.id, name)


def json_object_text(value: object, field: str) -> str:
    """Check a JSONString input holds a JSON object; return it re-serialized compactly.

    NaN and ±Infinity, which Python clients (W&B's included) write for such floats, stay numbers (Python's
    literals), so filters and orders treat them as MongoDB does (db/runvalues.py); the columns are text, and
    both clients read them with json.loads.
    """
    return json.dumps(json_object_arg(value, field), separators=(",", ":"))


def json_object_arg(value: object, field: str) -> dict[str, Any]:
    """The JSON object a JSONString argument holds.

    Raises:
        ApiError: BAD_USER_INPUT naming `field` when `value` is not a JSON text of an object.
    """
    if not isinstance(value, str):
        raise bad_input(f"`{field}` must be a JSON string of an object")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise bad_input(f"`{field}` is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise bad_input(f"`{field}` must be a JSON object")
    return parsed


def check_like_pattern(pattern: str) -> None:
    problem = access.like_pattern_problem(pattern)
    if problem is not None:
        raise bad_input(problem)


def files_url_prefix(run: Run) -> str:
    return "/".join(quote(p, safe="") for p in (run.project.entity.name, run.project.name, run.name))


def quote_path(name: str) -> str:
    """quote(name, safe="/"), with names it leaves as they are (most) answered by one regex match."""
    return name if _UNQUOTED_PATH.fullmatch(name) else quote(name, safe="/")


# What quote(…, safe="/") never changes: ASCII letters and digits, "_.-~", and "/".
_UNQUOTED_PATH = re.compile(r"[A-Za-z0-9_.\-~/]*")


def file_url(ctx: RequestContext, view: FileView) -> str:
    return f"{ctx.public_url}/files/{view.url_prefix}/{quote_path(view.file.name)}"


def _name_error(field: str, exc: InvalidName) -> Exception:
    return bad_input(f"invalid {field}: {exc}")


def optional_text(inp: dict[str, Any], field: str) -> str | None:
    value = inp.get(field)
    if value is not None and not isinstance(value, str):
        raise bad_input(f"`{field}` must be a string")
    return value


def validate_file_names(names: list[str]) -> None:
    for name in names:
        try:
            validate_file_name(name)
        except InvalidName as exc:
            raise bad_input(f"invalid file name {name!r}: {exc}") from None


def run_for_input(ctx: RequestContext, input: dict[str, Any]) -> Run:
    entity = entity_for(ctx, input["entityName"])
    project = find_project(ctx, entity, input["projectName"])
    run = find_run(ctx, project, input["runName"]) if project is not None else None
    if run is None:
        raise not_found(f"run {entity.name}/{input['projectName']}/{input['runName']} not found")
    return run
