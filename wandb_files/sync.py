"""`sync`: keep a local mirror of a run or of a whole project up to date, moving only what changed.

The mirror is laid out as `download_files` writes: ``DEST/<run_id>/<name>``. A manifest (SQLite, in
``DEST/.wandb-files/manifest.db``) records for each file what the server said (md5, size, updatedAt) and what
was written (size, mtime). A rerun compares the listing with it: a file whose record and local copy are
unchanged costs no byte request and no hashing; a local file whose size or mtime moved is checked by md5;
only files that differ are fetched, with the whole download discipline (verified, atomic, resumable,
parallel, cancellable). The listing asks for no URL (the server makes and signs one per file):
the files to fetch are asked for again by name, in batches, with their URLs. With `delete`, local files of
the synced runs that the server no longer has are removed (never anything outside those runs' folders;
symbolic links are removed, not followed).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from wandb_files import queries
from wandb_files.errors import DownloadError, Interrupted, NotFoundError
from wandb_files.files import File, Files
from wandb_files.paginator import MAX_PER_PAGE, batches
from wandb_files.transfer import Destination, DownloadJob, download_many, file_md5, md5_matches

if TYPE_CHECKING:
    from wandb_files.api import Api
    from wandb_files.graphql import GraphQLClient
    from wandb_files.runs import Run

__all__ = ["SyncResult", "sync"]

#: Where the manifest lives, inside the destination; never a run's folder (run ids cannot contain "/" and
#: this one is refused as a run id).
STATE_DIR = ".wandb-files"
_PAGE = 1000
#: The light listing's page: its rows are small, and fewer round trips measured faster (bench_sync --per-page).
_LISTING_PAGE = MAX_PER_PAGE
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
        failed: ``(name, exception)`` for each file that could not be synced; the others were.
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
) -> SyncResult:
    """Bring ``destination/<run_id>/<name>`` up to date with the files of a run or of every run of a project.

    Args:
        source: A run path, in any form `Api.run` takes, or ``entity/project`` for every run of the project.
            Two parts name a project when such a project exists, else a run of the default entity
            (``project/run_id``).
        destination: The mirror's folder (created if missing).
        pattern: Only files whose names match this SQL LIKE pattern (``media/%.png``); with `delete`, only
            local files matching it are candidates for removal.
        delete: Remove local files of the synced runs that the server no longer has.
        dry_run: Write and delete nothing; the result says what would be fetched and deleted.
        max_workers: Parallel transfers (default `WANDB_FILES_MAX_WORKERS`, else 32).
        progress: A progress bar; None shows it on terminals only.
        api: The `Api` to use; a default `Api()` when omitted.

    Returns:
        What was fetched, left alone, deleted and failed (`SyncResult`; `summary()` is one line of it).

    Raises:
        TypeError, ValueError: bad arguments; `destination` is a file; runs of two projects share an id.
        NotFoundError: the run or project does not exist.
        RuntimeError: another sync into the same destination is running.
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
    runs = _runs_of(api, source)
    _check_run_ids(runs)
    state = root / STATE_DIR
    if not dry_run:
        state.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(state / "lock")) if not dry_run else None
    try:
        if lock is not None:
            lock.acquire(timeout=0)
    except Timeout:
        raise RuntimeError(f"another sync into {str(root)!r} is running; wait for it to finish") from None
    try:
        with _Manifest(state / "manifest.db", read_only=dry_run) as manifest:
            jobs: list[tuple[DownloadJob, File]] = []
            for run in runs:
                run_root = mirror.target(run.id, folder=True)
                run_folder = Destination(run_root)
                remote: set[str] = set()
                wanted: list[tuple[Path, File]] = []
                records = manifest.records(run.id)
                for file in _FileStates(api.client, run, per_page=_LISTING_PAGE, pattern=pattern):
                    remote.add(file.name)
                    target = _plan(file, run_folder, records, manifest, result)
                    if target is not None:
                        wanted.append((target, file))
                if dry_run:  # the listing's sizes are enough to say what would move
                    result.fetched += [target for target, _ in wanted]
                    result.bytes += sum(file.size for _, file in wanted)
                else:
                    jobs += _download_jobs(run, run_folder, wanted, result)
                if delete:
                    _delete_missing(run, run_root, remote, pattern, manifest, result)
            if not dry_run:
                result.bytes = sum(job.size or 0 for job, _ in jobs)
                _fetch(api, jobs, manifest, result, max_workers, progress)
    finally:
        if lock is not None:
            lock.release()
        result.seconds = time.monotonic() - started
    return result


# --- what to sync ------------------------------------------------------------------------------------------


def _runs_of(api: Api, source: str) -> list[Run]:
    """The runs `source` names: every run of a project, or one run."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a run path or 'entity/project', not {type(source).__name__}")
    parts = source.strip().strip("/").split("/")
    if len(parts) == 2 and ":" not in source and "://" not in source:
        runs = api.runs(source, per_page=_PAGE)
        try:
            len(runs)  # one request: is there such a project?
        except NotFoundError:
            pass  # no: then it is project/run_id of the default entity
        else:
            return list(runs)
    return [api.run(source)]


def _check_run_ids(runs: list[Run]) -> None:
    seen: dict[str, str] = {}
    for run in runs:
        if run.id == STATE_DIR:
            raise ValueError(f"run {'/'.join(run.path)} has the id {STATE_DIR!r}, the mirror's own folder")
        path = "/".join(run.path)
        if seen.setdefault(run.id, path) != path:
            raise ValueError(f"runs {seen[run.id]} and {path} share the id {run.id!r}: sync them to different folders")


class _FileStates(Files):
    """A run's files with only what the manifest compares (id, name, size, md5, updatedAt): no URLs."""

    QUERY = queries.RUN_FILE_STATES

    def __init__(self, client: GraphQLClient, run: Run, *, per_page: int, pattern: str | None) -> None:
        super().__init__(client, run, per_page=per_page, pattern=pattern)
        del self.variables["upload"]  # RunFileStates asks for no url


def _plan(
    file: File, run_folder: Destination, records: dict[str, _Record], manifest: _Manifest, result: SyncResult
) -> Path | None:
    """Where `file` must be fetched to, or None when the local copy is already right (counted as unchanged)."""
    run_root = run_folder.root
    record = records.get(file.name)
    if record is not None and record.matches_remote(file):
        # The name was checked when this record was written, and nothing is written now: a plain lstat will do.
        with contextlib.suppress(OSError):
            local = os.lstat(os.path.join(run_root, file.name))
            if stat.S_ISREG(local.st_mode) and record.matches_local(local):
                result.unchanged += 1  # no hashing: the same bytes the manifest saw us write
                return None
    try:
        target = run_folder.target(file.name)
    except ValueError as exc:  # a name no file system should take, or a clash on disk
        result.failed.append((f"{run_root.name}/{file.name}", exc))
        return None
    try:
        local = os.lstat(target)
    except FileNotFoundError:
        return target
    if not stat.S_ISREG(local.st_mode):
        return target  # a link or a folder where the file goes: the download replaces it (or refuses a folder)
    if file.size == local.st_size and file.md5 and md5_matches(file_md5(target), file.md5):
        manifest.record(run_root.name, file, target, local)  # e.g. touched, or a manifest lost
        result.unchanged += 1
        return None
    return target


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


def _delete_missing(
    run: Run, run_root: Path, remote: set[str], pattern: str | None, manifest: _Manifest, result: SyncResult
) -> None:
    """Remove the files under the run's folder that the server no longer lists (and their records)."""
    if not run_root.is_dir() or run_root.is_symlink():
        return
    wanted = _like_regex(pattern) if pattern else None
    for folder, dirs, names in os.walk(run_root):  # never follows a link to a folder
        for name in names:
            path = Path(folder, name)
            relative = path.relative_to(run_root).as_posix()
            if name.endswith(".wandb-files.part") or relative in remote:
                continue
            if wanted is not None and not wanted.fullmatch(relative):
                continue
            result.deleted.append(path)
            if not result.dry_run:
                path.unlink()
                manifest.forget(run.id, relative)
        dirs[:] = [d for d in dirs if not Path(folder, d).is_symlink()]
    if not result.dry_run:
        for folder, _, _ in sorted(os.walk(run_root), key=lambda item: -len(item[0])):
            if folder != str(run_root):
                with contextlib.suppress(OSError):  # only empty ones go
                    os.rmdir(folder)


def _like_regex(pattern: str) -> re.Pattern[str]:
    """A LIKE pattern (``%``, ``_``, backslash escapes) as a regular expression over whole names."""
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _fetch(
    api: Api,
    jobs: list[tuple[DownloadJob, File]],
    manifest: _Manifest,
    result: SyncResult,
    max_workers: int | None,
    progress: bool | None,
) -> None:
    by_target = {job.target: file for job, file in jobs}

    def record(paths: list[Path]) -> None:
        for path in paths:
            file = by_target[path]
            manifest.record(_run_id_of(path, file), file, path, os.lstat(path))
            result.fetched.append(path)

    try:
        record(download_many(api.client, [job for job, _ in jobs], max_workers=max_workers, progress=progress))
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


class _Manifest:
    """The records of one mirror, in SQLite: one row per (run id, name)."""

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> _Manifest:
        if self.read_only and not self.path.exists():
            return self  # a dry run of a first sync: nothing recorded yet
        uri = f"file:{self.path}?mode=ro" if self.read_only else f"file:{self.path}"
        self._db = sqlite3.connect(uri, uri=True)
        if not self.read_only:
            self._db.execute(_SCHEMA)
        return self

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

    def record(self, run_id: str, file: File, path: Path, local: os.stat_result) -> None:
        if self._db is None or self.read_only:
            return
        self._db.execute(
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
            self._db.execute("DELETE FROM files WHERE run_id = ? AND name = ?", (run_id, name))

    def commit(self) -> None:
        if self._db is not None and not self.read_only:
            self._db.commit()
