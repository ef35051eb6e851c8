"""Parallel Range parts for big files: one download over several connections, resumable part by part.

A server or CDN that caps each connection (S3 and most CDNs do) makes one stream as slow as its cap. A file
of at least `THRESHOLD` bytes is therefore fetched as parts of `PART_SIZE` bytes, up to `PARTS_AT_ONCE` at a
time, each written at its offset into the one temp file of the download discipline (see the package's
docstring: the claim on the temp file, the size and md5 check, the atomic rename all hold as they are).

- The temp file is preallocated to the file's size. Beside it, a small state file (its name ends like a temp
  file's, so whatever skips or cleans temp files treats it alike) records which parts are done and what they
  were fetched against: the remote's ETag, size and md5. It is rewritten atomically as each part finishes,
  so a later call (after a crash, Ctrl-C or a failure) fetches only the parts that were not done.
- The md5 is computed in order by the calling thread as the prefix of written bytes grows, read back from
  the page cache: memory stays at a chunk a connection, and by the last byte little is left to hash.
- The answer to the first part decides: a 206 for the expected size goes on in parts; a 200 (a server that
  ignores Range) goes back to the single stream with nothing of the parts kept. Later parts are sent with
  `If-Range` (the first answer's ETag) and the ETag of each answer is compared: a 200, another ETag or
  another total size means the remote changed mid-file, so the parts are dropped and the download starts
  over cleanly; a new ETag that is the md5 of other bytes than those listed fails at once (`IntegrityError`).
- `url` may redirect (our server in S3 mode answers 302 with a presigned URL): later parts go where the
  first one landed (the key only ever goes to the server's own origin), and a presigned URL that is refused
  (expired) is replaced by following `url` again.
- Each download has its own connection and takes extra ones from a budget the process shares
  (`EXTRA_STREAMS`), so a bulk download of many big files never opens workers × `PARTS_AT_ONCE` connections;
  and only while its connections are slow (each under `FAST_CONNECTION`): a first connection that is already
  fast over its first part gets the rest as one stream (the single-stream path resumes from the parts on
  disk), since more connections would only compete for the client's CPU.
- Ctrl-C (or the bulk call's cancel) stops every part at its next chunk; finished parts stay finished.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from wandb_files.errors import IntegrityError, PermissionDeniedError, TransportError
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
from wandb_files.transfer.flow import Cancel, Cancelled, ProgressCallback
from wandb_files.transfer.hashing import CHUNK_SIZE, etag_from_md5, md5_base64, md5_matches, remote_changed
from wandb_files.transfer.paths import NO_FOLLOW, open_no_follow
from wandb_files.transfer.settings import DEFAULT_MAX_WORKERS, default_max_workers

if TYPE_CHECKING:
    from wandb_files.http import HTTPClient

log = logging.getLogger(__name__)

#: Files at least this big are fetched in parts (chosen by measurement: docs/performance.md).
THRESHOLD = 16 * 1024 * 1024
#: The size of one part (boto3's default too).
PART_SIZE = 8 * 1024 * 1024
#: The most connections one download uses at once.
PARTS_AT_ONCE = 8
#: Connections beyond their first that all ranged downloads of the process may use together.
EXTRA_STREAMS = 16
#: A download adds connections only while each of its connections moves less than this (bytes/s): past it,
#: the client's own CPU is the limit, not the link (md5 alone is not much faster than that).
FAST_CONNECTION = 100 * 1024 * 1024

_SUFFIX = ".wandb-files.part"  # what paths.part_path ends with
#: How long the calling thread waits for news from the parts before it looks at Ctrl-C and the budget again.
_POLL_SECONDS = 0.05
#: How long a stopping download waits for its parts to leave (one blocked on a silent server may not).
_STOP_GRACE_SECONDS = 0.5
#: The most the calling thread hashes before it looks at Ctrl-C and the budget again (a resumed prefix may be big).
_HASH_STEP = 64 * 1024 * 1024
#: How long the rate of a download's connections is measured before it decides whether to add some.
_RATE_WINDOW_SECONDS = 0.1
#: Parts write at offsets (os.pwrite, os.pread): POSIX only; elsewhere every file goes as one stream.
_POSITIONAL_IO = hasattr(os, "pwrite") and hasattr(os, "pread")


def state_path(part: Path) -> Path:
    """The resume state beside the temp file `part` (``.<key>.ranges.wandb-files.part``)."""
    return part.with_name(part.name.removesuffix(_SUFFIX) + ".ranges" + _SUFFIX)


def _new_state_path(part: Path) -> Path:
    """Where the next state is written before it replaces the current one."""
    path = state_path(part)
    return path.with_name(path.name.removesuffix(_SUFFIX) + "-new" + _SUFFIX)


def discard_state(part: Path) -> None:
    """Remove the resume state of `part`, if any (call it while holding the claim on `part`)."""
    for path in (state_path(part), _new_state_path(part)):  # a kill -9 may have left a new one unrenamed
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@dataclass
class _State:
    """What a ranged download has done and against which remote; saved as JSON beside the temp file."""

    size: int
    md5: str | None
    part_size: int
    etag: str | None = None
    done: set[int] = field(default_factory=set)

    def to_json(self) -> str:
        spans: list[list[int]] = []  # done parts as [first, last] spans: mostly one prefix, so it stays small
        for i in sorted(self.done):
            if spans and spans[-1][1] == i - 1:
                spans[-1][1] = i
            else:
                spans.append([i, i])
        fields = {"version": 1, "size": self.size, "md5": self.md5, "part_size": self.part_size, "etag": self.etag}
        return json.dumps({**fields, "done": spans})

    @classmethod
    def from_json(cls, text: str) -> _State | None:
        try:
            data = json.loads(text)
            if data["version"] != 1:
                return None
            size, part_size, md5, etag = data["size"], data["part_size"], data["md5"], data["etag"]
            done = {i for first, last in data["done"] for i in range(int(first), int(last) + 1)}
        except (ValueError, KeyError, TypeError):
            return None
        if not (isinstance(size, int) and isinstance(part_size, int) and part_size > 0):
            return None
        if not all(value is None or isinstance(value, str) for value in (md5, etag)):
            return None
        return cls(size, md5, part_size, etag, done)


def _load_state(part: Path) -> _State | None:
    try:
        fd = os.open(state_path(part), os.O_RDONLY | NO_FOLLOW)
    except OSError:
        return None  # none, or a symbolic link planted there: nothing to resume from
    with open(fd, encoding="utf-8") as f:
        try:
            return _State.from_json(f.read(65536 * 16))
        except (OSError, UnicodeDecodeError):
            return None


def _save_state(part: Path, state: _State) -> None:
    path, new = state_path(part), _new_state_path(part)
    fd = open_no_follow(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(state.to_json())
    # Not fsynced: a kill -9 loses nothing of the page cache, and after a power loss the md5 check finds
    # any part recorded as done whose bytes never reached the disk (the download then starts over).
    os.replace(new, path)


def _allocate(fd: int, size: int) -> None:
    """Make the temp file `size` bytes long, its blocks reserved where the file system can (a full disk then
    shows now, not in the middle of the download)."""
    os.ftruncate(fd, size)
    if size and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise


class _Budget:
    """The extra connections the ranged downloads of this process share (`EXTRA_STREAMS`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used = 0

    def take(self) -> bool:
        with self._lock:
            if self._used >= EXTRA_STREAMS:
                return False
            self._used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self._used -= 1


_BUDGET = _Budget()


class _Restart(Exception):
    """The remote changed under the download (or stopped answering parts): drop the parts, start over."""


class _Stop(Exception):
    """Another part failed or the download was cancelled: this part stops at its chunk."""


_DONE, _FALLBACK, _RESTART, _SINGLE = "done", "fallback", "restart", "single"


def download_parts(
    client: HTTPClient,
    url: str,
    target: Path,
    part: Path,
    fd: int,
    name: str,
    size: int | None,
    md5: str | None,
    progress: ProgressCallback | None,
    cancel: Cancel,
) -> Path | None:
    """Download a big file in parallel Range parts into the claimed temp file `fd`, then verify and rename it.

    Args:
        client: Supplies the pooled session, the timeout, the retry policy and the key (for its own origin).
        url: Where the bytes are (it may redirect).
        target: The final path.
        part: The temp file's path (claimed by the caller: `fd` is open on it).
        fd: The claimed temp file.
        name: The file's name, for messages.
        size: The expected size, or None when unknown (then there are no parts).
        md5: The expected md5 (base64 or hex), or None.
        progress: Called with the number of new bytes as they arrive (negative when the download starts over).
        cancel: Stops every part at its next chunk when set (the temp file and the finished parts are kept).

    Returns:
        `target` once it holds the verified bytes; None when the file goes as a single stream instead (it
        is too small, its size is unknown, the server does not answer parts, or the platform has no
        positional writes), with the temp file emptied
        of anything the parts left in it.

    Raises:
        IntegrityError: the remote holds other bytes than those listed, or the bytes kept disagreeing with `md5`.
        TransportError: the server could not be reached or kept breaking the connection.
        APIError: the server refused a part (401, 403, 404, …) or kept failing.
        Cancelled: `cancel` was set.
    """
    if size is None or size < max(THRESHOLD, 1) or PART_SIZE < 1 or not _POSITIONAL_IO:
        if os.fstat(fd).st_size:  # a temp file left by parts of a version of another size
            discard_state(part)
        return None
    try:
        workers = default_max_workers()
    except ValueError:  # a bad WANDB_FILES_MAX_WORKERS is the bulk calls' to report, not one download's
        workers = DEFAULT_MAX_WORKERS
    client.ensure_pool(workers + EXTRA_STREAMS)  # room for a bulk call's workers and every extra connection
    return _Ranged(client, url, target, part, fd, name, size, md5, progress, cancel).run()


class _Ranged:
    """One ranged download: the parts, the connections that fetch them, and the in-order md5."""

    def __init__(
        self,
        client: HTTPClient,
        url: str,
        target: Path,
        part: Path,
        fd: int,
        name: str,
        size: int,
        md5: str | None,
        progress: ProgressCallback | None,
        cancel: Cancel,
    ) -> None:
        self.client, self.url, self.target, self.part, self.fd = client, url, target, part, fd
        self.name, self.size, self.md5, self.progress, self.cancel = name, size, md5, progress, cancel
        self.part_size = PART_SIZE
        self.count = -(-size // self.part_size)
        self.started = time.monotonic()

    def _span(self, i: int) -> tuple[int, int]:
        """The first and last byte of part `i`."""
        return i * self.part_size, min(self.size, (i + 1) * self.part_size) - 1

    # --- the whole download --------------------------------------------------------------------------

    def run(self) -> Path | None:
        # Counts only restarts that cannot be told from a flaky link (a wrong md5, a remote changing under us).
        backoff = Backoff(self.client.retry, f"download of {self.name}", deadline=self.client.timeout)
        while True:
            self.cancel.check()
            state = _load_state(self.part)
            if state is None or (state.size, state.md5, state.part_size) != (self.size, self.md5, self.part_size):
                state = self._adopt_prefix()
            elif state.done and os.fstat(self.fd).st_size != self.size:
                state = _State(self.size, self.md5, self.part_size)  # the temp file was cut: its parts are not there
            attempt = _Attempt(self, state)
            try:
                with self.cancel.slot():  # one of the call's concurrent transfers (fewer after 429s)
                    outcome, error = attempt.run()
            except IntegrityError:
                self._discard()  # bytes of another version than the listed one: nothing worth resuming
                raise
            if outcome == _DONE:
                return self.target
            if outcome == _SINGLE:  # the rest as one stream, from the end of what is on disk
                discard_state(self.part)
                os.ftruncate(self.fd, attempt._frontier())
                return None
            self._discard()
            if outcome == _FALLBACK:
                return None
            if error is not None:
                backoff.failed(error, sleep=self.cancel.sleep)

    def _adopt_prefix(self) -> _State:
        """A fresh state; the whole parts of a temp file that one stream began (it holds a prefix, and no
        state) count as done, against the ETag the listed md5 gives, as that stream would have resumed."""
        state = _State(self.size, self.md5, self.part_size)
        kept = os.fstat(self.fd).st_size
        etag = etag_from_md5(self.md5)
        if 0 < kept < self.size and etag:
            state.done = set(range(kept // self.part_size))
            state.etag = etag if state.done else None
        return state

    def _discard(self) -> None:
        """Empty the temp file (it stays claimed) and forget its parts."""
        discard_state(self.part)
        os.ftruncate(self.fd, 0)


class _Attempt:
    """One pass over the parts not done, against one remote version (one ETag)."""

    def __init__(self, ranged: _Ranged, state: _State) -> None:
        self.r = ranged
        self.state = state
        self.part_url = ranged.url
        self.stop = Cancel()  # set when a part failed, the remote changed, or the call was cancelled
        self.cond = threading.Condition()
        self.written = [0] * ranged.count  # bytes of each part on disk, from its start
        for i in state.done:
            if 0 <= i < ranged.count:
                self.written[i] = ranged._span(i)[1] + 1 - ranged._span(i)[0]
        self.head = 0  # the first part not wholly on disk: the md5 has read up to it
        self.hasher = hashlib.md5(usedforsecurity=False)
        self.hashed = 0
        self.queue: collections.deque[int] = collections.deque()
        self.streams = 0  # connections running
        self.error: BaseException | None = None
        self.restart: _Restart | None = None
        self.moved = 0
        self.sampled: tuple[float, int] | None = None  # when the rate was last measured, and `moved` then
        self.slow = False  # whether the connections measured moved less than FAST_CONNECTION each
        self.solo = False  # one connection proved fast: the rest goes as one stream (see _go_solo)
        # Held to write a chunk or record a part: once `closed`, no thread of this attempt touches the temp
        # file again (its descriptor may be closed and reused as soon as the attempt returns).
        self.io_lock = threading.Lock()
        self.closed = False

    def run(self) -> tuple[str, BaseException | None]:
        r = self.r
        pending = [i for i in range(r.count) if self.written[i] < r._span(i)[1] + 1 - r._span(i)[0]]
        try:
            if pending:
                try:
                    first = self._probe(pending[0])
                except _Restart as exc:
                    return _RESTART, self._restart_error(exc)
                if first is None:
                    return _FALLBACK, None
                if os.fstat(r.fd).st_size != r.size:  # only now: a refused file (404, 401) leaves no big temp file
                    try:
                        _allocate(r.fd, r.size)
                    except BaseException:
                        self._close(first)
                        raise
                self.queue.extend(pending[1:])
                self._start_stream(pending[0], first, extra=False)
                self._top_up()
                while True:
                    behind = self._hash(_HASH_STEP)
                    with self.cond:
                        if not self.streams:
                            break
                        if not behind:
                            self.cond.wait(_POLL_SECONDS)
                    if r.cancel.is_set():
                        self.stop.set()
                    if not self.stop.is_set():
                        self._top_up()
        finally:
            self.stop.set()  # on Ctrl-C in this thread too: every part stops at its chunk
            ends = time.monotonic() + _STOP_GRACE_SECONDS
            with self.cond:
                while self.streams and time.monotonic() < ends:
                    self.cond.wait(_POLL_SECONDS)
            with self.io_lock:
                self.closed = True  # a part still waiting for a server leaves without writing
        r.cancel.check()
        if self.error is not None:
            raise self.error  # the finished parts stay recorded: the next call resumes them
        if self.restart is not None:
            self._take_back()
            return _RESTART, self._restart_error(self.restart)
        if self.solo:
            log.debug(
                "%s: one connection moves %d bytes/s or more: the rest as one stream",
                safe_name(r.name),
                FAST_CONNECTION,
            )
            return _SINGLE, None
        self._hash()
        if self.hashed != r.size:
            raise IntegrityError(f"{r.name}: the temp file holds {self.hashed} bytes, expected {r.size}")
        digest = self.hasher.digest()
        if r.md5 and not md5_matches(digest, r.md5):
            self._take_back()
            problem = f"md5 {md5_base64(digest)} does not match the server's {r.md5}"
            if remote_changed(self.state.etag, r.md5):
                r._discard()
                raise IntegrityError(
                    f"{r.name}: the file changed on the server since it was listed ({problem}); the download was "
                    "discarded: list the run's files again"
                )
            return _RESTART, IntegrityError(f"{r.name}: {problem}; the download was discarded")
        discard_state(r.part)  # first: a crash before the rename then costs a download, never a stale state
        os.replace(r.part, r.target)
        log.debug(
            "%s: %d bytes verified in %.0f ms (%d parts of %d bytes)",
            safe_name(r.name),
            r.size,
            (time.monotonic() - r.started) * 1000,
            r.count,
            r.part_size,
        )
        return _DONE, None

    def _restart_error(self, exc: _Restart) -> BaseException | None:
        """What to count against the retries for a restart: nothing when only a stale resume was dropped."""
        return None if exc.args and exc.args[0] is None else TransportError(f"{self.r.name}: {exc}")

    def _take_back(self) -> None:
        if self.r.progress and self.moved:
            self.r.progress(-self.moved)
        self.moved = 0

    # --- in-order md5 --------------------------------------------------------------------------------

    def _frontier(self) -> int:
        """The end of the prefix of the file that is on disk."""
        r = self.r
        while self.head < r.count:
            start, end = r._span(self.head)
            if self.written[self.head] < end + 1 - start:
                return start + self.written[self.head]
            self.head += 1
        return r.size

    def _hash(self, step: int | None = None) -> bool:
        """md5 the bytes that joined the prefix on disk since the last call (read back from the page cache),
        at most `step` of them; returns whether some are left."""
        frontier = self._frontier()
        if step is not None:
            frontier = min(frontier, self.hashed + step)
        while self.hashed < frontier:
            chunk = os.pread(self.r.fd, min(CHUNK_SIZE, frontier - self.hashed), self.hashed)
            if not chunk:
                break  # the temp file was cut under us: the size check below says so
            self.hasher.update(chunk)
            self.hashed += len(chunk)
        return self.hashed < self._frontier()

    # --- connections ---------------------------------------------------------------------------------

    def _go_solo(self) -> bool:
        """After a part of the first connection: whether it alone moves `FAST_CONNECTION`, so the rest had
        better go as one stream (one request for it all, hashed as it arrives) than as parts one by one (each
        part a request to wait for)."""
        with self.cond:
            if self.slow or self.streams > 1 or not self.queue or self.sampled is None:
                return False
            elapsed = time.monotonic() - self.sampled[0]
            self.solo = elapsed > 0 and self.moved / elapsed >= FAST_CONNECTION
            return self.solo

    def _slow_connections(self) -> bool:
        """Whether each connection of this download moved less than `FAST_CONNECTION` over the last window
        (the last answer while a window runs): only then do more connections help."""
        now = time.monotonic()
        if self.sampled is None:
            self.sampled = (now, self.moved)
            return False
        since, moved = self.sampled
        if now - since >= _RATE_WINDOW_SECONDS:
            with self.cond:
                streams = max(self.streams, 1)
            self.slow = (self.moved - moved) / (now - since) / streams < FAST_CONNECTION
            self.sampled = (now, self.moved)
        return self.slow

    def _top_up(self) -> None:
        """Start extra connections while parts wait for one, the connections so far are slow, and the budget
        has some."""
        if not self.queue or self.solo or not self._slow_connections():
            return
        while True:
            with self.cond:
                if not self.queue or self.streams >= PARTS_AT_ONCE or self.stop.is_set():
                    return
                if not _BUDGET.take():
                    return
                job = self.queue.popleft()
            self._start_stream(job, None, extra=True)

    def _start_stream(self, job: int, response: HTTPResponse | None, extra: bool) -> None:
        with self.cond:
            self.streams += 1
        thread = threading.Thread(
            target=self._stream, args=(job, response, extra), name="wandb-files-part", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            with self.cond:
                self.streams -= 1
            if extra:
                _BUDGET.give()
            raise

    def _stream(self, job: int | None, response: HTTPResponse | None, extra: bool) -> None:
        """One connection: fetches parts off the queue until none is left or the attempt stops."""
        try:
            while job is not None:
                first, response = response, None  # _fetch_part owns it from now on
                self._fetch_part(job, first)
                self._finished(job)
                if not extra and self._go_solo():
                    break
                with self.cond:
                    job = self.queue.popleft() if self.queue and not self.stop.is_set() else None
        except (Cancelled, _Stop):
            pass
        except _Restart as exc:
            with self.cond:
                self.restart = self.restart or exc
            self.stop.set()
        except BaseException as exc:  # noqa: BLE001 - raised by the calling thread
            with self.cond:
                self.error = self.error or exc
            self.stop.set()
        finally:
            if extra:
                _BUDGET.give()
            with self.cond:
                self.streams -= 1
                self.cond.notify_all()

    def _finished(self, i: int) -> None:
        with self.io_lock:
            if self.closed:
                raise _Stop()
            self.state.done.add(i)
            _save_state(self.r.part, self.state)
        with self.cond:
            self.cond.notify_all()

    def _check(self) -> None:
        self.r.cancel.check()
        if self.stop.is_set():
            raise _Stop()

    # --- requests ------------------------------------------------------------------------------------

    def _get(self, url: str, start: int, end: int, validator: str | None, backoff: Backoff) -> HTTPResponse:
        return self.r.client.get_bytes(
            url, self.r.name, start=start, last=end, validator=validator, timeout=backoff.attempt_timeout()
        )

    def _probe(self, i: int) -> HTTPResponse | None:
        """GET the first part not done from `url` itself: it tells whether the server answers parts, the ETag
        the parts are fetched against, and where `url` redirects. None: go as a single stream."""
        r = self.r
        start, end = r._span(i)
        resumed = bool(self.state.done) and self.state.etag
        backoff = Backoff(r.client.retry, f"download of {r.name}", deadline=r.client.timeout)
        while True:
            r.cancel.check()
            try:
                response = self._get(r.url, start, end, self.state.etag if resumed else None, backoff)
                try:
                    self._check_status(response, r.url)
                    if response.status_code != 206:
                        if resumed:  # If-Range said the parts we have are of another version
                            raise _Restart(None)
                        log.debug("%s: the server does not answer Range requests; one stream", safe_name(r.name))
                        return self._close(response)
                    etag = response.headers.get("ETag")
                    if not etag or etag.startswith("W/"):
                        if not r.md5:  # nothing would tell a mix of two versions: one stream
                            return self._close(response)
                        etag = None
                    self._check_range(response, start, end)
                    if resumed and etag != self.state.etag:
                        raise _Restart(None)  # a server that ignores If-Range, with another version now
                    if remote_changed(etag, r.md5):
                        raise IntegrityError(
                            f"{r.name}: the file changed on the server since it was listed (its ETag is now "
                            f"{etag}); list the run's files again"
                        )
                except BaseException:
                    self._close(response)
                    raise
            except Retryable as exc:
                exc.wait(backoff, r.cancel.sleep)
                continue
            if isinstance(response, requests.Response) and response.url:
                self.part_url = response.url  # where a redirect landed: the later parts go straight there
            if etag != self.state.etag or not self.state.done:
                self.state.etag = etag
                try:
                    _save_state(r.part, self.state)
                except BaseException:
                    self._close(response)
                    raise
            return response

    @staticmethod
    def _close(response: HTTPResponse) -> None:
        with contextlib.suppress(Exception):
            response.raw.close()
            response.close()

    def _check_status(self, response: HTTPResponse, asked: str) -> None:
        """Raise what an answer that is no part calls for (see the module's docstring); `asked` is the URL
        the request went to."""
        status = response.status_code
        self.r.cancel.answered(status)  # 429s lower the bulk call's concurrency, successes raise it again
        if status == 416:
            raise _Restart("the remote file is shorter than it was")
        if status == 403 and asked != self.r.url:
            self.part_url = self.r.url  # an expired presigned URL: follow `url` again for a fresh one
            raise Retryable(PermissionDeniedError(f"{self.r.name}: HTTP 403", status_code=403))
        check_status(response, self.r.name)

    def _check_range(self, response: HTTPResponse, start: int, end: int) -> int:
        """The last byte a 206 answer carries, once it is known to be the start of what was asked."""
        got = parse_content_range(response.headers.get("Content-Range"))
        if got is None or got.total is None or got.first != start or not start <= got.last <= end:
            raise _Restart(f"the server answered another range ({response.headers.get('Content-Range')!r})")
        if got.total != self.r.size:
            raise IntegrityError(
                f"{self.r.name}: the file changed on the server since it was listed (it now has "
                f"{got.total} bytes, not {self.r.size}); list the run's files again"
            )
        return got.last

    def _fetch_part(self, i: int, response: HTTPResponse | None) -> None:
        r = self.r
        first, last = r._span(i)
        backoff = Backoff(r.client.retry, f"part {i} of {r.name}", deadline=r.client.timeout)
        while True:
            start = first + self.written[i]
            if start > last:
                return
            asked = r.url  # the first part's answer comes from the probe, which asks `url` itself
            try:
                self._check()
                if response is None:
                    asked = self.part_url
                    response = self._get(asked, start, last, self.state.etag, backoff)
                    if isinstance(response, requests.Response) and response.url != asked:
                        self.part_url = response.url  # `url` followed again (an expired presigned URL)
                with response, r.cancel.reading(response), self.stop.reading(response):
                    self._check_status(response, asked)
                    if response.status_code != 206:
                        raise _Restart("the server answered a part with the whole file: it changed mid-file")
                    etag = response.headers.get("ETag")
                    if self.state.etag and etag and etag != self.state.etag:
                        raise _Restart("the file's ETag changed mid-file")
                    until = self._check_range(response, start, last)
                    self._write_body(i, response, start, until)
                response = None
                if first + self.written[i] <= last:
                    raise Retryable(TransportError(f"{r.name}: the connection closed before part {i} ended"))
            except Retryable as exc:
                if response is not None:
                    self._close(response)
                    response = None
                if first + self.written[i] > start:
                    backoff.progressed()  # bytes arrived: the deadline and the count of failures start again
                exc.wait(backoff, self._sleep)
            except BaseException:
                if response is not None:
                    self._close(response)
                raise

    def _sleep(self, seconds: float) -> None:
        self.r.cancel.check()
        self.stop.sleep(seconds)

    def _write_body(self, i: int, response: HTTPResponse, start: int, last: int) -> None:
        """Write the body of a 206 at its offset, chunk by chunk."""
        offset = start
        while offset <= last:
            try:
                chunk = read_arrived(response, min(CHUNK_SIZE, last + 1 - offset))
            except BROKEN_CONNECTION as exc:
                self._check()  # a shutdown by Ctrl-C or by another part's failure looks like a broken connection
                raise connection_broke(self.r.name, exc) from None
            if not chunk:
                break
            view = memoryview(chunk)
            with self.io_lock:
                if self.closed:
                    raise _Stop()
                while view:  # a full disk is not a broken connection: it is raised as it is
                    n = os.pwrite(self.r.fd, view, offset)
                    view = view[n:]
                    offset += n
                self.written[i] += len(chunk)
                self.moved += len(chunk)
            if self.r.progress:
                self.r.progress(len(chunk))
            with self.cond:
                self.cond.notify_all()
            self._check()
