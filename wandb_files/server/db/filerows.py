"""Writing file rows: the one place that adds, replaces and deletes them and keeps runs.file_count right.

Every function here runs inside `write_transaction` after `lock_runs` took the run's row lock, so on
PostgreSQL two writers of one run queue up (SQLite's write lock covers the whole database anyway).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Row, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..mediatypes import guess_mimetype
from ..storage import BlobStore
from .database import lock_runs, write_transaction
from .models import File, PendingUpload, Run, utcnow

if TYPE_CHECKING:
    from sqlalchemy import CursorResult


class PathClash(ValueError):
    """A name cannot live beside a file the run already has: ``a`` and ``a/b`` cannot both be files."""

    def __init__(self, name: str, other: str) -> None:
        if other.startswith(name + "/"):
            why = f"the run has files inside a folder {name!r}, such as {other!r}"
        else:
            why = f"the run has a file {other!r} where a folder of that name would be"
        super().__init__(f"file name {name!r} clashes with the run's files: {why}; no file system holds both")
        self.name = name
        self.other = other


def _folders(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def find_clashes(session: Session, run_id: int, names: list[str]) -> list[PathClash]:
    """The names that could not be downloaded beside the run's files or each other (``a`` beside ``a/b``).

    A name that exists already is no clash: storing it replaces that file.
    """
    wanted = set(names)
    clashes: dict[str, PathClash] = {}
    folders = {folder: name for name in names for folder in _folders(name)}
    for folder, name in folders.items():
        if folder in wanted:
            clashes.setdefault(name, PathClash(name, folder))
    # Top-level names have no folders to look up: no query (a round trip, on PostgreSQL) for them.
    existing = (
        set(session.scalars(select(File.name).where(File.run_id == run_id, File.name.in_(folders))))
        if folders
        else set()
    )
    for folder in existing:
        clashes.setdefault(folders[folder], PathClash(folders[folder], folder))
    for name in names:
        if name in clashes:
            continue
        # Names inside folder `name` sort between "name/" and "name0" ('0' follows '/'), byte-wise on both
        # databases: one step on the (run_id, name) index.
        inside = session.scalar(
            select(File.name).where(File.run_id == run_id, File.name >= name + "/", File.name < name + "0").limit(1)
        )
        if inside is not None:
            clashes[name] = PathClash(name, inside)
    return [clashes[name] for name in names if name in clashes]


def store_file(session: Session, run_id: int, name: str, blob_key: str, size: int, md5_b64: str) -> str | None:
    """Point file `name` of run `run_id` at `blob_key` (adding the row if new); return the replaced blob key.

    Raises:
        PathClash: the run has a file where a folder of `name` would go, or files inside a folder `name`.
    """
    existing = session.scalar(select(File).where(File.run_id == run_id, File.name == name))
    mimetype = guess_mimetype(name)
    if existing is None:
        clashes = find_clashes(session, run_id, [name])
        if clashes:
            raise clashes[0]
        session.add(
            File(
                run_id=run_id,
                name=name,
                size_bytes=size,
                md5=md5_b64,
                mimetype=mimetype,
                blob_key=blob_key,
                updated_at=utcnow(),
            )
        )
        session.execute(update(Run).where(Run.id == run_id).values(file_count=Run.file_count + 1))
        return None
    old_key = existing.blob_key
    existing.blob_key = blob_key
    existing.size_bytes = size
    existing.md5 = md5_b64
    existing.mimetype = mimetype
    existing.updated_at = utcnow()
    return old_key


def delete_files(session: Session, files: list[File]) -> list[str]:
    """Delete file rows (their runs locked by the caller); return their blob keys."""
    if not files:
        return []
    session.execute(delete(File).where(File.id.in_([f.id for f in files])))
    for run_id, n in Counter(f.run_id for f in files).items():
        session.execute(update(Run).where(Run.id == run_id).values(file_count=Run.file_count - n))
    return [f.blob_key for f in files]


def pending_uploads(
    session: Session, run_id: int, names: list[str]
) -> Sequence[Row[int, str, str, int | None, str | None]]:
    """The pending (S3) uploads of `names` into run `run_id`, newest first: id, name, blob key, declared size
    and declared md5."""
    return session.execute(
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


def forget_pending_upload(session: Session, pending_id: int) -> bool:
    """Delete pending upload `pending_id`; whether this call deleted it (a concurrent one may have first)."""
    result = cast("CursorResult[Any]", session.execute(delete(PendingUpload).where(PendingUpload.id == pending_id)))
    return result.rowcount == 1


def existing_names(session: Session, run_id: int, names: list[str]) -> set[str]:
    """Which of `names` run `run_id` has files of."""
    return set(session.scalars(select(File.name).where(File.run_id == run_id, File.name.in_(names))))


def lock_run(session: Session, run_id: int) -> bool:
    """Lock one run; False when it no longer exists."""
    return bool(lock_runs(session, [run_id]))


def clean_abandoned_uploads(
    sessions: sessionmaker[Session], store: BlobStore, older_than_seconds: int, batch: int = 1000
) -> int:
    """Forget pending uploads whose URL expired long ago, deleting any object that arrived unmarked.

    Returns how many were removed. Safe to run from several server processes at once.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    removed = 0
    while True:
        with sessions() as session, write_transaction(session):
            rows: list[Any] = list(
                session.execute(
                    select(PendingUpload.id, PendingUpload.blob_key)
                    .where(PendingUpload.created_at < cutoff)
                    .limit(batch)
                )
            )
            if not rows:
                return removed
            session.execute(delete(PendingUpload).where(PendingUpload.id.in_([r.id for r in rows])))
        # Rows first, objects after: a crash in between leaves an orphan object, never a row without one.
        for row in rows:
            store.delete(row.blob_key)
        removed += len(rows)
