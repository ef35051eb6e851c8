"""The File type: names, sizes and the download and upload URLs of a run's files."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ariadne import ObjectType

from ...db.database import write_transaction
from ...storage import S3BlobStore
from ..context import FileView, Info, ctx_of
from ..ids import encode_node_id, node_ids_of
from ..planned import plannable
from .common import file_url, quote_path
from .file_mutations import upload_urls

# --- File ------------------------------------------------------------------------------------------

file_type = ObjectType("File")


# Each field has a batch form for planned lists (see planned.py): one pass over a page's files, with the
# request's values looked up once, not once a file.


def _ids(views: Sequence[FileView], info: Info) -> list[str]:
    return node_ids_of("File", [view.file.id for view in views])


@file_type.field("id")
@plannable(batch=_ids)
def resolve_file_id(view: FileView, info: Info) -> str:
    """Opaque file id (deleteFiles takes it)."""
    return encode_node_id("File", view.file.id)


def _names(views: Sequence[FileView], info: Info) -> list[str]:
    return [view.file.name for view in views]


@file_type.field("name")
@plannable(batch=_names)
def resolve_file_name(view: FileView, info: Info) -> str:
    """The path inside the run."""
    return view.file.name


def _urls(views: Sequence[FileView], info: Info, upload: bool | None = None) -> list[str]:
    files_url = f"{ctx_of(info).public_url}/files"
    return [f"{files_url}/{view.url_prefix}/{quote_path(view.file.name)}" for view in views]


@file_type.field("url")
@plannable(when=lambda args: not args.get("upload"), batch=_urls)  # upload URLs may write pending uploads
def resolve_file_url(view: FileView, info: Info, upload: bool | None = None) -> str:
    """The authenticated download URL, or with upload: true a signed upload URL for the same file."""
    ctx = ctx_of(info)
    if upload:
        if not isinstance(ctx.store, S3BlobStore):
            return upload_urls(ctx, ctx.session, view.run.id, [view.file.name])[0]
        # The pending upload is written in a session of its own: this request's session is in the
        # middle of reading the page.
        assert ctx.sessions is not None
        with ctx.sessions() as session, write_transaction(session):
            return upload_urls(ctx, session, view.run.id, [view.file.name])[0]
    return file_url(ctx, view)


def _direct_urls(views: Sequence[FileView], info: Info) -> list[str]:
    ctx = ctx_of(info)
    if isinstance(ctx.store, S3BlobStore):
        presigned_get = ctx.store.presigned_get
        return [presigned_get(view.file.blob_key, view.file.mimetype) for view in views]
    files = [view.file for view in views]
    blobs = [(f.blob_key, f.size_bytes, f.md5, f.mimetype, f.name.rsplit("/", 1)[-1]) for f in files]
    return ctx.signer.blob_urls(f"{ctx.public_url}/blobs/", blobs)


@file_type.field("directUrl")
@plannable(batch=_direct_urls)
def resolve_file_direct_url(view: FileView, info: Info) -> str:
    """A short-lived signed URL of the file's current blob: a presigned GET with S3, else our /blobs URL."""
    ctx = ctx_of(info)
    if isinstance(ctx.store, S3BlobStore):
        return ctx.store.presigned_get(view.file.blob_key, view.file.mimetype)
    file = view.file
    token = ctx.signer.blob_token(
        file.blob_key, size=file.size_bytes, md5=file.md5, mimetype=file.mimetype, filename=file.name.rsplit("/", 1)[-1]
    )
    return f"{ctx.public_url}/blobs/{token}"


def _sizes(views: Sequence[FileView], info: Info) -> list[int]:
    return [view.file.size_bytes for view in views]


@file_type.field("sizeBytes")
@plannable(batch=_sizes)
def resolve_file_size(view: FileView, info: Info) -> int:
    """Size in bytes."""
    return view.file.size_bytes


def _mimetypes(views: Sequence[FileView], info: Info) -> list[str]:
    return [view.file.mimetype for view in views]


@file_type.field("mimetype")
@plannable(batch=_mimetypes)
def resolve_file_mimetype(view: FileView, info: Info) -> str:
    """The MIME type guessed from the name at upload."""
    return view.file.mimetype


def _updated(views: Sequence[FileView], info: Info) -> list[datetime]:
    return [view.file.updated_at for view in views]


@file_type.field("updatedAt")
@plannable(batch=_updated)
def resolve_file_updated_at(view: FileView, info: Info) -> datetime:
    """When the bytes were last stored."""
    return view.file.updated_at


def _md5s(views: Sequence[FileView], info: Info) -> list[str]:
    return [view.file.md5 for view in views]


@file_type.field("md5")
@plannable(batch=_md5s)
def resolve_file_md5(view: FileView, info: Info) -> str:
    """base64 of the binary MD5 digest."""
    return view.file.md5
