"""The native engine for bulk downloads: libcurl's multi interface (pycurl, a dependency where it has wheels) in one
thread.

Python threads cost CPU for every small file (a request through urllib3, a thread switch for every chunk under the
GIL); libcurl drives all connections from one thread, so a bulk download of small files spends a fraction of that
(``benchmarks/bench_transfer.py``). The discipline is the same as the pure-Python path's, and the common case is
the only one handled here: a fresh download of a file under 8 MiB whose answer is a 200 with the expected bytes.
The loop thread does no file-system work for such a file beyond a look at what is there: its bytes stay in memory
until it ends, and then the finisher thread claims its temp file (``O_EXCL`` and ``flock``, as ``locks`` does),
writes, hashes and checks it and renames it into place. Creating a file can take a millisecond or more on a busy
disk, and in the loop thread that would hold up every transfer at once. A file that is slow to arrive is claimed
by the loop when its first bytes have waited `FLUSH_SECONDS`, so that an interruption keeps them for the resume.
Anything else (a bigger file, a temp file to resume, a claim held by another process, a redirect, any other
status, a broken connection, bytes that disagree) goes to the pure-Python download of that file (the fallback the
engine is given), which resumes what was written and has the retries, the backoff and the typed errors: the two
engines cannot differ in what they raise. Whether this engine runs at all is `engines.choose_engine`'s decision
(``WANDB_FILES_ENGINE``, pycurl, the session), not this module's: it knows nothing of `downloads`.

Both engines trust the same certificates: the CA bundle requests would use for that URL (``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE``, the session's ``verify``, else certifi's) is libcurl's ``CAINFO`` (or ``CAPATH`` for a folder). A session with proxies or client certificates of its own, URLs that go
through a proxy (``HTTPS_PROXY`` and the like) and ``verify=False`` stay with requests, which knows what they mean.

Far from the server, what counts is how many transfers run at once and that each new one finds a connection ready:
libcurl's multi handle keeps its connections for the next files (one cache for all of its handles), and a share
lets new connections resume TLS sessions and reuse DNS answers.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from requests.utils import DEFAULT_CA_BUNDLE_PATH

from wandb_files.formatting import safe_name
from wandb_files.http import origin
from wandb_files.transfer import ranges
from wandb_files.transfer.flow import Cancel, Cancelled, ProgressCallback
from wandb_files.transfer.hashing import BACKGROUND_HASH_BYTES, md5_matches
from wandb_files.transfer.locks import release_if_empty
from wandb_files.transfer.paths import NO_FOLLOW, local_copy_matches, make_parent, part_path

if TYPE_CHECKING:
    from wandb_files.http import HTTPClient
    from wandb_files.transfer.jobs import DownloadJob

if os.name != "nt":
    import fcntl

log = logging.getLogger(__name__)

_EXCLUSIVE = os.O_RDWR | os.O_CREAT | os.O_EXCL | NO_FOLLOW

#: libcurl's receive buffer: fewer, larger writes into Python (libcurl accepts up to 10 MiB).
BUFFER_SIZE = 1 << 20
#: Files this big go to the Python path: the per-file overhead this engine saves is nothing beside their bytes.
PYTHON_PATH_BYTES = BACKGROUND_HASH_BYTES
#: Bytes wait in memory at most this long before they are written to the temp file.
FLUSH_SECONDS = 0.2
#: How long one turn of the loop waits for sockets (and so how soon it sees a new job or a cancellation).
SELECT_SECONDS = 0.05


def curl_available() -> bool:
    """Whether pycurl can be imported (installed with wandb-files where pycurl ships wheels)."""
    try:
        import pycurl  # noqa: F401
    except ImportError:
        return False
    return True


class _Transfer:
    """One download in flight on a curl handle."""

    __slots__ = ("advance", "buffered", "fd", "flush_by", "future", "job", "md5", "part", "pending", "received")

    def __init__(self, job: DownloadJob, future: Future[Path], part: Path, advance: ProgressCallback) -> None:
        self.job = job
        self.future = future
        self.fd: int | None = None  # the claimed temp file, once claimed
        self.part = part
        self.advance = advance
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.received = 0
        self.buffered: list[bytes] = []
        self.pending = 0
        self.flush_by = 0.0

    def claim(self) -> bool:
        """Create and lock the temp file; False when it exists (another download holds it, or left it to resume)."""
        try:
            fd = os.open(self.part, _EXCLUSIVE, 0o644)
        except FileExistsError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a process that opened it meanwhile waits for us
        except BlockingIOError:  # or it got there first
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def flush(self) -> None:
        """Hash and write what arrived since the last flush into the (claimed) temp file."""
        assert self.fd is not None
        if self.buffered:
            for chunk in self.buffered:
                self.md5.update(chunk)
            if os.writev(self.fd, self.buffered) != self.pending:  # short on a regular file: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.buffered.clear()
            self.pending = 0


class CurlPool:
    """Runs download jobs on one libcurl multi handle in a thread of its own; see the module's docstring.

    Args:
        client: Supplies the key (sent to its own origin only), the User-Agent and the timeout.
        workers: The most transfers at once (fewer while the call's gate is lowered by 429s).
        fallback: The pure-Python download of one job, for everything but the common case.
        advance: The call's progress callback (it also paces the call to its bandwidth limit).
        cancel: The call's controls.
    """

    def __init__(
        self,
        client: HTTPClient,
        workers: int,
        fallback: Callable[[DownloadJob], Path],
        advance: ProgressCallback,
        cancel: Cancel,
    ) -> None:
        import pycurl

        self._pycurl = pycurl
        self._client = client
        self._workers = workers
        self._fallback = fallback
        self._advance = advance
        self._cancel = cancel
        # Jobs, and None to wake the loop when the pool is shut down.
        self._inbound: queue.SimpleQueue[tuple[DownloadJob, Future[Path]] | None] = queue.SimpleQueue()
        self._waiting: collections.deque[tuple[DownloadJob, Future[Path]]] = collections.deque()
        self._closed = threading.Event()
        self._helpers = ThreadPoolExecutor(max_workers=max(2, workers // 4), thread_name_prefix="wandb-files")
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wandb-files-finish")
        self._ended: list[tuple[_Transfer, int, str | None]] = []
        self._multi = pycurl.CurlMulti()
        self._idle: list[Any] = []
        self._active: dict[Any, _Transfer] = {}
        self._folders: set[Path] = set()  # folders made (or found) for earlier files of the call
        self._headers = [f"User-Agent: {_text(client.session.headers.get('User-Agent', 'wandb-files'))}"]
        self._auth = f"Authorization: {_text(client.authorization)}"
        self._trusts: dict[tuple[str, str, int | None], tuple[int, str] | None] = {}
        self._handle_trust: dict[Any, tuple[int, str]] = {}
        # TLS sessions and DNS answers shared by every handle (connections already are, by the multi handle).
        self._share = pycurl.CurlShare()
        self._share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_SSL_SESSION)
        self._share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_DNS)
        self._thread = threading.Thread(target=self._loop, name="wandb-files-curl", daemon=True)
        self._thread.start()

    # --- the pool protocol (any thread) ---------------------------------------------------------------

    def submit(self, job: DownloadJob) -> Future[Path]:
        future: Future[Path] = Future()
        self._inbound.put((job, future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed.set()
        self._inbound.put(None)  # the loop may be waiting for a job: it ends now, not at its next turn
        if cancel_futures:
            self._cancel.set()
        # Even without `wait`, the loop stops within a turn once cancelled: joined so that no callback runs
        # while the interpreter exits.
        self._thread.join(None if wait else 1.0)
        self._finisher.shutdown(wait=wait)
        self._helpers.shutdown(wait=wait, cancel_futures=cancel_futures)

    # --- the loop (its own thread) --------------------------------------------------------------------

    def _loop(self) -> None:
        pycurl = self._pycurl
        try:
            while True:
                if self._cancel.is_set():
                    self._stop_all()
                    return
                self._take_inbound()
                self._start_waiting()
                if not self._active:
                    if self._closed.is_set() and not self._waiting and self._inbound.empty():
                        return
                    with contextlib.suppress(queue.Empty):
                        item = self._inbound.get(timeout=SELECT_SECONDS)
                        if item is not None:
                            self._waiting.append(item)
                    continue
                while True:
                    status, _ = self._multi.perform()
                    if status != pycurl.E_CALL_MULTI_PERFORM:
                        break
                if self._harvest() and self._waiting:
                    continue  # start the next files at once, on the connections that just came free
                if self._active:
                    # libcurl may want to be called back sooner than a socket wakes us (its own timers).
                    wanted = self._multi.timeout()
                    seconds = SELECT_SECONDS if wanted < 0 else min(SELECT_SECONDS, wanted / 1000)
                    if seconds > 0:
                        self._multi.select(seconds)
        except BaseException as exc:  # every job still waiting learns of it
            for handle in list(self._active):
                _fail(self._forget(handle).future, exc)
            for _, future in self._waiting:
                _fail(future, exc)
            raise
        finally:
            for handle in self._idle:
                handle.close()
            self._multi.close()
            self._share.close()

    def _take_inbound(self) -> None:
        while True:
            try:
                item = self._inbound.get_nowait()
                if item is not None:
                    self._waiting.append(item)
            except queue.Empty:
                return

    def _start_waiting(self) -> None:
        gate = self._cancel.gate
        while self._waiting and len(self._active) < self._workers:
            if gate is not None and not gate.try_acquire():
                return
            job, future = self._waiting.popleft()
            started = False
            try:
                if future.set_running_or_notify_cancel():
                    started = self._start(job, future)
            except BaseException:
                if gate is not None:
                    gate.release()
                raise
            if not started and gate is not None:
                gate.release()

    def _start(self, job: DownloadJob, future: Future[Path]) -> bool:
        """Begin `job` on a handle; False when it was settled (or handed to the fallback) at once."""
        big = min(PYTHON_PATH_BYTES, ranges.THRESHOLD)
        trust = self._trust(job.url) if (job.size or 0) < big else None
        if trust is None:
            # A big file gains nothing here (its cost is its bytes) and has the Python path's background md5 and
            # ranged parts (whatever ranges' threshold is); a proxy for that origin, or no verification, is
            # requests' business.
            self._hand_over(job, future)
            return False
        part = part_path(job.target)
        try:
            if job.target.parent not in self._folders:
                make_parent(job.target, job.name)
                self._folders.add(job.target.parent)
            if os.path.lexists(part):  # a temp file to resume, or one another process holds: the Python path
                self._hand_over(job, future)
                return False
            # Another process may finish this file meanwhile: its temp file, claimed at the end, tells.
            if local_copy_matches(job.target, job.size, job.md5):
                log.debug("%s: the local copy already holds these bytes", safe_name(job.name))
                if job.size:
                    self._advance(job.size)
                future.set_result(job.target)
                return False
        except Exception as exc:  # noqa: BLE001 - the job's own failure, as download() would raise it
            future.set_exception(exc)
            return False
        transfer = _Transfer(job, future, part, self._advance)
        handle = self._idle.pop() if self._idle else self._new_handle()
        pycurl = self._pycurl
        handle.setopt(pycurl.URL, job.url)
        if self._handle_trust.get(handle) != trust:
            previous = self._handle_trust.get(handle)
            if previous is not None and previous[0] != trust[0]:
                handle.unsetopt(previous[0])
            handle.setopt(*trust)
            self._handle_trust[handle] = trust
        auth = self._client.auth_for(job.url) is not None  # the key goes only to the server's own origin
        handle.setopt(pycurl.HTTPHEADER, [*self._headers, self._auth] if auth else self._headers)
        handle.setopt(pycurl.WRITEFUNCTION, lambda chunk: self._write(transfer, chunk))
        self._active[handle] = transfer
        self._multi.add_handle(handle)
        return True

    def _new_handle(self) -> Any:
        pycurl = self._pycurl
        handle = pycurl.Curl()
        handle.setopt(pycurl.BUFFERSIZE, BUFFER_SIZE)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)  # a redirect is the Python path's (it drops the key off-origin)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(self._client.timeout * 1000))
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)  # no byte for the client's timeout: a failed attempt
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, int(self._client.timeout)))
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.SHARE, self._share)
        return handle

    def _trust(self, url: str) -> tuple[int, str] | None:
        """The CA option (``CAINFO`` or ``CAPATH``, and its path) for `url`'s origin, as requests would verify it;
        None when that origin goes to the Python path (a proxy, or ``verify=False``)."""
        key = origin(url)
        if key in self._trusts:
            return self._trusts[key]
        found = None
        if self._client.direct_pool(url) is not None:  # None: a proxy for that origin
            settings = self._client.session.merge_environment_settings(url, {}, True, None, None)
            verify = settings.get("verify", True)
            if verify is True or verify is None:
                verify = DEFAULT_CA_BUNDLE_PATH
            if isinstance(verify, str):
                found = (self._pycurl.CAPATH if os.path.isdir(verify) else self._pycurl.CAINFO, verify)
        self._trusts[key] = found
        return found

    def _write(self, transfer: _Transfer, chunk: bytes) -> int | None:
        # The status is not known here (pycurl refuses getinfo while perform runs): the body is kept as it
        # comes and a status other than 200 empties the temp file when the transfer ends. A small fast file is
        # hashed and written when it ends, by the finisher thread; a big or slow one as it comes.
        try:
            transfer.received += len(chunk)
            if not transfer.buffered:
                transfer.flush_by = time.monotonic() + FLUSH_SECONDS
            transfer.buffered.append(chunk)
            transfer.pending += len(chunk)
            # A fast small file is one write; a big or slow one reaches its temp file as it comes (for a resume).
            if transfer.pending >= BUFFER_SIZE or time.monotonic() >= transfer.flush_by:
                if transfer.fd is None and not transfer.claim():
                    return 0  # another download has the temp file: this one ends, and goes to the Python path
                transfer.flush()
            transfer.advance(len(chunk))  # may wait (the bandwidth limit) or raise Cancelled
        except BaseException:  # noqa: BLE001 - a full disk or a stop: the Python path raises it as it should
            return 0
        return None

    def _harvest(self) -> int:
        """Settle the transfers that ended; how many did."""
        ended = 0
        while True:
            queued, succeeded, failed = self._multi.info_read()
            for handle in succeeded:
                self._finish(handle, None)
            for handle, _code, message in failed:
                self._finish(handle, message)
            ended += len(succeeded) + len(failed)
            if not queued:
                if self._ended:
                    self._finisher.submit(self._complete_all, self._ended)
                    self._ended = []
                return ended

    def _finish(self, handle: Any, failure: str | None) -> None:
        """Take an ended transfer off its handle; the finisher thread hashes, checks and renames it."""
        status = handle.getinfo(self._pycurl.RESPONSE_CODE)
        if status:
            self._cancel.answered(status)
        self._ended.append((self._forget(handle), status, failure))

    def _complete_all(self, ended: list[tuple[_Transfer, int, str | None]]) -> None:
        # In a thread of its own: md5 releases the GIL, so it runs beside the loop's network work, on the
        # other core, instead of between two of its turns.
        for transfer, status, failure in ended:
            try:
                self._complete(transfer, status, failure)
            except BaseException as exc:  # noqa: BLE001 - the file's outcome (say a full disk at the rename)
                with contextlib.suppress(OSError):
                    transfer.close()
                _fail(transfer.future, exc)

    def _complete(self, transfer: _Transfer, status: int, failure: str | None) -> None:
        job = transfer.job
        if transfer.fd is None and (failure is not None or status != 200 or not transfer.claim()):
            # Nothing on disk: another answer than the file, a broken connection (what arrived is not worth a
            # resume), or a temp file that another download holds. The Python path starts over (or waits for
            # that download and finds the file in place).
            if transfer.received:
                self._advance(-transfer.received)
            log.debug("%s: handed to the Python path (%s)", safe_name(job.name), failure or f"HTTP {status}")
            self._hand_over(job, transfer.future)
            return
        assert transfer.fd is not None
        try:
            transfer.flush()
        except OSError as exc:  # a full disk: the Python path raises it as it should
            failure = failure or f"writing the temp file failed ({exc})"
        problem = failure or (_integrity_problem(transfer, job) if status == 200 else f"HTTP {status}")
        if not problem:
            os.replace(transfer.part, job.target)
            transfer.close()
            log.debug("%s: %d bytes verified (curl)", safe_name(job.name), transfer.received)
            transfer.future.set_result(job.target)
            return
        if failure is None or status != 200:
            # Another answer than these bytes (its body is not the file's), or bytes that disagree: the Python
            # path starts over, and retries or raises as it should.
            os.ftruncate(transfer.fd, 0)
            if transfer.received:
                self._advance(-transfer.received)
        # A broken connection keeps what arrived: the Python path resumes it with Range.
        log.debug("%s: handed to the Python path (%s)", safe_name(job.name), problem)
        release_if_empty(transfer.fd, transfer.part)
        transfer.close()
        self._hand_over(job, transfer.future)

    def _forget(self, handle: Any) -> _Transfer:
        """Take `handle` off the multi handle, back to the idle ones; its transfer."""
        transfer = self._active.pop(handle)
        self._multi.remove_handle(handle)
        handle.setopt(self._pycurl.WRITEFUNCTION, _discard)
        self._idle.append(handle)
        if self._cancel.gate is not None:
            self._cancel.gate.release()
        return transfer

    def _hand_over(self, job: DownloadJob, future: Future[Path]) -> None:
        def run() -> None:
            try:
                future.set_result(self._fallback(job))
            except BaseException as exc:  # noqa: BLE001 - the job's outcome, whatever it is
                future.set_exception(exc)

        try:
            self._helpers.submit(run)
        except RuntimeError:  # the call is shutting down
            future.set_exception(Cancelled())

    def _stop_all(self) -> None:
        """Ctrl-C: drop every transfer, keeping what its temp file holds; queued jobs never start."""
        for handle in list(self._active):
            transfer = self._forget(handle)
            if transfer.fd is not None:  # a slow file: what arrived is kept for the resume
                with contextlib.suppress(OSError):
                    transfer.flush()
                release_if_empty(transfer.fd, transfer.part)
                transfer.close()
            _fail(transfer.future, Cancelled())
        self._take_inbound()
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.cancel():
                _fail(future, Cancelled())


def _integrity_problem(transfer: _Transfer, job: DownloadJob) -> str | None:
    if job.size is not None and transfer.received != job.size:
        return f"received {transfer.received} bytes, expected {job.size}"
    if job.md5 and not md5_matches(transfer.md5.digest(), job.md5):
        return "md5 mismatch"
    return None


def _fail(future: Future[Path], exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # already settled
        future.set_exception(exc)


def _discard(chunk: bytes) -> int:
    return len(chunk)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


__all__ = ["CurlPool", "curl_available"]
