"""Writing file rows: the one place that adds, replaces and deletes them and keeps runs.file_count right.

Every function here runs inside `write_transaction` after `lock_runs` took the run's row lock, so on
PostgreSQL two writers of one run queue up (SQLite's write lock covers the whole database anyway).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sqlalchemy import Row, Table, bindparam, delete, insert, select, text, update
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


#: Names a statement looks up at once: well under SQLite's limit on bound values.
_CHUNK = 500

# For each name of a JSON array, the first stored file inside a folder of that name, or NULL. Names inside
# folder `name` sort between "name/" and "name0" ('0' follows '/'), byte-wise on both databases (the name
# column's collation): one step on the (run_id, name) index a name.
_INSIDE_WHERE = "f.run_id = :run_id AND f.name >= n.value || '/' AND f.name < n.value || '0' ORDER BY f.name LIMIT 1"
_INSIDE = {
    "sqlite": text(
        f"SELECT n.value, (SELECT f.name FROM files AS f WHERE {_INSIDE_WHERE}) FROM json_each(:names) AS n"
    ),
    "postgresql": text(
        f"SELECT n.value, (SELECT f.name FROM files AS f WHERE {_INSIDE_WHERE}) "
        "FROM json_array_elements_text(CAST(:names AS json)) AS n(value)"
    ),
}


def _stored_clashes(session: Session, run_id: int, names: Iterable[str]) -> dict[str, PathClash]:
    """The names that clash with files the run has stored: a stored file where a folder of the name would be,
    or stored files inside a folder of that name. Two statements a chunk of names, whatever their number."""
    clashes: dict[str, PathClash] = {}
    names = list(dict.fromkeys(names))
    folders: dict[str, list[str]] = {}
    for name in names:
        for folder in _folders(name):
            folders.setdefault(folder, []).append(name)
    folder_list = list(folders)
    for i in range(0, len(folder_list), _CHUNK):
        chunk = folder_list[i : i + _CHUNK]
        for folder in session.scalars(select(File.name).where(File.run_id == run_id, File.name.in_(chunk))):
            for name in folders[folder]:
                clashes.setdefault(name, PathClash(name, folder))
    unclashed = [name for name in names if name not in clashes]
    if unclashed:
        # One statement of a fixed text for any number of names: building and compiling one of a shape per
        # count cost more than running it.
        inside = _INSIDE[session.get_bind().dialect.name]
        for folder, other in session.execute(inside, {"run_id": run_id, "names": json.dumps(unclashed)}):
            if other is not None:
                clashes[folder] = PathClash(folder, other)
    return clashes


def find_clashes(session: Session, run_id: int, names: list[str]) -> list[PathClash]:
    """The names that could not be downloaded beside the run's files or each other (``a`` beside ``a/b``).

    A name that exists already is no clash: storing it replaces that file.
    """
    wanted = set(names)
    clashes: dict[str, PathClash] = {}
    for name in names:
        for folder in _folders(name):
            if folder in wanted:
                clashes.setdefault(name, PathClash(name, folder))
    for name, clash in _stored_clashes(session, run_id, [n for n in names if n not in clashes]).items():
        clashes.setdefault(name, clash)
    return [clashes[name] for name in names if name in clashes]


_files = cast("Table", File.__table__)
_runs = cast("Table", Run.__table__)
_INSERT_FILES = insert(_files)
_ADD_TO_FILE_COUNT = (
    update(_runs).where(_runs.c.id == bindparam("run")).values(file_count=_runs.c.file_count + bindparam("added"))
)
_REPLACE_FILE = (
    update(_files)
    .where(_files.c.id == bindparam("row"))
    .values(
        blob_key=bindparam("blob_key"),
        size_bytes=bindparam("size_bytes"),
        md5=bindparam("md5"),
        mimetype=bindparam("mimetype"),
        updated_at=bindparam("updated_at"),
    )
)


class FileArrival(NamedTuple):
    """New bytes for a run file: its name, the blob holding them, their size and base64 md5."""

    name: str
    blob_key: str
    size: int
    md5_b64: str


def store_files(session: Session, run_id: int, arrivals: Sequence[FileArrival]) -> list[str | PathClash | None]:
    """Point run `run_id`'s files at the arrivals' blobs, as if each were stored in turn, in a few statements.

    Stored in turn means: a name that clashes (with the run's files or an earlier arrival) fails alone and the
    others are stored; of ``a`` and ``a/b`` in one call, the later one fails; a name arriving twice ends with the
    later blob, and the later arrival reports the earlier one's blob as replaced, so every blob that no row
    points at is reported once.

    Args:
        session: Inside `write_transaction`, the run locked (`lock_runs`).
        run_id: The run's row id.
        arrivals: The files, in the order they arrived.

    Returns:
        For each arrival, in order: the blob key it replaced (to delete after the commit), None for a new
        file, or the PathClash that kept it out (its own blob is then unused).
    """
    if not arrivals:
        return []
    names = list(dict.fromkeys(a.name for a in arrivals))
    stored: dict[str, tuple[int, str]] = {}
    for i in range(0, len(names), _CHUNK):
        chunk = names[i : i + _CHUNK]
        rows = session.execute(
            select(File.name, File.id, File.blob_key).where(File.run_id == run_id, File.name.in_(chunk))
        )
        stored.update((name, (row_id, key)) for name, row_id, key in rows)
    stored_clashes = _stored_clashes(session, run_id, [n for n in names if n not in stored])
    # The files as the arrivals leave them: name -> blob key, for every name the run has after each one.
    current = {name: key for name, (_, key) in stored.items()}
    added: set[str] = set()
    added_inside: dict[str, str] = {}  # folder -> a name added inside it (a lookup, not a scan of `added`)
    results: list[str | PathClash | None] = []
    final: dict[str, FileArrival] = {}
    for arrival in arrivals:
        name = arrival.name
        if name in current:
            results.append(current[name])
        else:
            clash = stored_clashes.get(name) or _clash_with_added(name, added, added_inside)
            if clash is not None:
                results.append(clash)
                continue
            added.add(name)
            for folder in _folders(name):
                added_inside.setdefault(folder, name)
            results.append(None)
        current[name] = arrival.blob_key
        final[name] = arrival
    now = utcnow()
    values = [
        {
            "run_id": run_id,
            "name": a.name,
            "size_bytes": a.size,
            "md5": a.md5_b64,
            "mimetype": guess_mimetype(a.name),
            "blob_key": a.blob_key,
            "updated_at": now,
        }
        for a in final.values()
    ]
    new = [v for v in values if v["name"] in added]
    # Core statements made once: the ORM's bulk forms cost more than the SQL they run.
    connection = session.connection()
    if new:
        connection.execute(_INSERT_FILES, new)
        connection.execute(_ADD_TO_FILE_COUNT, {"run": run_id, "added": len(new)})
    replaced = [{**v, "row": stored[v["name"]][0]} for v in values if v["name"] in stored]
    if replaced:
        connection.execute(_REPLACE_FILE, replaced)
    return results


def _clash_with_added(name: str, added: set[str], added_inside: dict[str, str]) -> PathClash | None:
    """The clash of new name `name` with the names an earlier arrival of the same call added (`added`, and
    for each folder of those, one of them inside it)."""
    for folder in _folders(name):
        if folder in added:
            return PathClash(name, folder)
    inside = added_inside.get(name)
    return PathClash(name, inside) if inside is not None else None


def file_blob_key(session: Session, run_id: int, name: str) -> str | None:
    """The blob key of run `run_id`'s file `name`, or None when the run has no such file."""
    return session.scalar(select(File.blob_key).where(File.run_id == run_id, File.name == name))


def store_file(session: Session, run_id: int, name: str, blob_key: str, size: int, md5_b64: str) -> str | None:
    """Point file `name` of run `run_id` at `blob_key` (adding the row if new); return the replaced blob key.

    Raises:
        PathClash: the run has a file where a folder of `name` would go, or files inside a folder `name`.
    """
    [result] = store_files(session, run_id, [FileArrival(name, blob_key, size, md5_b64)])
    if isinstance(result, PathClash):
        raise result
    return result


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
