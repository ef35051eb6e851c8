"""The mutations of files: createRunFiles, markRunFilesUploaded (S3) and deleteFiles."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Any

from ariadne import MutationType
from sqlalchemy.orm import Session

from ...db import access
from ...db.database import lock_runs, write_transaction
from ...db.filerows import (
    FileArrival,
    PathClash,
    delete_files,
    existing_names,
    find_clashes,
    forget_pending_upload,
    pending_uploads,
    store_files,
)
from ...db.models import PendingUpload, utcnow
from ...storage import ObjectInfo, S3BlobStore
from ..context import Info, RequestContext, ctx_of
from ..errors import bad_input, not_found
from ..ids import decode_node_id, encode_node_id
from .common import run_for_input, validate_file_names

mutation = MutationType()


def upload_urls(
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


@mutation.field("createRunFiles")
def resolve_create_run_files(_: None, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    """Signed upload URLs for files of an existing run; nothing is stored until the PUTs (local store) or
    until markRunFilesUploaded (S3)."""
    ctx = ctx_of(info)
    names: list[str] = input["files"]
    validate_file_names(names)
    # Before any lookup: a file over the limit is refused before a byte is sent, in both modes.
    specs = _file_specs(input, names, ctx.max_upload_bytes)
    run_id = run_for_input(ctx, input).id
    clashes = find_clashes(ctx.session, run_id, names)
    if clashes:
        raise bad_input(str(clashes[0]))
    signed = isinstance(ctx.store, S3BlobStore)
    if signed:
        with write_transaction(ctx.session):
            urls = upload_urls(ctx, ctx.session, run_id, names, specs)
    else:
        urls = upload_urls(ctx, ctx.session, run_id, names)
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
def resolve_mark_run_files_uploaded(_: None, info: Info, input: dict[str, Any]) -> dict[str, bool]:
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
    ctx = ctx_of(info)
    names: list[str] = list(dict.fromkeys(input["files"]))
    validate_file_names(names)
    run = run_for_input(ctx, input)
    run_id = run.id
    store = ctx.store
    if not isinstance(store, S3BlobStore):
        _require_files(ctx, run_id, names)
        return {"success": True}

    pending = pending_uploads(ctx.session, run_id, names)
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
        owned: list[FileArrival] = []
        for name, arrived in chosen.items():
            # Whoever deletes the pending row commits it; a concurrent mark of the same upload skips it.
            if not forget_pending_upload(session, arrived.pending_id):
                continue
            assert arrived.md5 is not None
            owned.append(FileArrival(name, arrived.blob_key, arrived.size, arrived.md5))
        for result in store_files(session, run_id, owned):
            if isinstance(result, PathClash):
                raise bad_input(str(result))  # all of this call is rolled back
            if result is not None:
                garbage.append(result)
        for pending_id, key in superseded:
            if forget_pending_upload(session, pending_id):
                garbage.append(key)
    # Objects go only after the rows stopped pointing at them.
    for key in garbage:
        store.delete(key)
    _require_files(ctx, run_id, names)
    return {"success": True}


def _forget_refused(ctx: RequestContext, store: S3BlobStore, refused: list[tuple[str, int, str, str]]) -> None:
    """Delete refused uploads (pending row, then object), then fail the call naming the first.

    Raises:
        ApiError: BAD_USER_INPUT, always.
    """
    owned: list[str] = []
    with write_transaction(ctx.session) as session:
        for _, pending_id, key, _ in refused:
            # Only the call that deletes the row deletes the object: no other can have committed it then.
            if forget_pending_upload(session, pending_id):
                owned.append(key)
    for key in owned:
        store.delete(key)
    name, _, _, why = min(refused)
    raise bad_input(f"{name}: {why}")


def _require_files(ctx: RequestContext, run_id: int, names: list[str]) -> None:
    present = existing_names(ctx.session, run_id, names)
    missing = [n for n in names if n not in present]
    if missing:
        raise not_found(f"no upload of {missing[0]!r} has arrived")


@mutation.field("deleteFiles")
def resolve_delete_files(_: None, info: Info, input: dict[str, Any]) -> dict[str, bool]:
    """Delete files and their blobs, all or nothing."""
    ctx = ctx_of(info)
    ids = {decode_node_id("File", node_id) for node_id in input["files"]}
    project_id = input.get("projectId")
    with write_transaction(ctx.session):
        # Only the viewer's own files are seen at all: another user's file id gets the answer of a missing
        # one, and no lock is taken on another user's run. The runs are locked before the files are read,
        # so a concurrent delete or re-upload is either fully seen or not at all (counters stay right).
        lock_runs(ctx.session, access.owned_files_run_ids(ctx.session, ctx.viewer.id, ids))
        found = access.owned_files_by_id(ctx.session, ctx.viewer.id, ids)
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
