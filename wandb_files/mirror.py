"""`sync`: keep a local mirror of a run or of a whole project up to date, moving only what changed.

The mirror is laid out as `download_files` writes: ``DEST/<run_id>/<name>``. A manifest (SQLite, in
``DEST/.wandb-files/manifest.db``) records for each file what the server said (md5, size, updatedAt) and what
was written (size, mtime). A rerun compares the listing with it: a file whose record and local copy are
unchanged costs no byte request and no hashing; a local file whose size or mtime moved is checked by md5;
only files that differ are fetched, with the whole download discipline (verified, atomic, resumable,
parallel, cancellable). The listing asks for no URL (the server makes and signs one per file):
the files to fetch are asked for again by name, in batches, with their URLs. With `delete`, local files of
the synced runs that the server no longer has are removed (never anything outside those runs' folders;
symbolic links, also to folders, are removed, not followed), and so are the temp files left of them.

A run folder mirrors one run: the manifest's run paths keep a run of another project with the same id out of
it. A file that became a folder on the server (or the reverse) replaces what sync wrote there in one pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from wandb_files import documents
from wandb_files.api import runs_of
from wandb_files.errors import (
    DestinationBusyError,
    DownloadError,
    Interrupted,
    ManifestError,
    MirrorConflictError,
    NotFoundError,
)
from wandb_files.files import File, Files
from wandb_files.paginator import MAX_PER_PAGE, batches
from wandb_files.patterns import like_to_regex
from wandb_files.runs import Run
from wandb_files.transfer import Destination, DownloadJob, choose_engine, download_many, file_md5, md5_matches
from wandb_files.transfer.paths import name_problem, part_path

if TYPE_CHECKING:
    from wandb_files.api import Api
    from wandb_files.graphql import GraphQLClient

__all__ = ["SyncResult", "sync"]

log = logging.getLogger(__name__)

#: Where the manifest lives, inside the destination; never a run's folder (run ids cannot contain "/" and
#: this one is refused as a run id).
STATE_DIR = ".wandb-files"
#: The light listing's page: its rows are small, and fewer round trips measured faster (bench_sync --per-page).
_LISTING_PAGE = MAX_PER_PAGE
_PART_SUFFIX = ".wandb-files.part"
_COLUMNS = [
    "run_id",
    "name",
    "run_path",
    "remote_md5",
    "remote_size",
    "remote_updated_at",
    "local_size",
    "local_mtime_ns",
]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    run_path TEXT NOT NULL,
    remote_md5 TEXT,
    remote_size INTEGER,
    remote_updated_at TEXT,
    local_size INTEGER NOT NULL,
    local_mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
)
"""


@dataclass
class SyncResult:
    """What a `sync` did (or, with `dry_run`, would do).

    Attributes:
        fetched: Local paths written (with `dry_run`: that would be written).
        unchanged: How many files were already up to date.
        deleted: Local paths removed (with `dry_run`: that would be removed).
        failed: ``(name, exception)`` for each file that could not be synced, and ``(run_id, exception)`` for
            each run whose folder could not be written; the others were.
        bytes: Bytes fetched (with `dry_run`: that would be fetched).
        seconds: How long it took.
        dry_run: Whether nothing was written.
    """

    fetched: list[Path] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[Path] = field(default_factory=list)
    failed: list[tuple[str, BaseException]] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def summary(self) -> str:
        """One line: fetched, unchanged, deleted, failed, bytes and time."""
        verb = "would fetch" if self.dry_run else "fetched"
        gone = "would delete" if self.dry_run else "deleted"
        return (
            f"{verb} {len(self.fetched)}, unchanged {self.unchanged}, {gone} {len(self.deleted)}, "
            f"failed {len(self.failed)}; {self.bytes:,} bytes in {self.seconds:.2f} s"
        )


def sync(
    source: str,
    destination: str | os.PathLike[str],
    *,
    pattern: str | None = None,
    delete: bool = False,
    dry_run: bool = False,
    max_workers: int | None = None,
    progress: bool | None = None,
    api: Api | None = None,
    filters: Mapping[str, Any] | None = None,
    order: str | None = None,
) -> SyncResult:
    """Bring ``destination/<run_id>/<name>`` up to date with the files of a run or of every run of a project.

    Args:
        source: A run path, in any form `Api.run` takes, or ``entity/project`` for every run of the project
            (or those `filters` selects). Two parts name a project when such a project exists, else a run of
            the default entity (``project/run_id``).
        destination: The mirror's folder (created if missing).
        pattern: Only files whose names match this SQL LIKE pattern (``media/%.png``); with `delete`, only
            local files matching it are candidates for removal.
        delete: Remove local files of the synced runs that the server no longer has, and the temp files of
            interrupted downloads of such files (without `pattern`). Only the synced runs' folders are
            touched: with `filters`, the folders of runs the filter does not select stay as they are (a run
            that no longer matches is not deleted from the mirror).
        dry_run: Write and delete nothing; the result says what would be fetched and deleted.
        max_workers: Parallel transfers (default `WANDB_FILES_MAX_WORKERS`, else 32).
        progress: A progress bar; None shows it on terminals only.
        api: The `Api` to use; a default `Api()` when omitted.
        filters: Only the runs of the project this W&B filter document selects (as `Api.runs` takes it, e.g.
            ``{"state": "finished", "config.model": "resnet"}``); the source must then be a project.
        order: The order the runs are synced in (as `Api.runs` takes it); default oldest first.

    Returns:
        What was fetched, left alone, deleted and failed (`SyncResult`; `summary()` is one line of it). A run
        whose folder cannot be written (``DEST/<run_id>`` is a file or a link) is one failure; the others sync.

    Raises:
        TypeError, ValueError: bad arguments (a malformed filter document, `filters` with a run as the source);
            `destination` is a file; runs of two projects share an id.
        NotFoundError: the run or project does not exist.
        BadRequestError: the server refused the filter or the order (the message names the offending part).
        MirrorConflictError: ``DEST/<run_id>`` mirrors a run of another project with the same id.
        DestinationBusyError: another sync into the same destination is running.
        ManifestError: a folder or a link stands where the manifest goes.
        Interrupted: Ctrl-C; what was finished is recorded, and the next sync resumes the rest.
    """
    if api is None:
        from wandb_files.api import Api

        api = Api()
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"pattern must be a LIKE pattern string, not {type(pattern).__name__}")
    mirror = Destination(destination)
    root = mirror.root
    started = time.monotonic()
    result = SyncResult(dry_run=dry_run)
    chosen = runs_of(api, source, filters=filters, order=order)
    runs = list(chosen) if not isinstance(chosen, Run) else [chosen]
    _check_run_ids(runs)
    state = root / STATE_DIR
    _check_state_folder(state)
    lock = None
    if not dry_run:
        state.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(state / "lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise DestinationBusyError(root) from None
    try:
        with _Manifest(state / "manifest.db", read_only=dry_run) as manifest:
            _check_owners(root, runs, manifest)  # before anything is written
            jobs: list[tuple[DownloadJob, File]] = []
            for run in runs:
                try:
                    run_root = mirror.target(run.id, folder=True)
                except ValueError as exc:  # DEST/<run_id> is a file or a link: this run fails, the others sync
                    result.failed.append((run.id, exc))
                    continue
                one = _RunSync(run, run_root, manifest, result, delete=delete, pattern=pattern)
                listed = list(_FileStates(api.client, run, per_page=_LISTING_PAGE, pattern=pattern))
                one.remote = {file.name for file in listed}  # all of it first: a file may stand where a folder goes
                wanted: list[tuple[Path, File]] = []
                for file in listed:
                    target = one.plan(file)
                    if target is not None:
                        wanted.append((target, file))
                if dry_run:  # the listing's sizes are enough to say what would move
                    result.fetched += [target for target, _ in wanted]
                    result.bytes += sum(file.size for _, file in wanted)
                else:
                    jobs += _download_jobs(run, one.folder, wanted, result)
                if delete:
                    one.delete_missing()
            if not dry_run:
                result.bytes = sum(job.size or 0 for job, _ in jobs)
                _fetch(api, jobs, manifest, result, max_workers, progress)
    finally:
        if lock is not None:
            lock.release()
        result.seconds = time.monotonic() - started
    return result


# --- what to sync ------------------------------------------------------------------------------------------


def _check_run_ids(runs: list[Run]) -> None:
    seen: dict[str, str] = {}
    for run in runs:
        if run.id == STATE_DIR:
            raise ValueError(f"run {'/'.join(run.path)} has the id {STATE_DIR!r}, the mirror's own folder")
        path = "/".join(run.path)
        if seen.setdefault(run.id, path) != path:
            raise ValueError(f"runs {seen[run.id]} and {path} share the id {run.id!r}: sync them to different folders")


def _check_state_folder(state: Path) -> None:
    """The mirror's own folder is a real folder, or missing: never written through a link, never a file."""
    try:
        mode = os.lstat(state).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a file"
        raise ManifestError(state, _not_ours(state, kind))


def _check_owners(root: Path, runs: list[Run], manifest: _Manifest) -> None:
    """Refuse to sync a run into a folder that holds the files of another run with the same id.

    Records of another run whose folder is gone (moved away) are forgotten: nothing of it is left to overwrite.
    """
    owners = manifest.owners()
    for run in runs:
        path = "/".join(run.path)
        others = owners.get(run.id, set()) - {path, ""}
        if not others:
            continue
        folder = root / run.id
        if os.path.lexists(folder):
            raise MirrorConflictError(folder, sorted(others)[0], path)
        manifest.forget_run(run.id)


class _FileStates(Files):
    """A run's files with only what the manifest compares (id, name, size, md5, updatedAt): no URLs."""

    QUERY = documents.RUN_FILE_STATES

    def __init__(self, client: GraphQLClient, run: Run, *, per_page: int, pattern: str | None) -> None:
        super().__init__(client, run, per_page=per_page, pattern=pattern)
        del self.variables["upload"]  # RunFileStates asks for no url


class _RunSync:
    """One run's share of a sync: which files to fetch, what stands in their way, what to delete.

    Args:
        run: The run.
        run_root: Its folder, ``DEST/<run_id>`` (checked by the caller).
        manifest: The mirror's records.
        result: Where fetched, unchanged, deleted and failed files are counted.
        delete: Whether local files the server no longer has are removed.
        pattern: The LIKE pattern of the sync, if any.
    """

    def __init__(
        self, run: Run, run_root: Path, manifest: _Manifest, result: SyncResult, *, delete: bool, pattern: str | None
    ) -> None:
        self.run = run
        self.root = run_root
        self.folder = Destination(run_root)
        self.manifest = manifest
        self.records = manifest.records(run.id)
        self.result = result
        self.delete = delete
        self.pattern = pattern
        self.wanted = like_to_regex(pattern) if pattern else None
        #: Every name the server lists for the run (under the pattern); set before `plan`.
        self.remote: set[str] = set()
        self._remote_folders: set[str] | None = None
        #: What this sync removed (or, in a dry run, would remove), so it is counted once.
        self._removed: set[Path] = set()

    # --- one file ---

    def plan(self, file: File) -> Path | None:
        """Where `file` must be fetched to, or None when the local copy is already right (counted as unchanged)."""
        record = self.records.get(file.name)
        if record is not None and record.matches_remote(file):
            # The name was checked when this record was written, and nothing is written now: a plain lstat will do.
            with contextlib.suppress(OSError):
                local = os.lstat(os.path.join(self.root, file.name))
                if stat.S_ISREG(local.st_mode) and record.matches_local(local):
                    self.result.unchanged += 1  # no hashing: the same bytes the manifest saw us write
                    return None
        try:
            target = self.folder.target(file.name)
        except ValueError as exc:  # a name no file system should take, or something on disk in the way
            cleared = None if name_problem(file.name) else self._clear_the_way(file.name)
            if cleared is None:
                self.result.failed.append((self._label(file.name), exc))
                return None
            if isinstance(cleared, str):
                self.result.failed.append((self._label(file.name), ValueError(cleared)))
                return None
            return cleared  # what stood there is gone (or, in a dry run, would be): nothing to compare with
        try:
            local = os.lstat(target)
        except FileNotFoundError:
            return target
        if not stat.S_ISREG(local.st_mode):
            return target  # a link where the file goes: the download replaces it
        if file.size == local.st_size and file.md5 and md5_matches(file_md5(target), file.md5):
            self.manifest.record(self.run.id, file, target, local)  # e.g. touched, or a manifest lost
            self.result.unchanged += 1
            return None
        return target

    def _label(self, name: str) -> str:
        return f"{self.root.name}/{name}"

    # --- a file where a folder goes, a folder where a file goes ---

    def _clear_the_way(self, name: str) -> Path | str | None:
        """Remove what stands where `name` or a folder of it goes, when the server no longer has it.

        A file (or link) where a folder goes, or a folder where the file goes, is what a rename of `a` into
        `a/x` (or back) on the server leaves. It goes when sync made it (the manifest records it) or `delete`
        covers it; anything else is the user's, and stays.

        Returns:
            The target once the way is clear (in a dry run: once it would be); why not, when something the
            sync may not remove is in the way; None when nothing is in the way (the name itself is refused).
        """
        obstacle = self._obstacle(name)
        if obstacle is None:
            return None
        relative, is_folder = obstacle
        shown = self._label(relative)
        if is_folder:
            if self._remote_folders is None:
                self._remote_folders = {
                    "/".join(parts[:i]) for parts in (n.split("/") for n in self.remote) for i in range(1, len(parts))
                }
            if relative in self._remote_folders:
                return f"{shown!r} is a folder, and the server has files in it too"
            doomed = self._folder_contents(relative)
            if doomed is None:
                return (
                    f"the folder {shown!r} is where the file goes, and holds files the server does not have: "
                    "move them away (or sync with delete)"
                )
        else:
            if relative in self.remote:
                return f"{shown!r} is a file, and the server has it too"
            if not self._owned(relative):
                return (
                    f"{shown!r} is where a folder goes, and the server no longer has it: "
                    "move it away (or sync with delete)"
                )
            doomed = [relative]
        for gone in doomed:
            self._remove(gone)
        if is_folder and not self.result.dry_run:
            for folder, _, _ in sorted(os.walk(self.root / relative), key=lambda item: -len(item[0])):
                with contextlib.suppress(OSError):  # one that filled up meanwhile stays; the target check says so
                    os.rmdir(folder)
        target = Path(self.root, *name.split("/"))
        if self.result.dry_run:
            return target
        self.folder = Destination(self.root)  # its view of the folders on the way is stale now
        try:
            return self.folder.target(name)
        except ValueError as exc:
            return str(exc)

    def _obstacle(self, name: str) -> tuple[str, bool] | None:
        """The first thing on disk in the way of `name`: ``(relative path, whether it is a folder)``."""
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            relative = "/".join(parts[:i])
            try:
                mode = os.lstat(os.path.join(self.root, relative)).st_mode
            except FileNotFoundError:
                return None
            if i < len(parts) and not stat.S_ISDIR(mode):
                return relative, False
            if i == len(parts) and stat.S_ISDIR(mode):
                return relative, True
        return None

    def _folder_contents(self, relative: str) -> list[str] | None:
        """Every entry under the folder `relative` (links not followed), or None when one of them must stay."""
        entries: list[str] = []
        for folder, dirs, names in os.walk(self.root / relative):
            links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
            dirs[:] = [d for d in dirs if d not in links]
            for name in [*names, *links]:
                entry = Path(folder, name).relative_to(self.root).as_posix()
                if not name.endswith(_PART_SUFFIX) and not self._owned(entry):
                    return None
                entries.append(entry)  # no listed name lies under this folder: its temp files are stale
        return entries

    def _owned(self, relative: str) -> bool:
        """Whether sync may remove `relative`, a local entry the listing does not hold: sync wrote it, or `delete`.

        Outside the pattern the listing says nothing, so whether the server still has the name is not known.
        """
        if self.wanted is not None and self.wanted.fullmatch(relative) is None:
            return False
        return self.delete or relative in self.records

    def _remove(self, relative: str) -> None:
        path = Path(self.root, *relative.split("/"))
        if path in self._removed:
            return
        self._removed.add(path)
        self.result.deleted.append(path)
        if not self.result.dry_run:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a link is removed, never followed
            self.manifest.forget(self.run.id, relative)

    # --- delete ---

    def delete_missing(self) -> None:
        """Remove the files under the run's folder that the server no longer lists (and their records).

        Temp files of interrupted downloads go too when their file is no longer listed; with a pattern they are
        left alone, as which name a temp file belongs to cannot be told without the whole listing.
        """
        if not self.root.is_dir() or self.root.is_symlink():
            return
        live = None
        if self.wanted is None:  # the temp files of a target are named .<key>...wandb-files.part beside it
            live = {(str(part.parent), part.name[1:17]) for part in (part_path(self.root / n) for n in self.remote)}
        for folder, dirs, names in os.walk(self.root):  # never follows a link to a folder
            links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
            dirs[:] = [d for d in dirs if d not in links]
            for name in [*names, *links]:  # a link to a folder is removed like a file, not followed
                relative = Path(folder, name).relative_to(self.root).as_posix()
                if name.endswith(_PART_SUFFIX):
                    if live is None or (folder, name[1:17]) in live:
                        continue
                elif relative in self.remote or (self.wanted is not None and not self.wanted.fullmatch(relative)):
                    continue
                self._remove(relative)
        if not self.result.dry_run:
            for folder, _, _ in sorted(os.walk(self.root), key=lambda item: -len(item[0])):
                if folder != str(self.root):
                    with contextlib.suppress(OSError):  # only empty ones go
                        os.rmdir(folder)


def _download_jobs(
    run: Run, run_folder: Destination, wanted: list[tuple[Path, File]], result: SyncResult
) -> list[tuple[DownloadJob, File]]:
    """The downloads of the `wanted` files, from their full File objects (with URLs) asked for by name."""
    jobs: list[tuple[DownloadJob, File]] = []
    for batch in batches(wanted):
        names = [file.name for _, file in batch]
        found = {file.name: file for file in run.files(names=names, per_page=len(names))}
        for _, listed in batch:
            label = f"{run_folder.root.name}/{listed.name}"
            file = found.get(listed.name)
            if file is None:  # deleted since it was listed
                result.failed.append((label, NotFoundError(f"file {label!r} is no longer on the server")))
                continue
            try:
                jobs.append((file.download_job(run_folder, label=label), file))
            except ValueError as exc:  # no url
                result.failed.append((label, exc))
    return jobs


def _fetch(
    api: Api,
    jobs: list[tuple[DownloadJob, File]],
    manifest: _Manifest,
    result: SyncResult,
    max_workers: int | None,
    progress: bool | None,
) -> None:
    by_target = {job.target: file for job, file in jobs}
    todo = [job for job, _ in jobs]

    def record(paths: list[Path]) -> None:
        for path in paths:
            file = by_target[path]
            manifest.record(_run_id_of(path, file), file, path, os.lstat(path))
            result.fetched.append(path)

    try:
        engine = choose_engine(api.client)
        record(download_many(api.client, todo, engine=engine, max_workers=max_workers, progress=progress))
    except DownloadError as exc:
        record(list(exc.results))
        result.failed += exc.failures
    except Interrupted as exc:
        record(list(exc.results))  # the next sync skips these and resumes the rest
        raise
    finally:
        manifest.commit()
    result.bytes = sum(os.lstat(path).st_size for path in result.fetched)


def _run_id_of(path: Path, file: File) -> str:
    """The run folder's name: `path` is ``<root>/<run_id>/<name>``."""
    return path.parents[len(file.name.split("/")) - 1].name


# --- the manifest ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    remote_md5: str | None
    remote_size: int | None
    remote_updated_at: str | None
    local_size: int
    local_mtime_ns: int

    def matches_remote(self, file: File) -> bool:
        return (self.remote_md5, self.remote_size) == (file.md5, file.size) and self.remote_md5 is not None

    def matches_local(self, local: os.stat_result) -> bool:
        return (self.local_size, self.local_mtime_ns) == (local.st_size, local.st_mtime_ns)


def _not_ours(path: Path, kind: str) -> str:
    return (
        f"{str(path)!r} is {kind}, where sync keeps its manifest: move it away and run again "
        "(the manifest is rebuilt from the server and the local files)"
    )


class _ForeignSchema(sqlite3.DatabaseError):
    """The file is an SQLite database, but not one sync made."""


class _Manifest:
    """The records of one mirror, in SQLite: one row per (run id, name).

    The manifest is a cache of what the server and the disk say: one that cannot be read (not a database, or
    tables sync did not make) is moved aside to ``manifest.db.broken`` and rebuilt; the next sync then checks
    local files by size and md5 once. A folder or a link in its place is refused (`ManifestError`).
    """

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> _Manifest:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            if self.read_only:
                return self  # a dry run of a first sync: nothing recorded yet
        else:
            if not stat.S_ISREG(mode):
                kind = "a folder" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode) else "not a file"
                raise ManifestError(self.path, _not_ours(self.path, kind))
        try:
            self._db = self._open()
        except sqlite3.OperationalError as exc:  # it could not be opened at all (permissions, a full disk...)
            raise ManifestError(
                self.path, f"cannot open the manifest {str(self.path)!r}: {exc}. Check the folder's permissions"
            ) from exc
        except sqlite3.DatabaseError as exc:  # not a database, or not ours: a cache, rebuilt
            if self.read_only:
                log.warning("%s cannot be read (%s): this dry run compares with the local files only", self.path, exc)
                return self
            aside = self._set_aside()
            log.warning(
                "%s cannot be read (%s): moved it to %s; rebuilding it from the server and the local files",
                self.path,
                exc,
                aside.name,
            )
            self._db = self._open()
        return self

    def _open(self) -> sqlite3.Connection:
        if self.read_only:
            # A URI, for mode=ro: as_uri() percent-encodes ?, # and %, so DEST's characters stay part of the path.
            db = sqlite3.connect(self.path.as_uri() + "?mode=ro", uri=True)
        else:
            db = sqlite3.connect(self.path)  # a path, not a URI: no character of DEST means anything to SQLite
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - {"files"}:
                raise _ForeignSchema(f"it holds tables sync did not make: {', '.join(sorted(tables - {'files'}))}")
            if tables:
                columns = [row[1] for row in db.execute("PRAGMA table_info(files)")]
                if columns != _COLUMNS:
                    raise _ForeignSchema(f"its files table has the columns {', '.join(columns)}")
            if not self.read_only:
                db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self) -> Path:
        """Move the unreadable manifest, and any journal of it, to ``*.broken`` (kept for a look, never deleted)."""
        aside = self.path.with_name(self.path.name + ".broken")
        for suffix in ("", "-journal", "-wal", "-shm"):  # a stale journal must not be replayed into the new one
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        return aside

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            self.commit()
            self._db.close()

    def records(self, run_id: str) -> dict[str, _Record]:
        """Every record of a run by name, in one query (not one per file)."""
        if self._db is None:
            return {}
        try:
            rows = self._db.execute(
                "SELECT name, remote_md5, remote_size, remote_updated_at, local_size, local_mtime_ns FROM files "
                "WHERE run_id = ?",
                (run_id,),
            ).fetchall()
        except sqlite3.OperationalError:  # read-only and the table was never made
            return {}
        return {name: _Record(*rest) for name, *rest in rows}

    def owners(self) -> dict[str, set[str]]:
        """The run paths recorded for each run id (one, unless something went wrong before)."""
        if self._db is None:
            return {}
        try:
            rows = self._db.execute("SELECT DISTINCT run_id, run_path FROM files").fetchall()
        except sqlite3.OperationalError:  # read-only and the table was never made
            return {}
        owners: dict[str, set[str]] = {}
        for run_id, run_path in rows:
            owners.setdefault(run_id, set()).add(run_path)
        return owners

    def record(self, run_id: str, file: File, path: Path, local: os.stat_result) -> None:
        if self._db is None or self.read_only:
            return
        self._write(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                file.name,
                "/".join(file.run.path) if file.run else "",
                file.md5,
                file.size,
                file.updated_at,
                local.st_size,
                local.st_mtime_ns,
            ),
        )

    def forget(self, run_id: str, name: str) -> None:
        if self._db is not None and not self.read_only:
            self._write("DELETE FROM files WHERE run_id = ? AND name = ?", (run_id, name))

    def forget_run(self, run_id: str) -> None:
        if self._db is not None and not self.read_only:
            self._write("DELETE FROM files WHERE run_id = ?", (run_id,))

    def commit(self) -> None:
        if self._db is not None and not self.read_only:
            with self._writing():
                self._db.commit()

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        assert self._db is not None
        with self._writing():
            self._db.execute(sql, params)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """SQLite's write failures (a full disk, a read-only file system) as the manifest's typed error."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise ManifestError(
                self.path,
                f"cannot write the manifest {str(self.path)!r}: {exc}. The files synced so far are kept; "
                "make room (or make the folder writable) and run the same sync again",
            ) from exc
