"""Downloads: one file with the whole discipline (see the package's docstring), and many in parallel."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wandb_files.errors import IntegrityError, TransportError
from wandb_files.formatting import safe_name
from wandb_files.http import (
    BROKEN_CONNECTION,
    HTTPResponse,
    Retryable,
    check_status,
    connection_broke,
    parse_content_range,
    read_arrived,
)
from wandb_files.retry import Backoff
from wandb_files.transfer import ranges
from wandb_files.transfer.flow import NEVER, Cancel, ProgressCallback
from wandb_files.transfer.hashing import (
    BACKGROUND_HASH_BYTES,
    CHUNK_SIZE,
    StreamHasher,
    etag_from_md5,
    md5_base64,
    md5_matches,
    remote_changed,
)
from wandb_files.transfer.jobs import DownloadEngine, DownloadJob, clashing_jobs, refusing_clashes
from wandb_files.transfer.locks import claim_part, release_if_empty
from wandb_files.transfer.paths import local_copy_matches, make_parent, part_path
from wandb_files.transfer.runner import DOWNLOAD, run_parallel
from wandb_files.transfer.settings import check_max_bandwidth

if TYPE_CHECKING:
    from wandb_files.http import HTTPClient

log = logging.getLogger(__name__)


@dataclass
class _Attempt:
    """What one download knows between attempts: what to expect, the validator to resume against, the wait."""

    size: int | None = None
    md5: str | None = None
    etag: str | None = None
    moved: int = 0


def download(
    client: HTTPClient,
    url: str,
    target: Path,
    *,
    name: str,
    size: int | None,
    md5: str | None,
    progress: ProgressCallback | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Download `url` to `target`: temp file, resume, retries, size and md5 check, atomic rename.

    Args:
        client: Supplies the pooled session, the timeout, the retry policy and the key (for its own origin).
        url: Where the bytes are.
        target: The final path (see `target_path`); parent folders are created. A symbolic link there is
            replaced by the file, its own target is never touched.
        name: The file's name, for messages (a URL may carry a signature and never appears in messages).
        size: The expected size in bytes, or None when unknown.
        md5: The expected md5 (base64 or hex), or None when unknown.
        progress: Called with the number of new bytes as they arrive (negative when an attempt starts over).
        cancel: Stops the download at its next chunk when set (the temp file is kept).

    Returns:
        `target`.

    Raises:
        ValueError: a folder on the way to `target` is a file, or the temp file's place holds a symbolic link.
        IntegrityError: the bytes kept disagreeing with `size`/`md5`.
        TransportError: the server could not be reached or kept breaking the connection.
        APIError: the server refused the download (401, 403, 404, …) or kept failing.
    """
    cancel = cancel or NEVER
    make_parent(target, name)
    part = part_path(target)
    with claim_part(part, cancel.check) as fd:
        try:
            # Another process may have finished this very file while we waited for the claim.
            if local_copy_matches(target, size, md5):
                log.debug("%s: the local copy already holds these bytes", safe_name(name))
                if progress and size:
                    progress(size)
                return target
            # Parallel Range parts for big files (transfer.ranges); None: this one goes as a single stream.
            ranged = ranges.download_parts(client, url, target, part, fd, name, size, md5, progress, cancel)
            if ranged is not None:
                return ranged
            return _download_claimed(client, url, target, part, fd, name, _Attempt(size, md5), progress, cancel)
        finally:
            release_if_empty(fd, part)


def download_one(
    client: HTTPClient, job: DownloadJob, *, progress: ProgressCallback | None = None, cancel: Cancel | None = None
) -> Path:
    """`download` of one `DownloadJob`: its url to its target, checked against its size and md5.

    Returns:
        The job's target.

    Raises:
        As `download`.
    """
    return download(
        client, job.url, job.target, name=job.name, size=job.size, md5=job.md5, progress=progress, cancel=cancel
    )


def _download_claimed(
    client: HTTPClient,
    url: str,
    target: Path,
    part: Path,
    fd: int,
    name: str,
    attempt: _Attempt,
    progress: ProgressCallback | None,
    cancel: Cancel,
) -> Path:
    backoff = Backoff(client.retry, f"download of {name}", deadline=client.timeout)
    while True:
        cancel.check()
        attempt.moved = 0
        try:
            with cancel.slot():  # one of the call's concurrent attempts (fewer after 429s)
                digest, received = _fetch_into(client, url, fd, name, attempt, progress, cancel, backoff)
            problem = _integrity_problem(received, digest, attempt.size, attempt.md5)
            if problem is None:
                os.replace(part, target)
                log.debug("%s: %d bytes verified in %.0f ms", safe_name(name), received, backoff.elapsed() * 1000)
                return target
            _restart(fd, progress, received)
            if remote_changed(attempt.etag, attempt.md5):
                # The server now holds other bytes than the ones listed: fetching again cannot help.
                raise IntegrityError(
                    f"{name}: the file changed on the server since it was listed ({problem}); the download was "
                    "discarded: list the run's files again"
                )
            attempt.etag = None
            error: Exception = IntegrityError(f"{name}: {problem}; the download was discarded")
        except Retryable as exc:
            if attempt.moved:
                backoff.progressed()  # bytes arrived: the deadline and the count of failures start again
            exc.wait(backoff, cancel.sleep)
            continue
        backoff.failed(error, sleep=cancel.sleep)


def _fetch_into(
    client: HTTPClient,
    url: str,
    fd: int,
    name: str,
    attempt: _Attempt,
    progress: ProgressCallback | None,
    cancel: Cancel,
    backoff: Backoff,
) -> tuple[bytes, int]:
    """One GET into the claimed temp file `fd`, continuing what is there. Returns the md5 and size of it all."""
    offset = os.fstat(fd).st_size
    # A temp file left by an earlier call has no ETag on record; the hex md5 is the ETag of our server and
    # of single-part S3 objects. A wrong guess only costs a full download: If-Range then answers 200.
    validator = (attempt.etag or etag_from_md5(attempt.md5)) if offset else None
    response = client.get_bytes(url, name, start=offset, validator=validator, timeout=backoff.attempt_timeout())
    with response, cancel.reading(response):
        cancel.answered(response.status_code)
        if response.status_code == 416 and offset:  # our temp file is longer than the file: start over
            _restart(fd, progress, offset)
            raise Retryable(TransportError(f"{name}: the remote file changed during the download"))
        check_status(response, name)
        attempt.etag = response.headers.get("ETag") or attempt.etag
        hasher = StreamHasher(background=(attempt.size or 0) >= BACKGROUND_HASH_BYTES)
        try:
            with open(fd, "r+b", closefd=False) as out:
                out.seek(0)
                if response.status_code == 206 and _range_start(response) == offset:
                    for kept in iter(lambda: out.read(CHUNK_SIZE), b""):
                        hasher.update(kept)
                    received = offset
                else:
                    if offset:
                        _restart(fd, progress, offset)
                    received = 0
                chunks = _chunks(response)
                while True:
                    try:
                        chunk = next(chunks, None)
                    except BROKEN_CONNECTION as exc:
                        cancel.check()  # a shutdown by Ctrl-C looks like a broken connection
                        raise connection_broke(name, exc) from None
                    if chunk is None:
                        break
                    out.write(chunk)  # a full disk is not a broken connection: it is raised as it is
                    hasher.update(chunk)
                    received += len(chunk)
                    attempt.moved += len(chunk)
                    if progress:
                        progress(len(chunk))
                    cancel.check()
        finally:
            digest = hasher.digest()
    return digest, received


def _chunks(response: HTTPResponse) -> Iterator[bytes]:
    while chunk := read_arrived(response, CHUNK_SIZE):
        yield chunk


def _range_start(response: HTTPResponse) -> int | None:
    got = parse_content_range(response.headers.get("Content-Range"))
    return got.first if got else None


def _integrity_problem(received: int, digest: bytes, size: int | None, md5: str | None) -> str | None:
    if size is not None and received != size:
        return f"received {received} bytes, expected {size}"
    if md5 and not md5_matches(digest, md5):
        return f"md5 {md5_base64(digest)} does not match the server's {md5}"
    return None


def _restart(fd: int, progress: ProgressCallback | None, received: int) -> None:
    """Empty the claimed temp file (it stays claimed) and take its bytes back from the progress bar."""
    os.ftruncate(fd, 0)
    if progress and received:
        progress(-received)


def download_many(
    client: HTTPClient,
    jobs: Iterable[DownloadJob],
    *,
    engine: DownloadEngine,
    max_workers: int | None = None,
    progress: bool | None = None,
    refused: Sequence[tuple[str, BaseException]] = (),
    max_bandwidth: float | None = None,
) -> list[Path]:
    """Download many files in parallel, each with `download`'s discipline; a failure never stops the others.

    A target that already holds the expected bytes (same size and md5) is not downloaded again. Targets that
    clash (``a`` and ``a/b``) are refused before any byte is fetched. `jobs` may be an iterator (a listing
    read page by page): downloads start with its first jobs, and a clash or a repeated target found later is
    refused then, as a failure.

    Args:
        client: The GraphQL client whose session (pooled for `max_workers`) moves the bytes.
        jobs: What to download; targets must be distinct.
        engine: What runs the jobs (`choose_engine`'s pick for the client, or `runner.ThreadPool`); it is given
            this module's download of one job to run, or to fall back on.
        max_workers: Parallel transfers; default `WANDB_FILES_MAX_WORKERS` or `DEFAULT_MAX_WORKERS`.
        progress: One tqdm bar for bytes and files; None shows it on terminals only.
        refused: Files the caller already refused (e.g. unsafe names), reported with the failures; it may grow
            while `jobs` is read.
        max_bandwidth: Bytes per second across all transfers; None for `WANDB_FILES_MAX_BANDWIDTH` (no limit
            when unset).

    Returns:
        The target paths, in the order of `jobs`.

    Raises:
        ValueError: two jobs of a sequence share a target.
        DownloadError: some files failed; it lists each with its reason and carries the paths that succeeded.
        Interrupted: Ctrl-C; finished files stay, temp files are kept for the next call.
    """
    bandwidth = check_max_bandwidth(max_bandwidth)
    refused = refused if isinstance(refused, list) else list(refused)  # the caller's list may grow meanwhile
    if isinstance(jobs, Sequence):
        dupes = sorted(str(target) for target, n in Counter(job.target for job in jobs).items() if n > 1)
        if dupes:
            raise ValueError(f"several files would be written to the same path: {', '.join(dupes[:5])}")
        clashes = clashing_jobs(jobs)
        if clashes:
            clashing = {name for name, _ in clashes}
            jobs = [job for job in jobs if job.name not in clashing]
            refused += clashes
    else:
        jobs = refusing_clashes(jobs, refused)

    def one(job: DownloadJob, advance: ProgressCallback, cancel: Cancel) -> Path:
        # download() skips a target that already holds these bytes, checked under its claim.
        return download_one(client, job, progress=advance, cancel=cancel)

    return run_parallel(
        client,
        jobs,
        one,
        max_workers=max_workers,
        progress=progress,
        direction=DOWNLOAD,
        refused=refused,
        max_bandwidth=bandwidth,
        engine=engine,
    )
