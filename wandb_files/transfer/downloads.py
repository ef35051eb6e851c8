"""All byte movement: every download and upload of the SDK goes through this module.

Download discipline (the same for `File.download`, bulk downloads and the CLI):
- the target must stay inside the destination folder, whatever name the server sends, and a download only
  ever changes the path it names: no symbolic link on the way is followed, and a link at the target itself
  is replaced (with `replace`), never written through;
- bytes stream in 1 MiB chunks into a hidden temp file beside the target, never into memory; the temp file
  is claimed with a lock on itself, so two processes never write the same one;
- a failed attempt keeps its temp file and the next attempt continues with `Range` (+ `If-Range`);
- size and md5 are checked against the server's record before `os.replace` puts the file under its name,
  so a crash, a truncated body or a flipped byte never leaves a wrong file under a final name;
- connection errors, timeouts, 408/429/5xx, truncated bodies and md5 mismatches are retried with backoff,
  within the client's deadline (which starts again whenever bytes arrive);
- Ctrl-C stops a bulk transfer within about a second: running transfers stop at their next chunk (their
  connections are shut down), queued ones never start, and temp files are kept for the next call;
- the API key goes only to the server's own origin (`GraphQLClient.auth_for`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import queue
import re
import stat
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

import requests
import urllib3
from tqdm.auto import tqdm

from wandb_files.errors import (
    DownloadError,
    IntegrityError,
    Interrupted,
    LocalFileChangedError,
    PermissionDeniedError,
    TransportError,
    UploadError,
)
from wandb_files.formatting import UNSAFE_CHARACTERS, safe_name
from wandb_files.graphql import HTTPResponse, connection_problem, raise_for_status
from wandb_files.locks import claim_part, release_if_empty
from wandb_files.retry import REFUSED_GRACE_SECONDS, RETRYABLE_STATUS, Backoff, parse_retry_after

if TYPE_CHECKING:
    from wandb_files.graphql import GraphQLClient

CHUNK_SIZE = 1024 * 1024
#: Parallel transfers unless told otherwise (chosen by measurement: see the README's performance section).
DEFAULT_MAX_WORKERS = 32
#: Files at least this big are hashed in a thread of their own while they download.
BACKGROUND_HASH_BYTES = 8 * CHUNK_SIZE
#: The longest path segment (one folder or file name) that common file systems hold, in bytes.
MAX_SEGMENT_BYTES = 255
#: After Ctrl-C, how long running transfers get to stop at their next chunk before the call returns.
CANCEL_GRACE_SECONDS = 1.0
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

ProgressCallback = Callable[[int], None]
#: A connection that failed or broke: worth another attempt. (A reset while requests reads a response body
#: surfaces as ChunkedEncodingError, which is not a ConnectionError.)
_BROKEN_CONNECTION = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    OSError,
)


# --- md5 ----------------------------------------------------------------------------------------------------


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


# --- where files go -----------------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why a file name cannot be written under a destination folder, or None when it can.

    The rule is the server's (`wandb_files.server.names`), so a name the server accepts always lands at
    ``root/name``; names from other servers get the same scrutiny.
    """
    if not name:
        return "the name is empty"
    unsafe = UNSAFE_CHARACTERS.search(name)
    if unsafe:
        return f"the name contains U+{ord(unsafe.group()):04X}, a control, bidirectional or surrogate character"
    if "\\" in name:
        return "the name contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "the name is an absolute path"
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return "the name has an empty, '.' or '..' path segment"
    if any(len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for segment in segments):
        return f"a part of the name is longer than {MAX_SEGMENT_BYTES} bytes, which no common file system holds"
    return None


def check_root(root: str | os.PathLike[str]) -> Path:
    """The resolved destination folder.

    Raises:
        TypeError: `root` is not a path.
        ValueError: `root`, or a folder it would be created in, exists and is not a folder.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, not {type(root).__name__}")
    base = Path(root).expanduser()
    for folder in (base, *base.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"root {str(base)!r} cannot be a folder: {str(folder)!r} is a file")
            break
    return base.resolve()


def target_path(root: str | os.PathLike[str], name: str, *, folder: bool = False) -> Path:
    """Where a file called `name` goes under `root`, refusing any name or path it could not safely write.

    Args:
        root: The destination folder (created later if missing; it may itself be a symbolic link).
        name: The file's name in its run, a relative POSIX path such as ``media/images/a.png``.
        folder: `name` is a folder to write files into (e.g. a run's), not a file.

    Returns:
        The absolute target path (``resolved root / name``; the target itself is not resolved).

    Raises:
        TypeError: `root` is not a path or `name` is not a string.
        ValueError: `root` is a file; or `name` is empty, absolute, has a drive letter, a backslash, a control
            or bidirectional character, an empty, ``.`` or ``..`` part, or a part over 255 bytes; or a folder
            on the way to the target is a symbolic link or a file; or the target is a folder.
    """
    base = check_root(root)
    if not isinstance(name, str):
        raise TypeError(f"file name must be a string, not {type(name).__name__}")
    problem = name_problem(name)
    if problem:
        raise ValueError(f"refusing to write {safe_name(name)!r}: {problem}")
    parts = name.split("/")
    target = base.joinpath(*parts)
    on_the_way = base
    for part in parts if folder else parts[:-1]:
        on_the_way = on_the_way / part
        try:
            mode = os.lstat(on_the_way).st_mode
        except FileNotFoundError:
            break  # the rest is created by the download
        if stat.S_ISLNK(mode):
            raise ValueError(f"refusing to write {safe_name(name)!r}: {str(on_the_way)!r} is a symbolic link")
        if not stat.S_ISDIR(mode):
            raise ValueError(f"cannot write {safe_name(name)!r}: {str(on_the_way)!r} is a file, not a folder")
    else:
        if not folder:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(target).st_mode):
                    raise ValueError(f"cannot write file {safe_name(name)!r}: {str(target)!r} is a folder")
    return target


def local_copy_matches(path: Path, size: int | None, md5: str | None) -> bool:
    """Whether `path` is a regular file (not a link) holding exactly these bytes (needs a size and md5)."""
    if size is None or not md5:
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size and md5_matches(file_md5(path), md5)


def _part_path(target: Path) -> Path:
    # Hidden and short whatever the target's name, so it never exceeds the file system's name limit.
    key = hashlib.sha1(target.name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return target.with_name(f".{key}.wandb-files.part")


def _make_parent(target: Path, name: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot write file {safe_name(name)!r}: a folder on the way to it is a file") from None


# --- cancellation -------------------------------------------------------------------------------------------


class _Cancelled(Exception):
    """Raised inside a transfer that was asked to stop (its temp file is kept)."""


class Cancel:
    """Stops the transfers of one bulk call.

    Each transfer checks it between chunks and before each attempt; responses being read are shut down when
    it is set, so that a read blocked on a slow link returns at once instead of at its timeout.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reading: set[HTTPResponse] = set()

    def set(self) -> None:
        """Ask every transfer of the call to stop."""
        self._event.set()
        with self._lock:
            reading = list(self._reading)
        for response in reading:
            with contextlib.suppress(Exception):  # it may have finished meanwhile
                response.raw.shutdown()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `_Cancelled` if the call was asked to stop."""
        if self._event.is_set():
            raise _Cancelled()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less if asked to stop (then raise `_Cancelled`)."""
        if self._event.wait(seconds):
            raise _Cancelled()

    @contextlib.contextmanager
    def reading(self, response: HTTPResponse) -> Iterator[None]:
        with self._lock:
            self._reading.add(response)
        try:
            self.check()
            yield
        finally:
            with self._lock:
                self._reading.discard(response)


# --- one download -------------------------------------------------------------------------------------------


@dataclass
class _Attempt:
    """What one download knows between attempts: what to expect, the validator to resume against, the wait."""

    size: int | None = None
    md5: str | None = None
    etag: str | None = None
    moved: int = 0


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
    """The ETag our server and single-part S3 objects give bytes of this md5 (given as base64 or hex)."""
    if not md5:
        return None
    md5 = md5.strip()
    if len(md5) == 32 and all(c in "0123456789abcdefABCDEF" for c in md5):
        return f'"{md5.lower()}"'
    try:
        digest = base64.b64decode(md5, validate=True)
    except (binascii.Error, ValueError):
        return None
    return f'"{digest.hex()}"' if len(digest) == 16 else None


class _Hasher:
    """md5 of a stream; for big files in a thread of its own, so hashing overlaps with receiving.

    Hashed after the download, md5 would nearly double the time of a large file on a fast link. hashlib
    releases the GIL on large buffers, so a second thread really overlaps. The queue is bounded, so memory
    stays flat whatever the file's size.
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


_NEVER = Cancel()


def download(
    client: GraphQLClient,
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
    cancel = cancel or _NEVER
    _make_parent(target, name)
    part = _part_path(target)
    with claim_part(part, cancel.check) as fd:
        try:
            # Another process may have finished this very file while we waited for the claim.
            if local_copy_matches(target, size, md5):
                if progress and size:
                    progress(size)
                return target
            return _download_claimed(client, url, target, part, fd, name, _Attempt(size, md5), progress, cancel)
        finally:
            release_if_empty(fd, part)


def _download_claimed(
    client: GraphQLClient,
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
        retry_after = within = None
        attempt.moved = 0
        try:
            digest, received = _fetch_into(client, url, fd, name, attempt, progress, cancel, backoff)
            problem = _integrity_problem(received, digest, attempt.size, attempt.md5)
            if problem is None:
                os.replace(part, target)
                return target
            _restart(fd, progress, received)
            if _remote_changed(attempt.etag, attempt.md5):
                # The server now holds other bytes than the ones listed: fetching again cannot help.
                raise IntegrityError(
                    f"{name}: the file changed on the server since it was listed ({problem}); the download was "
                    "discarded: list the run's files again"
                )
            attempt.etag = None
            error: Exception = IntegrityError(f"{name}: {problem}; the download was discarded")
        except _Retryable as exc:
            error, retry_after, within = exc.error, exc.retry_after, exc.within
            if attempt.moved:
                backoff.progressed()  # bytes arrived: the deadline and the count of failures start again
        backoff.failed(error, retry_after, within=within, sleep=cancel.sleep)


class _Retryable(Exception):
    def __init__(self, error: Exception, retry_after: float | None = None, within: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.within = within


def _connect_failure(name: str, verb: str, exc: BaseException) -> _Retryable:
    problem, unreachable = connection_problem(exc)
    return _Retryable(
        TransportError(f"{name}: could not {verb} it ({problem})"),
        within=REFUSED_GRACE_SECONDS if unreachable else None,
    )


def _fetch_into(
    client: GraphQLClient,
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
    headers = {"Accept-Encoding": "identity"}  # the md5 is of the stored bytes, not of a re-encoding
    if offset:
        headers["Range"] = f"bytes={offset}-"
        # A temp file left by an earlier call has no ETag on record; the hex md5 is the ETag of our server and
        # of single-part S3 objects. A wrong guess only costs a full download: If-Range then answers 200.
        validator = attempt.etag or _etag_from_md5(attempt.md5)
        if validator:
            headers["If-Range"] = validator
    try:
        response = client.stream_get(url, headers, timeout=backoff.attempt_timeout())
    except _BROKEN_CONNECTION as exc:
        raise _connect_failure(name, "connect to download", exc) from None
    with response, cancel.reading(response):
        if response.status_code in RETRYABLE_STATUS:
            retry_after = parse_retry_after(response.headers)
            try:
                raise_for_status(response, name)
            except Exception as exc:  # noqa: BLE001 - wrapped to be retried; re-raised if retries run out
                raise _Retryable(exc, retry_after) from None
        if response.status_code == 416 and offset:  # our temp file is longer than the file: start over
            _restart(fd, progress, offset)
            raise _Retryable(TransportError(f"{name}: the remote file changed during the download"))
        raise_for_status(response, name)
        attempt.etag = response.headers.get("ETag") or attempt.etag
        hasher = _Hasher(background=(attempt.size or 0) >= BACKGROUND_HASH_BYTES)
        try:
            with open(fd, "r+b", closefd=False) as out:
                out.seek(0)
                if response.status_code == 206 and _range_start(response) == offset:
                    for chunk in iter(lambda: out.read(CHUNK_SIZE), b""):
                        hasher.update(chunk)
                    received = offset
                else:
                    if offset:
                        _restart(fd, progress, offset)
                    received = 0
                chunks = _chunks(response)
                while True:
                    try:
                        chunk = next(chunks, None)
                    except _BROKEN_CONNECTION as exc:
                        cancel.check()  # a shutdown by Ctrl-C looks like a broken connection
                        problem, _ = connection_problem(exc)
                        raise _Retryable(
                            TransportError(f"{name}: the connection broke mid-download ({problem})")
                        ) from None
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
    # read1: what has arrived, up to a chunk, without waiting for a whole chunk. On a slow link the bytes reach
    # the temp file (and the progress bar) as they come, so an interruption keeps them for the resume.
    # decode_content=False: write the bytes exactly as stored, whatever Content-Encoding says.
    read = response.raw.read1
    while chunk := read(CHUNK_SIZE, decode_content=False):
        yield chunk


def _range_start(response: HTTPResponse) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


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


# --- many downloads -----------------------------------------------------------------------------------------


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


def clashing_jobs(jobs: Sequence[DownloadJob]) -> list[tuple[str, BaseException]]:
    """Jobs that cannot all be written: a target inside a folder that another job writes as a file.

    A run may hold both ``a`` and ``a/b`` (W&B allows it); no file system does. ``a`` is kept, ``a/b`` refused.
    """
    targets = {job.target for job in jobs}
    refused: list[tuple[str, BaseException]] = []
    for job in jobs:
        clash = next((folder for folder in job.target.parents if folder in targets), None)
        if clash is not None:
            refused.append((job.name, ValueError(
                f"cannot write file {safe_name(job.name)!r}: the run also has a file where its folder "
                f"{str(clash)!r} would go, and a path cannot be both"
            )))
    return refused


def download_many(
    client: GraphQLClient,
    jobs: list[DownloadJob],
    *,
    max_workers: int | None = None,
    progress: bool | None = None,
    refused: Sequence[tuple[str, BaseException]] = (),
) -> list[Path]:
    """Download many files in parallel, each with `download`'s discipline; a failure never stops the others.

    A target that already holds the expected bytes (same size and md5) is not downloaded again. Targets that
    clash (``a`` and ``a/b``) are refused before any byte is fetched.

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
        Interrupted: Ctrl-C; finished files stay, temp files are kept for the next call.
    """
    dupes = sorted(str(target) for target, n in Counter(job.target for job in jobs).items() if n > 1)
    if dupes:
        raise ValueError(f"several files would be written to the same path: {', '.join(dupes[:5])}")
    clashes = clashing_jobs(jobs)
    if clashes:
        clashing = {name for name, _ in clashes}
        jobs = [job for job in jobs if job.name not in clashing]
        refused = [*refused, *clashes]

    def one(job: DownloadJob, advance: ProgressCallback, cancel: Cancel) -> Path:
        # download() skips a target that already holds these bytes, checked under its claim.
        return download(client, job.url, job.target, name=job.name, size=job.size, md5=job.md5,
                        progress=advance, cancel=cancel)

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
    work: Callable[[J, ProgressCallback, Cancel], R],
    *,
    max_workers: int | None,
    progress: bool | None,
    verb: str,
    refused: Sequence[tuple[str, BaseException]] = (),
) -> list[R]:
    """Run `work` over `jobs` on a thread pool with one progress bar (bytes, and files done).

    Every job runs, whatever others do; failures are gathered into one `DownloadError`/`UploadError`.
    Ctrl-C sets the call's `Cancel`, drops the queued jobs, gives the running ones `CANCEL_GRACE_SECONDS`
    to stop, and raises `Interrupted` with what had finished.
    """
    workers = check_max_workers(max_workers)
    client.ensure_pool(workers)
    lock = threading.Lock()
    cancel = Cancel()
    done = 0
    results: list[R | None] = [None] * len(jobs)
    finished = [False] * len(jobs)
    failures: list[tuple[str, BaseException]] = list(refused)
    with tqdm(total=sum(job.size or 0 for job in jobs), unit="B", unit_scale=True, unit_divisor=1000,
              disable=progress_enabled(progress), desc=f"{verb}ing", dynamic_ncols=True,
              postfix={"files": f"0/{len(jobs)}"}) as bar:

        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def run(job: J) -> R:
            nonlocal done
            result = work(job, advance, cancel)
            with lock:
                done += 1
                bar.set_postfix(files=f"{done}/{len(jobs)}", refresh=False)
            return result

        def collect(future: Future[R], i: int) -> None:
            try:
                results[i] = future.result()
                finished[i] = True
            except _Cancelled:
                pass
            except Exception as exc:  # noqa: BLE001 - every failure is reported together below
                failures.append((jobs[i].name, exc))

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wandb-files")
        futures: dict[Future[R], int] = {}
        try:
            futures = {pool.submit(run, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                collect(future, futures[future])
        except KeyboardInterrupt:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            stopped, _ = wait(futures, timeout=CANCEL_GRACE_SECONDS)
            for future in stopped:
                if not future.cancelled():
                    collect(future, futures[future])
            kept = [r for r, ok in zip(results, finished) if ok]
            raise Interrupted(kept, sorted(failures, key=lambda item: item[0]),
                              len(jobs) - len(kept) - (len(failures) - len(refused))) from None
        finally:
            pool.shutdown(wait=not cancel.is_set())
    succeeded = [result for result, ok in zip(results, finished) if ok]
    if failures:
        failures.sort(key=lambda item: item[0])
        raise (DownloadError if verb == "download" else UploadError)(failures, succeeded)
    return succeeded


# --- uploads ------------------------------------------------------------------------------------------------


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
    planned: list[tuple[Path, str]] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a path, not {type(path).__name__}")
        local = Path(os.path.abspath(os.path.expanduser(path)))
        shown = str(path)
        if not local.is_relative_to(base):
            raise ValueError(f"path {shown!r} is not inside root {str(root)!r}")
        if not local.is_file():
            kind = "a broken symbolic link" if local.is_symlink() else "not a file"
            raise ValueError(f"path {shown!r} is {kind}")
        real = local.resolve()
        if not real.is_relative_to(real_base):
            why = f"it is a symbolic link to {str(real)!r}, outside root {str(root)!r}"
            if skip_outside_links:
                skipped.append((local, why))
                continue
            raise ValueError(f"path {shown!r}: {why}; upload the target itself, or choose a root that holds it")
        name = local.relative_to(base).as_posix()
        problem = name_problem(name)
        if problem:
            raise ValueError(f"path {safe_name(shown)!r} cannot be a file name in a run: {problem}")
        planned.append((local, name))
    dupes = sorted(name for name, n in Counter(name for _, name in planned).items() if n > 1)
    if dupes:
        raise ValueError(f"several paths give the same name: {', '.join(dupes[:5])}")
    return planned, skipped


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
        Interrupted: Ctrl-C; the files that finished are stored.
    """

    def one(job: UploadJob, advance: ProgressCallback, cancel: Cancel) -> tuple[int, str]:
        size = job.size if job.declared else None
        try:
            sent = upload(client, job.url, job.path, name=job.name, headers=job.headers, size=size, cancel=cancel)
        except PermissionDeniedError:
            if job.resign is None:
                raise
            sent = upload(client, job.resign(), job.path, name=job.name, headers=job.headers, size=size,
                          cancel=cancel)
        advance(sent[0])
        return sent

    return _parallel(client, jobs, one, max_workers=max_workers, progress=progress, verb="upload")


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
        return data


def upload(
    client: GraphQLClient,
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
    cancel = cancel or _NEVER
    backoff = Backoff(client.retry, f"upload of {name}", deadline=client.timeout)
    while True:
        cancel.check()
        retry_after = within = None
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            announced = before.st_size if size is None else size
            reader = _SnapshotReader(f, announced, cancel)
            try:
                response = client.session.put(
                    url,
                    data=reader,
                    headers={**(headers or {}), "Content-Length": str(announced)},
                    auth=client.auth_for(url),
                    timeout=backoff.attempt_timeout(),
                )
            except _FileShrank:
                now = os.fstat(f.fileno()).st_size
                error: Exception = LocalFileChangedError(
                    f"{name}: {str(path)!r} shrank from {announced} to {now} bytes while it was being "
                    "uploaded; upload it again once it is no longer being written"
                )
            except _BROKEN_CONNECTION as exc:  # PUT is idempotent: sending it again is safe
                cancel.check()
                failure = _connect_failure(name, "upload", exc)
                error, within = failure.error, failure.within
            else:
                with response:
                    if response.status_code not in RETRYABLE_STATUS:
                        raise_for_status(response, name)
                        after = os.fstat(f.fileno())
                        if after.st_size == announced and after.st_mtime_ns != before.st_mtime_ns:
                            # Same size, new bytes: rewritten in place while it was read. Send it again.
                            error = LocalFileChangedError(
                                f"{name}: {str(path)!r} was rewritten while it was being uploaded; the copy on "
                                "the server may mix old and new bytes: upload it again once it is no longer "
                                "being written"
                            )
                        else:
                            return announced, md5_base64(reader.hasher.digest())
                    else:
                        retry_after = parse_retry_after(response.headers)
                        try:
                            raise_for_status(response, name)
                        except Exception as exc:  # noqa: BLE001 - kept to re-raise when retries run out
                            error = exc
        backoff.failed(error, retry_after, within=within, sleep=cancel.sleep)

