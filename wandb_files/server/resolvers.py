"""The executable GraphQL schema: schema.graphql bound to resolvers (Ariadne, schema-first)."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast
from urllib.parse import quote

from ariadne import MutationType, ObjectType, QueryType, ScalarType, make_executable_schema
from graphql import GraphQLError, GraphQLResolveInfo, GraphQLSchema, IntValueNode, ValueNode
from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .database import lock_runs, write_transaction
from .errors import bad_input, entity_not_found, not_found
from .filerows import PathClash, delete_files, find_clashes, store_file
from .ids import decode_cursor, decode_node_id, encode_cursor, encode_node_id
from .models import Entity, File, PendingUpload, Project, Run, User, utcnow
from .names import InvalidName, validate_file_name, validate_run_or_project_name
from .signing import UrlSigner
from .storage import BlobStore, ObjectInfo, S3BlobStore

if TYPE_CHECKING:
    from sqlalchemy import CursorResult, Delete
    from typing_extensions import TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

SCHEMA_PATH = Path(__file__).parent / "schema.graphql"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 10_000
DEFAULT_PROJECT = "uncategorized"  # W&B's project when none is named
_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits


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


@dataclass(frozen=True)
class FileView:
    """A file row with its run (and through it project and entity), so URLs need no further queries."""

    file: File
    run: Run
    # quote()d "entity/project/run" of the run's /files URLs, computed once per page.
    url_prefix: str


# The `info` every resolver is given: its context is the request's RequestContext (app.py passes one).
# A string: GraphQLResolveInfo cannot be subscripted at run time before graphql-core 3.3, nor on Python 3.10.
_Info: TypeAlias = "GraphQLResolveInfo[RequestContext]"


def _ctx(info: _Info) -> RequestContext:
    return info.context


# --- scalars ---------------------------------------------------------------------------------------

datetime_scalar = ScalarType("DateTime")
int64_scalar = ScalarType("Int64")


@datetime_scalar.serializer
def serialize_datetime(value: datetime) -> str:
    """Naive UTC datetimes as ISO-8601 with a Z."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@int64_scalar.serializer
def serialize_int64(value: int) -> int:
    """Sizes beyond 2**31 as plain JSON integers."""
    return int(value)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_int64_value(value: object) -> int:
    """An Int64 variable: a JSON integer in range (not a bool, float or string).

    Args:
        value: The variable's JSON value.

    Returns:
        The integer.

    Raises:
        GraphQLError: anything else (a GraphQLError, so it is reported as BAD_USER_INPUT).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise GraphQLError(f"Int64 must be a 64-bit integer, not {value!r}")
    return value


# Set by a call, not with the decorator: the decorator is typed to return a Callable[[Any], Any], which would
# hide from parse_int64_literal (and mypy) that this returns an int.
int64_scalar.set_value_parser(parse_int64_value)


@int64_scalar.literal_parser
def parse_int64_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> int:
    """An Int64 written in the document.

    Args:
        node: The literal.
        variables: The request's variables (unused: an Int64 literal holds none).

    Returns:
        The integer.

    Raises:
        GraphQLError: it is not an integer literal in range.
    """
    if not isinstance(node, IntValueNode):
        raise GraphQLError("Int64 must be an integer")
    return parse_int64_value(int(node.value))


# --- helpers ---------------------------------------------------------------------------------------


def _page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise bad_input(f"`first` must be between 0 and {MAX_PAGE_SIZE}, got {first}")
    return first


def _connection(edges: list[dict[str, Any]], *, has_next: bool) -> dict[str, Any]:
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


def _entity_for(ctx: RequestContext, entity_name: str | None) -> Entity:
    """The entity named (or the viewer's own), if the viewer may use it.

    Another user's entity gets the very answer a missing one gets, so names cannot be probed for existence.
    """
    name = entity_name or ctx.viewer.name
    entity = ctx.session.scalar(select(Entity).where(Entity.name == name, Entity.owner_id == ctx.viewer.id))
    if entity is None:
        raise entity_not_found(name)
    return entity


def _project(ctx: RequestContext, entity: Entity, name: str) -> Project | None:
    return ctx.session.scalar(select(Project).where(Project.entity_id == entity.id, Project.name == name))


def _run(ctx: RequestContext, project: Project, name: str) -> Run | None:
    return ctx.session.scalar(select(Run).where(Run.project_id == project.id, Run.name == name))


def _json_object_text(value: object, field: str) -> str:
    """Check a JSONString input holds a JSON object; return it re-serialized compactly."""
    if not isinstance(value, str):
        raise bad_input(f"`{field}` must be a JSON string of an object")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise bad_input(f"`{field}` is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise bad_input(f"`{field}` must be a JSON object")
    return json.dumps(parsed, separators=(",", ":"))


def _check_filters(filters: str | None) -> None:
    # Only the empty filter is implemented; refusing others beats answering with unfiltered runs.
    if filters in (None, ""):
        return
    try:
        parsed = json.loads(filters)
    except ValueError:
        raise bad_input("`filters` is not valid JSON") from None
    if parsed not in ({}, None):
        raise bad_input("`filters` other than {} are not supported")


def _check_like_pattern(pattern: str) -> None:
    escaped = False
    for ch in pattern:
        escaped = not escaped and ch == "\\"
    if escaped:
        raise bad_input("`pattern` ends with an unpaired backslash")


def _files_url_prefix(run: Run) -> str:
    return "/".join(quote(p, safe="") for p in (run.project.entity.name, run.project.name, run.name))


def _file_url(ctx: RequestContext, view: FileView) -> str:
    return f"{ctx.public_url}/files/{view.url_prefix}/{quote(view.file.name, safe='/')}"


def _upload_urls(
    ctx: RequestContext,
    session: Session,
    run_id: int,
    names: list[str],
    specs: dict[str, tuple[int, str]] | None = None,
) -> list[str]:
    """Upload URLs for `names` of a run, in order.

    Local store: our signed /uploads URL, whose PUT stores and commits the file. S3: a presigned PUT URL to
    a fresh object key, recorded as a pending upload (in `session`'s write transaction) for
    markRunFilesUploaded to commit; a name with a spec (size, base64 md5) gets a URL signed for exactly
    those bytes, and the spec is recorded with the pending upload.
    """
    if not isinstance(ctx.store, S3BlobStore):
        return [f"{ctx.public_url}/uploads/{ctx.signer.upload_token(run_id, name)}" for name in names]
    specs = specs or {}
    now = utcnow()
    keys = [uuid.uuid4().hex for _ in names]
    session.add_all(
        PendingUpload(
            run_id=run_id,
            name=name,
            blob_key=key,
            created_at=now,
            declared_size=specs[name][0] if name in specs else None,
            declared_md5=specs[name][1] if name in specs else None,
        )
        for name, key in zip(names, keys, strict=True)
    )
    urls = []
    for name, key in zip(names, keys, strict=True):
        size, md5 = specs.get(name, (None, None))
        urls.append(ctx.store.presigned_put(key, size=size, md5_b64=md5))
    return urls


def _file_specs(input: dict[str, Any], names: list[str], max_upload_bytes: int | None) -> dict[str, tuple[int, str]]:
    """The fileSpecs of a createRunFiles input, by name: (size, base64 md5).

    Raises:
        ApiError: BAD_USER_INPUT for a spec of a name not in `files`, a name given twice, a negative size or
            one above the upload limit, or an md5 that is not the base64 of 16 bytes.
    """
    specs: dict[str, tuple[int, str]] = {}
    wanted = set(names)
    for spec in input.get("fileSpecs") or []:
        name, size, md5 = spec["name"], spec["sizeBytes"], spec["md5"]
        if name not in wanted:
            raise bad_input(f"fileSpecs names {name!r}, which is not in `files`")
        if name in specs:
            raise bad_input(f"fileSpecs names {name!r} twice")
        if size < 0:
            raise bad_input(f"{name}: sizeBytes must not be negative")
        if max_upload_bytes is not None and size > max_upload_bytes:
            raise bad_input(f"{name}: {size} bytes is larger than the limit of {max_upload_bytes} bytes")
        try:
            digest = base64.b64decode(md5, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        # The canonical form only: S3 compares the header, and the value is stored as the file's md5.
        if len(digest) != 16 or base64.b64encode(digest).decode() != md5:
            raise bad_input(f"{name}: md5 must be the base64 of a binary MD5 digest (24 characters)")
        specs[name] = (size, md5)
    return specs


def _name_error(field: str, exc: InvalidName) -> Exception:
    return bad_input(f"invalid {field}: {exc}")


# --- Query -----------------------------------------------------------------------------------------

query = QueryType()


@query.field("viewer")
def resolve_viewer(_: None, info: _Info) -> Viewer:
    """The authenticated user."""
    return _ctx(info).viewer


@query.field("project")
def resolve_project(_: None, info: _Info, name: str, entityName: str | None = None) -> Project | None:
    """A project of an accessible entity, or null."""
    ctx = _ctx(info)
    return _project(ctx, _entity_for(ctx, entityName), name)


@query.field("models")
def resolve_models(
    _: None, info: _Info, entityName: str | None = None, after: str | None = None, first: int | None = None
) -> dict[str, Any]:
    """The projects of an entity (W&B's old word for them is models), keyset-paged by name."""
    ctx = _ctx(info)
    entity = _entity_for(ctx, entityName)
    limit = _page_size(first)
    stmt = select(Project).where(Project.entity_id == entity.id)
    if after is not None:
        stmt = stmt.where(Project.name > decode_cursor("project", after))
    projects = list(ctx.session.scalars(stmt.order_by(Project.name).limit(limit + 1)))
    edges = [{"node": p, "cursor": encode_cursor("project", p.name)} for p in projects[:limit]]
    return _connection(edges, has_next=len(projects) > limit)


MARK_RUN_FILES_UPLOADED = "MARK_RUN_FILES_UPLOADED"
SIGNED_UPLOAD_CHECKSUMS = "SIGNED_UPLOAD_CHECKSUMS"


@query.field("serverInfo")
def resolve_server_info(_: None, info: _Info) -> dict[str, Any]:
    """Local store: no optional features (the upload PUT commits, and our server reads every byte). S3:
    uploads are committed by markRunFilesUploaded, which clients send after their PUTs; and createRunFiles
    signs the URLs of files given a fileSpec for exactly that size and md5."""
    if _ctx(info).store.presigned:
        return {
            "features": [
                {"name": MARK_RUN_FILES_UPLOADED, "isEnabled": True},
                {"name": SIGNED_UPLOAD_CHECKSUMS, "isEnabled": True},
            ]
        }
    return {"features": []}


# --- User / Entity ---------------------------------------------------------------------------------

user_type = ObjectType("User")


@user_type.field("id")
def resolve_user_id(user: Viewer | User, info: _Info) -> str:
    """Opaque user id."""
    return encode_node_id("User", user.id)


@user_type.field("username")
@user_type.field("entity")
def resolve_user_name(user: Viewer | User, info: _Info) -> str:
    """A user's name doubles as username and default entity."""
    return user.name


@user_type.field("email")
def resolve_user_email(user: Viewer | User, info: _Info) -> None:
    """No e-mail addresses are kept."""
    return None


@user_type.field("flags")
def resolve_user_flags(user: Viewer | User, info: _Info) -> str:
    """No feature flags."""
    return "{}"


@user_type.field("apiKeys")
def resolve_user_api_keys(user: Viewer | User, info: _Info) -> dict[str, Any]:
    """Keys are stored only as hashes, so none can be listed (W&B's old keys were their own names)."""
    return {"edges": []}


@user_type.field("teams")
def resolve_user_teams(user: Viewer | User, info: _Info, first: int | None = None) -> dict[str, Any]:
    """The entities the user owns."""
    stmt = select(Entity).where(Entity.owner_id == user.id).order_by(Entity.name)
    if first is not None:
        stmt = stmt.limit(_page_size(first))
    entities = _ctx(info).session.scalars(stmt).all()
    return {"edges": [{"node": e, "cursor": encode_cursor("entity", e.name)} for e in entities]}


entity_type = ObjectType("Entity")


@entity_type.field("id")
def resolve_entity_id(entity: Entity, info: _Info) -> str:
    """Opaque entity id."""
    return encode_node_id("Entity", entity.id)


# --- Project ---------------------------------------------------------------------------------------

project_type = ObjectType("Project")


@project_type.field("id")
def resolve_project_id(project: Project, info: _Info) -> str:
    """Opaque project id."""
    return encode_node_id("Project", project.id)


@project_type.field("internalId")
def resolve_project_internal_id(project: Project, info: _Info) -> str:
    """The integer id as a string."""
    return str(project.id)


@project_type.field("entityName")
def resolve_project_entity_name(project: Project, info: _Info) -> str:
    """The owning entity's name."""
    return project.entity.name


@project_type.field("createdAt")
def resolve_project_created_at(project: Project, info: _Info) -> datetime:
    """Creation time."""
    return project.created_at


@project_type.field("user")
def resolve_project_user(project: Project, info: _Info) -> User | None:
    """The owner of the project's entity."""
    return _ctx(info).session.get(User, project.entity.owner_id)


@project_type.field("isBenchmark")
def resolve_project_is_benchmark(project: Project, info: _Info) -> bool:
    """W&B benchmarks do not exist here."""
    return False


@project_type.field("readOnly")
def resolve_read_only(obj: Any, info: _Info) -> bool:
    """Everything accessible is writable by its owner."""
    return False


@project_type.field("runCount")
def resolve_run_count(project: Project, info: _Info, filters: str | None = None) -> int:
    """The number of runs in the project."""
    _check_filters(filters)
    return _ctx(info).session.scalar(select(func.count()).select_from(Run).where(Run.project_id == project.id)) or 0


@project_type.field("run")
def resolve_project_run(project: Project, info: _Info, name: str) -> Run | None:
    """A run by its run id, or null."""
    return _run(_ctx(info), project, name)


@project_type.field("runs")
def resolve_project_runs(
    project: Project,
    info: _Info,
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
    stmt = select(Run).where(Run.project_id == project.id)
    if after is not None:
        raw = decode_cursor("run", after)
        if not raw.isdigit():
            raise bad_input("invalid cursor")
        stmt = stmt.where(Run.id < int(raw) if newest_first else Run.id > int(raw))
    stmt = stmt.order_by(Run.id.desc() if newest_first else Run.id.asc()).limit(limit + 1)
    runs = list(_ctx(info).session.scalars(stmt))
    edges = [{"node": r, "cursor": encode_cursor("run", str(r.id))} for r in runs[:limit]]
    return _connection(edges, has_next=len(runs) > limit)


# --- Run -------------------------------------------------------------------------------------------

run_type = ObjectType("Run")
run_type.set_field("readOnly", resolve_read_only)
run_type.set_alias("createdAt", "created_at")
run_type.set_alias("heartbeatAt", "heartbeat_at")
run_type.set_alias("updatedAt", "updated_at")
run_type.set_alias("jobType", "job_type")
run_type.set_alias("projectId", "project_id")


@run_type.field("id")
def resolve_run_id(run: Run, info: _Info) -> str:
    """Opaque run id."""
    return encode_node_id("Run", run.id)


@run_type.field("displayName")
def resolve_run_display_name(run: Run, info: _Info) -> str:
    """The display name, defaulting to the run id."""
    return run.display_name or run.name


@run_type.field("config")
def resolve_run_config(run: Run, info: _Info) -> str:
    """The config as a JSON string."""
    return run.config or "{}"


@run_type.field("summaryMetrics")
def resolve_run_summary(run: Run, info: _Info) -> str:
    """The summary as a JSON string."""
    return run.summary or "{}"


@run_type.field("systemMetrics")
def resolve_run_system_metrics(run: Run, info: _Info) -> str:
    """System metrics are not recorded."""
    return "{}"


@run_type.field("tags")
def resolve_run_tags(run: Run, info: _Info) -> list[str]:
    """The tags list."""
    return list(json.loads(run.tags)) if run.tags else []


@run_type.field("sweepName")
@run_type.field("historyKeys")
def resolve_none(obj: Any, info: _Info) -> None:
    """Sweeps and history are not kept by this server."""
    return None


@run_type.field("historyLineCount")
def resolve_history_line_count(run: Run, info: _Info) -> int:
    """No history is kept."""
    return 0


@run_type.field("fileCount")
def resolve_file_count(run: Run, info: _Info) -> int:
    """All files of the run, whatever a files() call filters: a counter kept with the rows, not a COUNT."""
    return run.file_count


@run_type.field("files")
def resolve_run_files(
    run: Run,
    info: _Info,
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
    stmt = files_page_statement(run.id, after_name, limit + 1, names=wanted, pattern=pattern)
    rows = list(_ctx(info).session.scalars(stmt))
    prefix = _files_url_prefix(run)
    edges = [{"node": FileView(f, run, prefix), "cursor": encode_cursor("file", f.name)} for f in rows[:limit]]
    return _connection(edges, has_next=len(rows) > limit)


def files_page_statement(
    run_id: int, after_name: str | None, limit: int, *, names: list[str] | None = None, pattern: str | None = None
) -> Select[File]:
    """One page of a run's files: WHERE run_id = ? AND name > ? ORDER BY name LIMIT ?, which walks the unique
    (run_id, name) index from the cursor on, so page 2,000 costs what page 1 does (never OFFSET)."""
    stmt = select(File).where(File.run_id == run_id)
    if after_name is not None:
        stmt = stmt.where(File.name > after_name)
    if names:
        stmt = stmt.where(File.name.in_(set(names)))
    if pattern is not None:
        stmt = stmt.where(File.name.like(pattern, escape="\\"))
    return stmt.order_by(File.name).limit(limit)


# --- File ------------------------------------------------------------------------------------------

file_type = ObjectType("File")


@file_type.field("id")
def resolve_file_id(view: FileView, info: _Info) -> str:
    """Opaque file id (deleteFiles takes it)."""
    return encode_node_id("File", view.file.id)


@file_type.field("name")
def resolve_file_name(view: FileView, info: _Info) -> str:
    """The path inside the run."""
    return view.file.name


@file_type.field("url")
def resolve_file_url(view: FileView, info: _Info, upload: bool | None = None) -> str:
    """The authenticated download URL, or with upload: true a signed upload URL for the same file."""
    ctx = _ctx(info)
    if upload:
        if not isinstance(ctx.store, S3BlobStore):
            return _upload_urls(ctx, ctx.session, view.run.id, [view.file.name])[0]
        # The pending upload is written in a session of its own: this request's session is in the
        # middle of reading the page.
        assert ctx.sessions is not None
        with ctx.sessions() as session, write_transaction(session):
            return _upload_urls(ctx, session, view.run.id, [view.file.name])[0]
    return _file_url(ctx, view)


@file_type.field("directUrl")
def resolve_file_direct_url(view: FileView, info: _Info) -> str:
    """A short-lived signed URL of the file's current blob: a presigned GET with S3, else our /blobs URL."""
    ctx = _ctx(info)
    if isinstance(ctx.store, S3BlobStore):
        return ctx.store.presigned_get(view.file.blob_key, view.file.mimetype)
    return f"{ctx.public_url}/blobs/{ctx.signer.blob_token(view.file.blob_key)}"


@file_type.field("sizeBytes")
def resolve_file_size(view: FileView, info: _Info) -> int:
    """Size in bytes."""
    return view.file.size_bytes


@file_type.field("mimetype")
def resolve_file_mimetype(view: FileView, info: _Info) -> str:
    """The MIME type guessed from the name at upload."""
    return view.file.mimetype


@file_type.field("updatedAt")
def resolve_file_updated_at(view: FileView, info: _Info) -> datetime:
    """When the bytes were last stored."""
    return view.file.updated_at


@file_type.field("md5")
def resolve_file_md5(view: FileView, info: _Info) -> str:
    """base64 of the binary MD5 digest."""
    return view.file.md5


# --- Mutations -------------------------------------------------------------------------------------

mutation = MutationType()


def _optional_text(inp: dict[str, Any], field: str) -> str | None:
    value = inp.get(field)
    if value is not None and not isinstance(value, str):
        raise bad_input(f"`{field}` must be a string")
    return value


@mutation.field("upsertBucket")
def resolve_upsert_bucket(_: None, info: _Info, input: dict[str, Any]) -> dict[str, Any]:
    """Create the project if needed, then create or update the run."""
    ctx = _ctx(info)
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


@mutation.field("createRunFiles")
def resolve_create_run_files(_: None, info: _Info, input: dict[str, Any]) -> dict[str, Any]:
    """Signed upload URLs for files of an existing run; nothing is stored until the PUTs (local store) or
    until markRunFilesUploaded (S3)."""
    ctx = _ctx(info)
    names: list[str] = input["files"]
    _validate_file_names(names)
    # Before any lookup: a file over the limit is refused before a byte is sent, in both modes.
    specs = _file_specs(input, names, ctx.max_upload_bytes)
    run_id = _run_for_input(ctx, input).id
    clashes = find_clashes(ctx.session, run_id, names)
    if clashes:
        raise bad_input(str(clashes[0]))
    signed = isinstance(ctx.store, S3BlobStore)
    if signed:
        with write_transaction(ctx.session):
            urls = _upload_urls(ctx, ctx.session, run_id, names, specs)
    else:
        urls = _upload_urls(ctx, ctx.session, run_id, names)
    return {
        "runID": encode_node_id("Run", run_id),
        "uploadHeaders": [],
        "files": [
            {
                "name": n,
                "uploadUrl": url,
                # The signed Content-MD5 must be sent; Content-Length is signed too, but every client sets it.
                "uploadHeaders": [f"Content-MD5:{specs[n][1]}"] if signed and n in specs else [],
            }
            for n, url in zip(names, urls, strict=True)
        ],
    }


def _validate_file_names(names: list[str]) -> None:
    for name in names:
        try:
            validate_file_name(name)
        except InvalidName as exc:
            raise bad_input(f"invalid file name {name!r}: {exc}") from None


def _run_for_input(ctx: RequestContext, input: dict[str, Any]) -> Run:
    entity = _entity_for(ctx, input["entityName"])
    project = _project(ctx, entity, input["projectName"])
    run = _run(ctx, project, input["runName"]) if project is not None else None
    if run is None:
        raise not_found(f"run {entity.name}/{input['projectName']}/{input['runName']} not found")
    return run


@dataclass(frozen=True)
class _Arrived:
    """A pending upload whose object exists, as markRunFilesUploaded found it."""

    pending_id: int
    name: str
    blob_key: str
    size: int
    # None until known: from the declaration, the ETag, or (the fallback) by reading the object.
    md5: str | None
    # Set when the bytes must hash to this declared md5 (the store's ETag disagreed with it).
    expected_md5: str | None = None


def _arrival_problem(row: Any, head: ObjectInfo, max_upload_bytes: int | None) -> str | None:
    """Why an arrived object cannot become the file's bytes; None when it can."""
    if max_upload_bytes is not None and head.size > max_upload_bytes:
        return f"upload is larger than the limit of {max_upload_bytes} bytes"
    if row.declared_size is not None and head.size != row.declared_size:
        return f"upload is {head.size} bytes, but {row.declared_size} were declared"
    return None


def _arrived(row: Any, head: ObjectInfo) -> _Arrived:
    """What is known of an acceptable arrived object's md5 without reading it."""
    if row.declared_md5 is not None:
        if head.md5_b64 in (None, row.declared_md5):
            # The URL was signed with this Content-MD5, and S3 checked the bytes against it at the PUT.
            return _Arrived(row.id, row.name, row.blob_key, head.size, row.declared_md5)
        # An ETag that looks like another md5: a store that does not check Content-MD5, or SSE-KMS ETags.
        # Only reading the bytes tells which.
        return _Arrived(row.id, row.name, row.blob_key, head.size, None, expected_md5=row.declared_md5)
    # No declaration (e.g. the real wandb client): a single-part PUT's ETag is the md5; else read the bytes.
    return _Arrived(row.id, row.name, row.blob_key, head.size, head.md5_b64)


@mutation.field("markRunFilesUploaded")
def resolve_mark_run_files_uploaded(_: None, info: _Info, input: dict[str, Any]) -> dict[str, bool]:
    """Commit presigned uploads (S3): for each name, the newest pending upload whose object arrived becomes
    the file's bytes, with the size the store reports, and the md5 declared in createRunFiles' fileSpecs
    (which S3 checked at the PUT), else the md5 of the object's ETag, else of its bytes (read through).
    Replaced and superseded objects are deleted.

    An object larger than the upload limit, of another size than declared, or (when the store's ETag
    disagrees) with bytes of another md5 than declared is deleted with its pending upload, and the call
    fails with BAD_USER_INPUT without committing anything.

    Idempotent: a name whose upload was already committed (by an earlier or concurrent call) succeeds.
    With the local store, PUTs commit by themselves; the call only checks the files exist.
    """
    ctx = _ctx(info)
    names: list[str] = list(dict.fromkeys(input["files"]))
    _validate_file_names(names)
    run = _run_for_input(ctx, input)
    run_id = run.id
    store = ctx.store
    if not isinstance(store, S3BlobStore):
        _require_files(ctx, run_id, names)
        return {"success": True}

    pending = ctx.session.execute(
        select(
            PendingUpload.id,
            PendingUpload.name,
            PendingUpload.blob_key,
            PendingUpload.declared_size,
            PendingUpload.declared_md5,
        )
        .where(PendingUpload.run_id == run_id, PendingUpload.name.in_(names))
        .order_by(PendingUpload.created_at.desc(), PendingUpload.id.desc())
    ).all()
    # Ask the store outside any transaction, all objects at once: HEADs take milliseconds each.
    heads = store.head_many([row.blob_key for row in pending])
    chosen: dict[str, _Arrived] = {}
    superseded: list[tuple[int, str]] = []
    refused: list[tuple[str, int, str, str]] = []  # name, pending id, key, why
    refused_names: set[str] = set()
    for row, head in zip(pending, heads, strict=True):
        if head is None:
            continue  # not uploaded (yet); cleaned up once its URL has long expired
        if row.name in chosen or row.name in refused_names:
            superseded.append((row.id, row.blob_key))
            continue
        problem = _arrival_problem(row, head, ctx.max_upload_bytes)
        if problem is not None:
            refused.append((row.name, row.id, row.blob_key, problem))
            refused_names.add(row.name)
        else:
            chosen[row.name] = _arrived(row, head)
    unknown = [a for a in chosen.values() if a.md5 is None]
    for arrived, md5 in zip(unknown, store.compute_md5_many([a.blob_key for a in unknown]), strict=True):
        if arrived.expected_md5 is not None and md5 != arrived.expected_md5:
            del chosen[arrived.name]
            refused.append(
                (
                    arrived.name,
                    arrived.pending_id,
                    arrived.blob_key,
                    f"upload has md5 {md5}, but {arrived.expected_md5} was declared",
                )
            )
        else:
            chosen[arrived.name] = _Arrived(arrived.pending_id, arrived.name, arrived.blob_key, arrived.size, md5)
    if refused:
        _forget_refused(ctx, store, refused)

    garbage: list[str] = []
    with write_transaction(ctx.session) as session:
        if not lock_runs(session, [run_id]):
            raise not_found("the run no longer exists")
        for name, arrived in chosen.items():
            # Whoever deletes the pending row commits it; a concurrent mark of the same upload skips it.
            if _deleted(session, delete(PendingUpload).where(PendingUpload.id == arrived.pending_id)) != 1:
                continue
            assert arrived.md5 is not None
            try:
                old_key = store_file(session, run_id, name, arrived.blob_key, arrived.size, arrived.md5)
            except PathClash as exc:
                raise bad_input(str(exc)) from None  # all of this call is rolled back
            if old_key is not None:
                garbage.append(old_key)
        for pending_id, key in superseded:
            if _deleted(session, delete(PendingUpload).where(PendingUpload.id == pending_id)) == 1:
                garbage.append(key)
    # Objects go only after the rows stopped pointing at them.
    for key in garbage:
        store.delete(key)
    _require_files(ctx, run_id, names)
    return {"success": True}


def _deleted(session: Session, stmt: Delete) -> int:
    """Run the DELETE `stmt`; how many rows it deleted."""
    # Session.execute is typed to return a Result, which has no rowcount; a DELETE's result is a CursorResult.
    return cast("CursorResult[Unpack[tuple[Any, ...]]]", session.execute(stmt)).rowcount


def _forget_refused(ctx: RequestContext, store: S3BlobStore, refused: list[tuple[str, int, str, str]]) -> None:
    """Delete refused uploads (pending row, then object), then fail the call naming the first.

    Raises:
        ApiError: BAD_USER_INPUT, always.
    """
    owned: list[str] = []
    with write_transaction(ctx.session) as session:
        for _, pending_id, key, _ in refused:
            # Only the call that deletes the row deletes the object: no other can have committed it then.
            if _deleted(session, delete(PendingUpload).where(PendingUpload.id == pending_id)) == 1:
                owned.append(key)
    for key in owned:
        store.delete(key)
    name, _, _, why = min(refused)
    raise bad_input(f"{name}: {why}")


def _require_files(ctx: RequestContext, run_id: int, names: list[str]) -> None:
    present = set(ctx.session.scalars(select(File.name).where(File.run_id == run_id, File.name.in_(names))))
    missing = [n for n in names if n not in present]
    if missing:
        raise not_found(f"no upload of {missing[0]!r} has arrived")


@mutation.field("deleteFiles")
def resolve_delete_files(_: None, info: _Info, input: dict[str, Any]) -> dict[str, bool]:
    """Delete files and their blobs, all or nothing."""
    ctx = _ctx(info)
    ids = {decode_node_id("File", node_id) for node_id in input["files"]}
    project_id = input.get("projectId")
    with write_transaction(ctx.session):
        # Only the viewer's own files are seen at all: another user's file id gets the answer of a missing
        # one, and no lock is taken on another user's run. The runs are locked before the files are read,
        # so a concurrent delete or re-upload is either fully seen or not at all (counters stay right).
        lock_runs(ctx.session, set(ctx.session.scalars(_owned_files(select(File.run_id), ctx, ids).distinct())))
        found = {f.id: (f, r) for f, r in ctx.session.execute(_owned_files(select(File, Run), ctx, ids))}
        missing = sorted(ids - found.keys())
        if missing:
            raise not_found(f"file {encode_node_id('File', missing[0])} not found")
        for file, run in found.values():
            if project_id is not None and run.project_id != project_id:
                raise bad_input(f"file {encode_node_id('File', file.id)} is not in project {project_id}")
        blob_keys = delete_files(ctx.session, [f for f, _ in found.values()])
    # Blobs go only after the rows are gone for good; a crash here leaves orphans, never dangling rows.
    for key in blob_keys:
        ctx.store.delete(key)
    return {"success": True}


def _owned_files(stmt: Select[Unpack[_Ts]], ctx: RequestContext, ids: set[int]) -> Select[Unpack[_Ts]]:
    """`stmt` over the files `ids` that belong to the viewer (joined through run, project and entity)."""
    return (
        stmt.select_from(File)
        .join(Run, File.run_id == Run.id)
        .join(Project, Run.project_id == Project.id)
        .join(Entity, Project.entity_id == Entity.id)
        .where(File.id.in_(ids), Entity.owner_id == ctx.viewer.id)
    )


def build_schema() -> GraphQLSchema:
    """The executable schema from schema.graphql."""
    return make_executable_schema(
        SCHEMA_PATH.read_text(encoding="utf-8"),
        query,
        mutation,
        user_type,
        entity_type,
        project_type,
        run_type,
        file_type,
        datetime_scalar,
        int64_scalar,
    )
