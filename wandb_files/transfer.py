"""All byte movement: every download and upload of the SDK goes through this module.

Download discipline (the same for `File.download`, bulk downloads and the CLI):
- the target must stay inside the destination folder, whatever name the server sends;
- bytes stream in 1 MiB chunks into a hidden temp file beside the target, never into memory;
- a failed attempt keeps its temp file and the next attempt continues with `Range` (+ `If-Range`);
- size and md5 are checked against the server's record before `os.replace` puts the file under its name,
  so a crash, a truncated body or a flipped byte never leaves a wrong file under a final name;
- connection errors, timeouts, 408/429/5xx, truncated bodies and md5 mismatches are retried with backoff;
- the API key goes only to the server's own origin (`GraphQLClient.auth_for`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import queue
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, Protocol, Sequence, TypeVar

import requests
import urllib3

from tqdm.auto import tqdm

from wandb_files.errors import DownloadError, IntegrityError, PermissionDeniedError, TransportError, UploadError
from wandb_files.graphql import HTTPResponse, raise_for_status
from wandb_files.locks import target_lock
from wandb_files.retry import RETRYABLE_STATUS, Backoff, parse_retry_after

if TYPE_CHECKING:
    from wandb_files.graphql import GraphQLClient

CHUNK_SIZE = 1024 * 1024
#: Parallel transfers unless told otherwise. Measured with 1,000 files of 100 KB (benchmarks/bench_download.py):
#: 30 ms from the server, 16 workers took 4.7 s and 32 took 3.8 s (64: no better); on loopback 16 and 32 tie.
DEFAULT_MAX_WORKERS = 32
#: Files at least this big are hashed in a thread of their own while they download.
BACKGROUND_HASH_BYTES = 8 * CHUNK_SIZE
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

ProgressCallback = Callable[[int], None]
#: A connection that failed or broke: worth another attempt. (A reset while requests reads a response body
#: surfaces as ChunkedEncodingError, which is not a ConnectionError.)
_BROKEN_CONNECTION = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def md5_base64(digest: bytes) -> str:
    """W&B's form of an md5: the base64 of the binary digest."""
    return base64.b64encode(digest).decode("ascii")


def md5_matches(digest: bytes, expected: str) -> bool:
    """Whether `digest` equals `expected`, given as base64 (W&B's form) or as hex."""
    expected = expected.strip()
    try:
        if len(expected) == 32 and all(c in "0123456789abcdefABCDEF" for c in expected):
            return binascii.unhexlify(expected) == digest
        return base64.b64decode(expected, validate=True) == digest
    except (binascii.Error, ValueError):
        return False


def file_md5(path: Path) -> bytes:
    """The binary md5 digest of a local file, read in chunks."""
    hasher = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
    return hasher.digest()


def target_path(root: str | os.PathLike[str], name: str) -> Path:
    """Where a file called `name` goes under `root`, refusing any name that would land outside it.

    Args:
        root: The destination folder (created later if missing).
        name: The file's name in its run, a relative POSIX path such as ``media/images/a.png``.

    Returns:
        The absolute target path.

    Raises:
        TypeError: `root` is not a path or `name` is not a string.
        ValueError: `root` is an existing file, or `name` is empty, absolute, has a drive letter, a backslash,
            a NUL byte or a `..` part, or would resolve outside `root` (e.g. through a symlink).
    """
    base = check_root(root)
    if not isinstance(name, str):
        raise TypeError(f"file name must be a string, not {type(name).__name__}")
    problem = _name_problem(name)
    if problem:
        raise ValueError(f"refusing to write file {name!r}: {problem}")
    target = (base / name).resolve()
    if not target.is_relative_to(base) or target == base:
        raise ValueError(f"refusing to write file {name!r}: it resolves outside {str(base)!r}")
    return target


def check_root(root: str | os.PathLike[str]) -> Path:
    """The resolved destination folder.

    Raises:
        TypeError: `root` is not a path.
        ValueError: `root` exists and is not a folder.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, not {type(root).__name__}")
    base = Path(root).expanduser()
    if base.exists() and not base.is_dir():
        raise ValueError(f"root {str(base)!r} is a file, not a folder")
    return base.resolve()


def _name_problem(name: str) -> str | None:
    if not name:
        return "the name is empty"
    if "\x00" in name:
        return "the name contains a NUL byte"
    if "\\" in name:
        return "the name contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "the name is an absolute path"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return "the name contains a '..' part"
    return None


def _part_path(target: Path) -> Path:
    # Hidden and short whatever the target's name, so it never exceeds the file system's name limit.
    key = hashlib.sha1(target.name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return target.with_name(f".{key}.wandb-files.part")


@dataclass
class _Attempt:
    """What one download knows between attempts: what to expect, the validator to resume against, the wait."""

    size: int | None = None
    md5: str | None = None
    etag: str | None = None
    wait_hint: float | None = None


def _remote_changed(etag: str | None, md5: str | None) -> bool:
    """Whether an ETag that is a plain md5 (our server's, a single-part S3 object's) names other bytes than `md5`.

    Other ETags (multipart uploads, other stores) say nothing about the content, so they never count.
    """
    expected = _etag_from_md5(md5)
    if not etag or not expected:
        return False
    value = etag.removeprefix("W/").strip('"').lower()
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value) and f'"{value}"' != expected


def _etag_from_md5(md5: str | None) -> str | None:
    if not md5:
        return None
    try:
        digest = base64.b64decode(md5, validate=True)
    except (binascii.Error, ValueError):
        return f'"{md5}"' if len(md5) == 32 else None
    return f'"{digest.hex()}"' if len(digest) == 16 else None


class _Hasher:
    """md5 of a stream; for big files in a thread of its own, so hashing overlaps with receiving.

    md5 runs at roughly 560 MB/s on one core: hashed after the download, it would nearly double the time of
    a large file on a fast link. hashlib releases the GIL on large buffers, so a second thread really overlaps.
    The queue is bounded, so memory stays flat whatever the file's size.
    """

    def __init__(self, background: bool) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._queue: queue.Queue[bytes | None] | None = None
        if background:
            self._queue = queue.Queue(maxsize=16)
            self._thread = threading.Thread(target=self._run, name="wandb-files-md5", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        for chunk in iter(self._queue.get, None):
            self._md5.update(chunk)

    def update(self, chunk: bytes) -> None:
        if self._queue is None:
            self._md5.update(chunk)
        else:
            self._queue.put(chunk)

    def digest(self) -> bytes:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        return self._md5.digest()


def download(
    client: GraphQLClient,
    url: str,
    target: Path,
    *,
    name: str,
    size: int | None,
    md5: str | None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download `url` to `target`: temp file, resume, retries, size and md5 check, atomic rename.

    Args:
        client: Supplies the pooled session, the timeout, the retry policy and the key (for its own origin).
        url: Where the bytes are.
        target: The final path (see `target_path`); parent folders are created.
        name: The file's name, for messages (a URL may carry a signature and never appears in messages).
        size: The expected size in bytes, or None when unknown.
        md5: The expected md5 (base64 or hex), or None when unknown.
        progress: Called with the number of new bytes as they arrive (negative when an attempt starts over).

    Returns:
        `target`.

    Raises:
        IntegrityError: the bytes kept disagreeing with `size`/`md5`.
        TransportError: the server could not be reached or kept breaking the connection.
        APIError: the server refused the download (401, 403, 404, …) or kept failing.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with target_lock(target):
        # Another process may have finished this very file while we waited for the lock.
        if local_copy_matches(target, size, md5):
            if progress and size:
                progress(size)
            return target
        return _download_locked(client, url, target, name=name, size=size, md5=md5, progress=progress)


def _download_locked(
    client: GraphQLClient,
    url: str,
    target: Path,
    *,
    name: str,
    size: int | None,
    md5: str | None,
    progress: ProgressCallback | None,
) -> Path:
    part = _part_path(target)
    backoff = Backoff(client.retry, f"download of {name}")
    attempt = _Attempt(size=size, md5=md5)
    while True:
        try:
            digest, received = _fetch_into(client, url, part, name, attempt, progress)
            problem = _integrity_problem(received, digest, size, md5)
            if problem is None:
                os.replace(part, target)
                return target
            _discard(part, progress, received)
            if _remote_changed(attempt.etag, md5):
                # The server now holds other bytes than the ones listed: fetching again cannot help.
                raise IntegrityError(
                    f"{name}: the file changed on the server since it was listed ({problem}); the download was "
                    "discarded: list the run's files again"
                )
            attempt.etag = None
            error: Exception = IntegrityError(f"{name}: {problem}; the download was discarded")
        except _Retryable as exc:
            error = exc.error
            attempt.wait_hint = exc.retry_after
        wait_hint, attempt.wait_hint = attempt.wait_hint, None
        backoff.failed(error, wait_hint)


class _Retryable(Exception):
    def __init__(self, error: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _fetch_into(
    client: GraphQLClient,
    url: str,
    part: Path,
    name: str,
    attempt: _Attempt,
    progress: ProgressCallback | None,
) -> tuple[bytes, int]:
    """One GET into `part`, continuing what is there. Returns the md5 digest and size of the whole part file."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # the md5 is of the stored bytes, not of a re-encoding
    if offset:
        headers["Range"] = f"bytes={offset}-"
        # A part file left by an earlier call has no ETag on record; the hex md5 is the ETag of our server and
        # of single-part S3 objects. A wrong guess only costs a full download: If-Range then answers 200.
        validator = attempt.etag or _etag_from_md5(attempt.md5)
        if validator:
            headers["If-Range"] = validator
    try:
        response = client.stream_get(url, headers)
    except (*_BROKEN_CONNECTION, urllib3.exceptions.HTTPError) as exc:
        raise _Retryable(TransportError(f"{name}: could not connect to download it ({type(exc).__name__})")) from None
    with response:
        if response.status_code in RETRYABLE_STATUS:
            retry_after = parse_retry_after(response.headers)
            try:
                raise_for_status(response, name)
            except Exception as exc:  # noqa: BLE001 - wrapped to be retried; re-raised if retries run out
                raise _Retryable(exc, retry_after) from None
        if response.status_code == 416 and offset:  # our part is longer than the file: start over
            _discard(part, progress, offset)
            raise _Retryable(TransportError(f"{name}: the remote file changed during the download"))
        raise_for_status(response, name)
        attempt.etag = response.headers.get("ETag") or attempt.etag
        hasher = _Hasher(background=(attempt.size or 0) >= BACKGROUND_HASH_BYTES)
        try:
            if response.status_code == 206 and _range_start(response) == offset:
                with open(part, "rb") as existing:
                    for chunk in iter(lambda: existing.read(CHUNK_SIZE), b""):
                        hasher.update(chunk)
                mode, received = "ab", offset
            else:
                if offset:
                    _discard(part, progress, offset)
                mode, received = "wb", 0
            try:
                with open(part, mode) as out:
                    for chunk in _chunks(response):
                        out.write(chunk)
                        hasher.update(chunk)
                        received += len(chunk)
                        if progress:
                            progress(len(chunk))
            except (*_BROKEN_CONNECTION, urllib3.exceptions.HTTPError) as exc:
                raise _Retryable(
                    TransportError(f"{name}: the connection broke mid-download ({type(exc).__name__})")
                ) from None
        finally:
            digest = hasher.digest()
    return digest, received


def _chunks(response: HTTPResponse) -> Iterator[bytes]:
    # decode_content=False: write the bytes exactly as stored, whatever Content-Encoding says.
    yield from response.raw.stream(CHUNK_SIZE, decode_content=False)


def _range_start(response: HTTPResponse) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _integrity_problem(received: int, digest: bytes, size: int | None, md5: str | None) -> str | None:
    if size is not None and received != size:
        return f"received {received} bytes, expected {size}"
    if md5 and not md5_matches(digest, md5):
        return f"md5 {md5_base64(digest)} does not match the server's {md5}"
    return None


def _discard(part: Path, progress: ProgressCallback | None, received: int) -> None:
    part.unlink(missing_ok=True)
    if progress and received:
        progress(-received)


@dataclass(frozen=True)
class DownloadJob:
    """One file of a bulk download.

    Attributes:
        url: Where the bytes are.
        target: The final path (from `target_path`).
        name: How messages name the file (e.g. ``run_id/media/a.png``).
        size: The expected size, or None.
        md5: The expected md5 (base64 or hex), or None.
    """

    url: str
    target: Path
    name: str
    size: int | None
    md5: str | None


def default_max_workers() -> int:
    """`WANDB_FILES_MAX_WORKERS`, else `DEFAULT_MAX_WORKERS`.

    Raises:
        ValueError: the variable is set but is not a positive integer.
    """
    raw = os.environ.get("WANDB_FILES_MAX_WORKERS", "").strip()
    if not raw:
        return DEFAULT_MAX_WORKERS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"WANDB_FILES_MAX_WORKERS must be a positive integer, got {raw!r}")
    return int(raw)


def check_max_workers(max_workers: object) -> int:
    """`max_workers` if usable, else the default when it is None.

    Raises:
        TypeError: not an int.
        ValueError: less than 1.
    """
    if max_workers is None:
        return default_max_workers()
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int, not {type(max_workers).__name__}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    return max_workers


def progress_enabled(progress: bool | None) -> bool | None:
    """tqdm's `disable` for a `progress` argument: None means on for terminals, off for logs and when
    `WANDB_FILES_DISABLE_PROGRESS` is set."""
    if progress is not None:
        return not progress
    if os.environ.get("WANDB_FILES_DISABLE_PROGRESS", "").strip() not in ("", "0", "false", "False"):
        return True
    return None  # tqdm: off when stderr is not a terminal


def local_copy_matches(path: Path, size: int | None, md5: str | None) -> bool:
    """Whether `path` already holds exactly these bytes (needs a known size and md5 to say yes)."""
    if size is None or not md5 or not path.is_file():
        return False
    return path.stat().st_size == size and md5_matches(file_md5(path), md5)


def download_many(
    client: GraphQLClient,
    jobs: list[DownloadJob],
    *,
    max_workers: int | None = None,
    progress: bool | None = None,
    refused: Sequence[tuple[str, BaseException]] = (),
) -> list[Path]:
    """Download many files in parallel, each with `download`'s discipline; a failure never stops the others.

    A target that already holds the expected bytes (same size and md5) is not downloaded again.

    Args:
        client: The GraphQL client whose session (pooled for `max_workers`) moves the bytes.
        jobs: What to download; targets must be distinct.
        max_workers: Parallel transfers; default `WANDB_FILES_MAX_WORKERS` or `DEFAULT_MAX_WORKERS`.
        progress: One tqdm bar for bytes and files; None shows it on terminals only.
        refused: Files the caller already refused (e.g. unsafe names), reported with the failures.

    Returns:
        The target paths, in the order of `jobs`.

    Raises:
        ValueError: two jobs share a target.
        DownloadError: some files failed; it lists each with its reason and carries the paths that succeeded.
    """
    dupes = sorted(str(target) for target, n in Counter(job.target for job in jobs).items() if n > 1)
    if dupes:
        raise ValueError(f"several files would be written to the same path: {', '.join(dupes[:5])}")

    def one(job: DownloadJob, advance: ProgressCallback) -> Path:
        # download() skips a target that already holds these bytes, checked under its lock.
        return download(client, job.url, job.target, name=job.name, size=job.size, md5=job.md5, progress=advance)

    return _parallel(
        client, jobs, one, max_workers=max_workers, progress=progress, verb="download", refused=refused
    )


class _Job(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int | None: ...


J = TypeVar("J", bound=_Job)
R = TypeVar("R")


def _parallel(
    client: GraphQLClient,
    jobs: Sequence[J],
    work: Callable[[J, ProgressCallback], R],
    *,
    max_workers: int | None,
    progress: bool | None,
    verb: str,
    refused: Sequence[tuple[str, BaseException]] = (),
) -> list[R]:
    """Run `work` over `jobs` on a thread pool with one progress bar (bytes, and files done).

    Every job runs, whatever others do; failures are gathered into one `DownloadError`/`UploadError`.
    """
    workers = check_max_workers(max_workers)
    client.ensure_pool(workers)
    lock = threading.Lock()
    done = 0
    results: list[R | None] = [None] * len(jobs)
    failures: list[tuple[str, BaseException]] = list(refused)
    with tqdm(total=sum(job.size or 0 for job in jobs), unit="B", unit_scale=True, unit_divisor=1024,
              disable=progress_enabled(progress), desc=f"{verb}ing", dynamic_ncols=True,
              postfix={"files": f"0/{len(jobs)}"}) as bar:

        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def run(job: J) -> R:
            nonlocal done
            result = work(job, advance)
            with lock:
                done += 1
                bar.set_postfix(files=f"{done}/{len(jobs)}", refresh=False)
            return result

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wandb-files") as pool:
            futures = {pool.submit(run, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except Exception as exc:  # noqa: BLE001 - every failure is reported together below
                    failures.append((jobs[i].name, exc))
    succeeded = [result for result in results if result is not None]
    if failures:
        failures.sort(key=lambda item: item[0])
        raise (DownloadError if verb == "download" else UploadError)(failures, succeeded)
    return succeeded


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
    """

    url: str
    path: Path
    name: str
    size: int
    headers: dict[str, str]
    resign: Callable[[], str] | None = None


def upload_many(
    client: GraphQLClient, jobs: Sequence[UploadJob], *, max_workers: int | None = None, progress: bool | None = None
) -> list[tuple[int, str]]:
    """Upload many files in parallel, each with `upload`'s retries; a failure never stops the others.

    Args:
        client: The GraphQL client whose session moves the bytes.
        jobs: What to upload.
        max_workers: Parallel transfers; default `WANDB_FILES_MAX_WORKERS` or `DEFAULT_MAX_WORKERS`.
        progress: One tqdm bar for bytes and files; None shows it on terminals only.

    Returns:
        `(size, base64 md5)` of the bytes sent, in the order of `jobs`.

    Raises:
        UploadError: some files failed; it lists each with its reason and carries the others' results.
    """

    def one(job: UploadJob, advance: ProgressCallback) -> tuple[int, str]:
        try:
            sent = upload(client, job.url, job.path, name=job.name, headers=job.headers)
        except PermissionDeniedError:
            if job.resign is None:
                raise
            sent = upload(client, job.resign(), job.path, name=job.name, headers=job.headers)
        advance(sent[0])
        return sent

    return _parallel(client, jobs, one, max_workers=max_workers, progress=progress, verb="upload")


class _HashingReader:
    """A file wrapper that hashes what is read, so an upload computes its md5 while it streams."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._size = size
        self.hasher = hashlib.md5(usedforsecurity=False)

    def __len__(self) -> int:  # lets requests send Content-Length instead of chunked encoding
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n if n and n > 0 else CHUNK_SIZE)
        self.hasher.update(data)
        return data


def upload(
    client: GraphQLClient,
    url: str,
    path: Path,
    *,
    name: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """PUT the bytes of `path` to an upload URL, retrying on connection failures, 408, 429 and 5xx.

    Args:
        client: Supplies the pooled session, timeout, retry policy and the key (for its own origin).
        url: The (signed) upload URL.
        path: The local file.
        name: The file's name in its run, for messages.
        headers: Extra headers the server asked for.

    Returns:
        The size and the base64 md5 of the bytes sent.

    Raises:
        TransportError: the server could not be reached after all retries.
        APIError: the server refused the upload.
    """
    backoff = Backoff(client.retry, f"upload of {name}")
    while True:
        size = path.stat().st_size
        retry_after = None
        with open(path, "rb") as f:
            reader = _HashingReader(f, size)
            try:
                response = client.session.put(
                    url,
                    data=reader,
                    headers={**(headers or {}), "Content-Length": str(size)},
                    auth=client.auth_for(url),
                    timeout=client.timeout,
                )
            except _BROKEN_CONNECTION as exc:  # PUT is idempotent: sending it again is safe
                error: Exception = TransportError(f"{name}: the upload failed ({type(exc).__name__})")
            else:
                with response:
                    if response.status_code not in RETRYABLE_STATUS:
                        raise_for_status(response, name)
                        return size, md5_base64(reader.hasher.digest())
                    retry_after = parse_retry_after(response.headers)
                    try:
                        raise_for_status(response, name)
                    except Exception as exc:  # noqa: BLE001 - kept to re-raise when retries run out
                        error = exc
        backoff.failed(error, retry_after)
