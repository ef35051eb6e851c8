"""Uploads: which local files go under which names, one PUT with its retries, and many in parallel."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from wandb_files.errors import LocalFileChangedError, PermissionDeniedError
from wandb_files.formatting import safe_name
from wandb_files.http import BROKEN_CONNECTION, Retryable, check_status, connection_failure
from wandb_files.retry import Backoff
from wandb_files.transfer.flow import NEVER, Cancel, ProgressCallback
from wandb_files.transfer.hashing import CHUNK_SIZE, md5_base64
from wandb_files.transfer.paths import name_problem
from wandb_files.transfer.runner import UPLOAD, run_parallel
from wandb_files.transfer.settings import check_max_bandwidth

if TYPE_CHECKING:
    from wandb_files.http import HTTPClient

log = logging.getLogger(__name__)


def plan_uploads(
    paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str], *, skip_outside_links: bool = False
) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The local files and their names in the run, checked before anything is sent.

    A name is the path as given (made absolute, not resolved) relative to `root`, so a symbolic link is
    stored under its own name, not its target's. A link whose target lies outside `root` is refused, or
    skipped with `skip_outside_links` (for folder walks): its bytes are not what `root` holds.

    Args:
        paths: The local files.
        root: The folder names are relative to.
        skip_outside_links: Skip links to outside `root` (returned second) instead of raising.

    Returns:
        ``[(path, name), …]`` to upload, and ``[(path, why), …]`` skipped.

    Raises:
        TypeError: a path is not a path.
        ValueError: a path is not a file, is not inside `root`, links outside it, or gives a name the server
            would refuse; or two paths give the same name.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, not {type(root).__name__}")
    base = Path(os.path.abspath(os.path.expanduser(root)))
    real_base = base.resolve()
    planned: list[tuple[Path, str, str]] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        local = _local_path(path)
        shown = str(path)
        if not local.is_relative_to(base):
            raise ValueError(f"path {shown!r} is not inside root {str(root)!r}")
        _check_file(local, shown)
        real = local.resolve()
        if not real.is_relative_to(real_base):
            why = f"it is a symbolic link to {str(real)!r}, outside root {str(root)!r}"
            if skip_outside_links:
                skipped.append((local, why))
                continue
            raise ValueError(f"path {shown!r}: {why}; upload the target itself, or choose a root that holds it")
        planned.append((local, local.relative_to(base).as_posix(), shown))
    return _check_names(planned), skipped


def plan_named_uploads(pairs: Iterable[tuple[str | os.PathLike[str], str]]) -> list[tuple[Path, str]]:
    """Local files and the names each goes under, checked before anything is sent.

    A symbolic link is uploaded with the bytes of the file it points to, wherever that is: the caller named
    the pair. Errors name the caller's path.

    Args:
        pairs: ``(local path, name in the run)`` of each file.

    Returns:
        ``[(absolute path, name), …]`` in the order of `pairs`.

    Raises:
        TypeError: an item is not a pair, a path is not a path, or a name is not a string.
        ValueError: a path is not a file (or is a link to nothing), a name is one the server would refuse, or
            two pairs give the same name.
    """
    planned: list[tuple[Path, str, str]] = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"each upload must be a (local path, name) pair, not {safe_name(repr(pair))[:80]}")
        path, name = pair
        local = _local_path(path)
        if not isinstance(name, str):
            raise TypeError(f"the name for path {str(path)!r} must be a string, not {type(name).__name__}")
        _check_file(local, str(path))
        planned.append((local, name, str(path)))
    return _check_names(planned)


def _local_path(path: object) -> Path:
    """`path` made absolute (not resolved: a link keeps its own name)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a path, not {type(path).__name__}")
    return Path(os.path.abspath(os.path.expanduser(path)))


def _check_file(local: Path, shown: str) -> None:
    """Refuse a path that is not a file, or a link to one (naming it as the caller gave it)."""
    if not local.is_file():
        kind = "a broken symbolic link" if local.is_symlink() else "not a file"
        raise ValueError(f"path {shown!r} is {kind}")


def _check_names(planned: list[tuple[Path, str, str]]) -> list[tuple[Path, str]]:
    """`(path, name)` of each `(path, name, path as given)`, once every name is one the server takes and no
    two are the same."""
    for _, name, shown in planned:
        problem = name_problem(name)
        if problem:
            raise ValueError(
                f"path {safe_name(shown)!r}: {safe_name(name)!r} cannot be a file name in a run: {problem}"
            )
    dupes = sorted(name for name, n in Counter(name for _, name, _ in planned).items() if n > 1)
    if dupes:
        raise ValueError(f"several paths give the same name: {', '.join(dupes[:5])}")
    return [(local, name) for local, name, _ in planned]


@dataclass(frozen=True)
class UploadJob:
    """One file of a bulk upload.

    Attributes:
        url: The signed upload URL.
        path: The local file.
        name: The file's name in its run.
        size: The local size, for progress.
        headers: Extra headers the server asked for.
        resign: Asked for a fresh upload URL when the server says this one expired (403); None for no retry.
        declared: `size` was declared to the server (the URL is signed for it): send exactly that many bytes.
    """

    url: str
    path: Path
    name: str
    size: int
    headers: dict[str, str]
    resign: Callable[[], str] | None = None
    declared: bool = False


def upload_many(
    client: HTTPClient,
    jobs: Sequence[UploadJob],
    *,
    max_workers: int | None = None,
    progress: bool | None = None,
    max_bandwidth: float | None = None,
) -> list[tuple[int, str]]:
    """Upload many files in parallel, each with `upload`'s retries; a failure never stops the others.

    Args:
        client: The GraphQL client whose session moves the bytes.
        jobs: What to upload.
        max_workers: Parallel transfers; default `WANDB_FILES_MAX_WORKERS` or `DEFAULT_MAX_WORKERS`.
        progress: One tqdm bar for bytes and files; None shows it on terminals only.
        max_bandwidth: Bytes per second across all transfers; None for `WANDB_FILES_MAX_BANDWIDTH` (no limit
            when unset).

    Returns:
        `(size, base64 md5)` of the bytes sent, in the order of `jobs`.

    Raises:
        UploadError: some files failed; it lists each with its reason and carries the others' results.
        Interrupted: Ctrl-C; the files that finished are stored.
    """

    def one(job: UploadJob, advance: ProgressCallback, cancel: Cancel) -> tuple[int, str]:
        size = job.size if job.declared else None
        try:
            sent = upload(client, job.url, job.path, name=job.name, headers=job.headers, size=size, cancel=cancel)
        except PermissionDeniedError:
            if job.resign is None:
                raise
            sent = upload(client, job.resign(), job.path, name=job.name, headers=job.headers, size=size, cancel=cancel)
        advance(sent[0])
        return sent

    return run_parallel(
        client,
        jobs,
        one,
        max_workers=max_workers,
        progress=progress,
        direction=UPLOAD,
        max_bandwidth=check_max_bandwidth(max_bandwidth),
    )


class _FileShrank(Exception):
    """The local file ended before the size announced in Content-Length."""


class _SnapshotReader:
    """Reads exactly `size` bytes of an open file, hashing them: what the request announced, however the file
    grows meanwhile (a live log is sent as it was when the upload started)."""

    def __init__(self, f: BinaryIO, size: int, cancel: Cancel) -> None:
        self._f = f
        self._left = size
        self._size = size
        self._cancel = cancel
        self.hasher = hashlib.md5(usedforsecurity=False)

    def __len__(self) -> int:  # lets requests send Content-Length instead of chunked encoding
        return self._size

    def read(self, n: int = -1) -> bytes:
        self._cancel.check()
        want = min(self._left, n if n and n > 0 else CHUNK_SIZE)
        if want <= 0:
            return b""
        data = self._f.read(want)
        if not data:
            raise _FileShrank()
        self._left -= len(data)
        self.hasher.update(data)
        self._cancel.pace(len(data))  # the call's bandwidth limit
        return data


def upload(
    client: HTTPClient,
    url: str,
    path: Path,
    *,
    name: str,
    headers: dict[str, str] | None = None,
    size: int | None = None,
    cancel: Cancel | None = None,
) -> tuple[int, str]:
    """PUT the bytes of `path` to an upload URL, retrying on connection failures, 408, 429 and 5xx.

    The size is taken when an attempt starts and exactly that many bytes are sent: a file that grows
    meanwhile (a live log) is uploaded as it was then. One that shrinks, or is rewritten in place, is sent
    again from a fresh start; if it keeps changing, the upload fails with `LocalFileChangedError`.

    Args:
        client: Supplies the pooled session, timeout, retry policy and the key (for its own origin).
        url: The (signed) upload URL.
        path: The local file.
        name: The file's name in its run, for messages.
        headers: Extra headers the server asked for.
        size: Send exactly this many bytes (the size the URL was signed for); None for the size at the start.
        cancel: Stops the upload at its next chunk when set.

    Returns:
        The size and the base64 md5 of the bytes sent.

    Raises:
        LocalFileChangedError: the file kept shrinking or being rewritten while it was sent.
        TransportError: the server could not be reached after all retries.
        APIError: the server refused the upload.
    """
    cancel = cancel or NEVER
    backoff = Backoff(client.retry, f"upload of {name}", deadline=client.timeout)
    while True:
        cancel.check()
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            announced = before.st_size if size is None else size
            reader = _SnapshotReader(f, announced, cancel)
            try:
                with cancel.slot():  # one of the call's concurrent attempts (fewer after 429s)
                    response = client.put(
                        url,
                        reader,
                        {**(headers or {}), "Content-Length": str(announced)},
                        timeout=backoff.attempt_timeout(),
                    )
            except _FileShrank:
                now = os.fstat(f.fileno()).st_size
                failure = Retryable(
                    LocalFileChangedError(
                        f"{name}: {str(path)!r} shrank from {announced} to {now} bytes while it was being "
                        "uploaded; upload it again once it is no longer being written"
                    )
                )
            except BROKEN_CONNECTION as exc:  # PUT is idempotent: sending it again is safe
                cancel.check()
                failure = connection_failure(name, exc, "upload")
            else:
                cancel.answered(response.status_code)
                try:
                    with response:
                        check_status(response, name)
                    after = os.fstat(f.fileno())
                    if after.st_size == announced and after.st_mtime_ns != before.st_mtime_ns:
                        # Same size, new bytes: rewritten in place while it was read. Send it again.
                        raise Retryable(
                            LocalFileChangedError(
                                f"{name}: {str(path)!r} was rewritten while it was being uploaded; the copy on "
                                "the server may mix old and new bytes: upload it again once it is no longer "
                                "being written"
                            )
                        )
                    log.debug("%s: %d bytes sent in %.0f ms", safe_name(name), announced, backoff.elapsed() * 1000)
                    return announced, md5_base64(reader.hasher.digest())
                except Retryable as exc:
                    failure = exc
        failure.wait(backoff, cancel.sleep)
