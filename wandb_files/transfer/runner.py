"""The bulk runner: a thread pool, one progress bar, cancellation on Ctrl-C, failures gathered into one error."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from tqdm.auto import tqdm

from wandb_files.errors import BulkTransferError, DownloadError, Interrupted, UploadError
from wandb_files.formatting import BYTE_UNIT
from wandb_files.http import HTTPResponse

if TYPE_CHECKING:
    from wandb_files.http import HTTPClient

#: Parallel transfers unless told otherwise (chosen by measurement: docs/performance.md).
DEFAULT_MAX_WORKERS = 32
#: After Ctrl-C, how long running transfers get to stop at their next chunk before the call returns.
CANCEL_GRACE_SECONDS = 1.0
#: The longest a bulk call waits before it looks again for finished transfers.
COLLECT_SECONDS = 0.02
#: Jobs taken from the listing ahead of the work, per worker (the rest of a huge listing is not read yet).
WINDOW_PER_WORKER = 64

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Direction:
    """Which way a bulk call moves bytes, and what follows from it.

    Attributes:
        label: What the progress bar says (``downloading``).
        error: What gathers the call's failures.
        paced_by_progress: The bandwidth limit holds back each chunk as its progress is counted (downloads);
            otherwise the sender paces itself as it reads the file (uploads).
    """

    label: str
    error: type[BulkTransferError]
    paced_by_progress: bool


DOWNLOAD = Direction("downloading", DownloadError, paced_by_progress=True)
UPLOAD = Direction("uploading", UploadError, paced_by_progress=False)


class Cancelled(Exception):
    """Raised inside a transfer that was asked to stop (its temp file is kept)."""


class Cancel:
    """The controls of one bulk call: stopping it, its bandwidth limit and its share of concurrent requests.

    Each transfer checks it between chunks and before each attempt; responses being read are shut down when
    it is set, so that a read blocked on a slow link returns at once instead of at its timeout. Each attempt
    holds one of its `slot`s; the HTTP statuses transfers report (`answered`) let it lower the number of slots
    on 429s and raise it again when they stop. `pace` holds a transfer back to the call's bandwidth limit.

    Args:
        max_bandwidth: Bytes per second across every transfer of the call; None for no limit.
        concurrency: The most attempts at once (the call's workers); None for no limit.
    """

    def __init__(self, max_bandwidth: float | None = None, concurrency: int | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reading: set[HTTPResponse] = set()
        self.throttle = Throttle(max_bandwidth) if max_bandwidth else None
        self.gate = AdaptiveGate(concurrency) if concurrency else None

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
        """Raise `Cancelled` if the call was asked to stop."""
        if self._event.is_set():
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less if asked to stop (then raise `Cancelled`)."""
        if self._event.wait(seconds):
            raise Cancelled()

    def pace(self, nbytes: int) -> None:
        """Wait as long as moving `nbytes` more takes at the call's bandwidth limit (at once without one)."""
        if self.throttle is not None and nbytes > 0:
            wait = self.throttle.reserve(nbytes)
            if wait > 0:
                self.sleep(wait)

    def answered(self, status: int) -> None:
        """Hear the HTTP status of an attempt: 429 lowers the call's concurrency, successes raise it again."""
        if self.gate is not None:
            self.gate.record(status)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the call's concurrent attempts (waiting for one, or until the call is stopped)."""
        if self.gate is None:
            yield
            return
        self.gate.acquire(self)
        try:
            yield
        finally:
            self.gate.release()

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


class Throttle:
    """A bandwidth limit shared by threads: each reservation of bytes says how long to wait before using them.

    A generic cell rate: the limit's clock runs ahead of real time by what was reserved; up to `BURST_SECONDS`
    of unused allowance may be spent at once, so an idle moment is not lost but cannot pile up either.

    Args:
        rate: Bytes per second.
    """

    BURST_SECONDS = 0.05

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._lock = threading.Lock()
        self._clock = time.monotonic()

    def reserve(self, nbytes: int) -> float:
        """Book `nbytes`; returns the seconds to wait before moving them."""
        with self._lock:
            now = time.monotonic()
            self._clock = max(self._clock, now - self.BURST_SECONDS) + nbytes / self.rate
            return self._clock - now - self.BURST_SECONDS if self._clock - now > self.BURST_SECONDS else 0.0


class AdaptiveGate:
    """How many attempts of a call may run at once: halved on 429 (at most once per `COOL_DOWN_SECONDS`),
    raised by one after as many successes in a row as the current limit, back up to `ceiling`.

    Args:
        ceiling: The most at once (the call's workers).
    """

    COOL_DOWN_SECONDS = 0.25
    POLL_SECONDS = 0.05

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.lowest = ceiling  # for reports and tests: how far it went down
        self._active = 0
        self._successes = 0
        self._lowered_at = -math.inf
        self._cond = threading.Condition()

    def acquire(self, cancel: Cancel) -> None:
        with self._cond:
            while self._active >= self.limit:
                cancel.check()
                self._cond.wait(self.POLL_SECONDS)
            self._active += 1

    def try_acquire(self) -> bool:
        with self._cond:
            if self._active >= self.limit:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify()

    def record(self, status: int) -> None:
        with self._cond:
            if status == 429:
                self._successes = 0
                now = time.monotonic()
                if now - self._lowered_at >= self.COOL_DOWN_SECONDS and self.limit > 1:
                    self.limit = max(1, self.limit // 2)
                    self.lowest = min(self.lowest, self.limit)
                    self._lowered_at = now
                    log.debug("429 from the server: at most %d transfers at once", self.limit)
            elif status < 400:
                self._successes += 1
                if self.limit < self.ceiling and self._successes >= self.limit:
                    self._successes = 0
                    self.limit += 1
                    self._cond.notify_all()


NEVER = Cancel()


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


_BANDWIDTH = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?)?(?:b(?:/s)?)?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bandwidth(text: str, what: str = "max_bandwidth") -> float:
    """Bytes per second from ``5000000``, ``5MB``, ``5 MB/s``, ``40M`` or ``4MiB`` (decimal unless ``i``).

    Raises:
        ValueError: not a positive number with an optional unit (the message names `what`).
    """
    match = _BANDWIDTH.match(text)
    value = float(match.group(1)) * _SCALE[(match.group(2) or "").lower()] if match else 0.0
    if value <= 0:
        raise ValueError(f"{what} must be a positive number of bytes per second (e.g. 5000000 or 5MB), got {text!r}")
    return value


def check_max_bandwidth(max_bandwidth: object) -> float | None:
    """`max_bandwidth` in bytes/s if usable; when None, `WANDB_FILES_MAX_BANDWIDTH`, else None (no limit).

    Raises:
        TypeError: not a number or a string.
        ValueError: not positive, or the variable is set to something else than a bandwidth.
    """
    if max_bandwidth is None:
        raw = os.environ.get("WANDB_FILES_MAX_BANDWIDTH", "").strip()
        return parse_bandwidth(raw, "WANDB_FILES_MAX_BANDWIDTH") if raw else None
    if isinstance(max_bandwidth, str):
        return parse_bandwidth(max_bandwidth)
    if isinstance(max_bandwidth, bool) or not isinstance(max_bandwidth, (int, float)):
        raise TypeError(f"max_bandwidth must be a number of bytes per second, not {type(max_bandwidth).__name__}")
    if not max_bandwidth > 0 or math.isinf(max_bandwidth):
        raise ValueError(f"max_bandwidth must be a positive number of bytes per second, got {max_bandwidth!r}")
    return float(max_bandwidth)


def progress_enabled(progress: bool | None) -> bool | None:
    """tqdm's `disable` for a `progress` argument: None means on for terminals, off for logs and when
    `WANDB_FILES_DISABLE_PROGRESS` is set."""
    if progress is not None:
        return not progress
    if os.environ.get("WANDB_FILES_DISABLE_PROGRESS", "").strip() not in ("", "0", "false", "False"):
        return True
    return None  # tqdm: off when stderr is not a terminal


class _Job(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int | None: ...


J = TypeVar("J", bound=_Job)
J_contra = TypeVar("J_contra", bound=_Job, contravariant=True)
R = TypeVar("R")


class Pool(Protocol[J_contra, R]):
    """What runs the jobs of a bulk call: a thread pool by default, or another engine (`engine=`)."""

    def submit(self, job: J_contra) -> Future[R]: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


#: Makes the pool of one call from (workers, the work of one job, the progress callback, the call's controls).
PoolFactory = Callable[[int, Callable[[J], R], ProgressCallback, Cancel], Pool[J, R]]


class _ThreadPool(Generic[J, R]):
    def __init__(self, workers: int, work: Callable[[J], R]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wandb-files")
        self._work = work

    def submit(self, job: J) -> Future[R]:
        return self._pool.submit(self._work, job)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


@contextlib.contextmanager
def sigterm_as_interrupt(*, force: bool = False) -> Iterator[None]:
    """While inside, SIGTERM stops a bulk call the way Ctrl-C does: promptly, keeping what can be resumed.

    Only in the main thread (where Python runs signal handlers), and, unless `force`, only where SIGTERM
    still has its default action: a program with a handler of its own keeps it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not force and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_END = object()


def run_parallel(
    client: HTTPClient,
    jobs: Iterable[J],
    work: Callable[[J, ProgressCallback, Cancel], R],
    *,
    max_workers: int | None,
    progress: bool | None,
    direction: Direction,
    refused: Sequence[tuple[str, BaseException]] = (),
    max_bandwidth: float | None = None,
    engine: PoolFactory[J, R] | None = None,
) -> list[R]:
    """Run `work` over `jobs` on a thread pool with one progress bar (bytes, and files done).

    `jobs` is read as the work goes (a listing that arrives page by page starts moving bytes with its first
    page) and at most `WINDOW_PER_WORKER` jobs a worker are taken ahead of the work, so a huge listing is never
    held whole. Every job runs, whatever others do; failures are gathered into one `DownloadError`/`UploadError`.
    `refused` (files the caller refused, reported with the failures) may grow while `jobs` is read.
    Ctrl-C sets the call's `Cancel`, drops the queued jobs, gives the running ones `CANCEL_GRACE_SECONDS`
    to stop, and raises `Interrupted` with what had finished. An error raised while `jobs` is read (say a
    listing that failed) is raised once the jobs already taken have finished.
    """
    workers = check_max_workers(max_workers)
    client.ensure_pool(workers)
    paced = direction.paced_by_progress
    lock = threading.Lock()
    cancel = Cancel(max_bandwidth=max_bandwidth, concurrency=workers)
    done = submitted = 0
    results: dict[int, R] = {}  # by the job's index
    names: dict[Future[R], tuple[int, str]] = {}
    failures: list[tuple[str, BaseException]] = []  # of the work; `refused` may grow while `jobs` is read
    finished: queue.SimpleQueue[Future[R] | object] = queue.SimpleQueue()
    window = threading.Semaphore(WINDOW_PER_WORKER * workers)
    reading_error: list[BaseException] = []
    with tqdm(
        total=0,
        disable=progress_enabled(progress),
        desc=direction.label,
        dynamic_ncols=True,
        postfix={"files": "0/0"},
        unit="B",
        unit_scale=True,
        unit_divisor=BYTE_UNIT,
    ) as bar:

        def advance(n: int) -> None:
            with lock:
                bar.update(n)
            if paced:
                cancel.pace(n)

        def run(job: J) -> R:
            return work(job, advance, cancel)

        pool: Pool[J, R] = engine(workers, run, advance, cancel) if engine is not None else _ThreadPool(workers, run)

        def on_done(future: Future[R]) -> None:
            window.release()
            finished.put(future)

        def feed() -> None:
            nonlocal submitted
            try:
                for i, job in enumerate(jobs):
                    while not window.acquire(timeout=AdaptiveGate.POLL_SECONDS):
                        cancel.check()
                    cancel.check()
                    with lock:
                        bar.total = (bar.total or 0) + (job.size or 0)
                        bar.set_postfix(files=f"{done}/{i + 1}", refresh=False)
                        bar.refresh()
                    future = pool.submit(job)
                    with lock:
                        names[future] = (i, job.name)
                        submitted = i + 1
                    future.add_done_callback(on_done)
            except Cancelled:
                pass
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
                reading_error.append(exc)
            finally:
                finished.put(_END)

        def collect(future: Future[R]) -> None:
            nonlocal done
            with lock:
                i, name = names.pop(future)
            try:
                results[i] = future.result()
            except Cancelled:
                return
            except Exception as exc:  # noqa: BLE001 - every failure is reported together below
                failures.append((name, exc))
            with lock:
                done += 1
                bar.set_postfix(files=f"{done}/{submitted}", refresh=False)

        feeder = threading.Thread(target=feed, name="wandb-files-feed", daemon=True)
        try:
            with sigterm_as_interrupt():
                feeder.start()
                _wait_for_all(finished, collect, lambda: bool(names), lock)
        except KeyboardInterrupt:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            with lock:
                pending = list(names)
            stopped, _ = wait(pending, timeout=CANCEL_GRACE_SECONDS)
            for future in stopped:
                if not future.cancelled() and future in names:
                    collect(future)
            kept = [results[i] for i in sorted(results)]
            known = len(jobs) if isinstance(jobs, Sized) else submitted
            raise Interrupted(
                kept,
                sorted([*refused, *failures], key=lambda item: item[0]),
                max(0, known - len(kept) - len(failures)),
            ) from None
        finally:
            pool.shutdown(wait=not cancel.is_set())
            if cancel.gate is not None and cancel.gate.lowest < workers:
                log.debug("concurrency went down to %d of %d on 429s", cancel.gate.lowest, workers)
    if reading_error:
        raise reading_error[0]
    succeeded = [results[i] for i in sorted(results)]
    failures = [*refused, *failures]
    if failures:
        failures.sort(key=lambda item: item[0])
        raise direction.error(failures, succeeded)
    return succeeded


def _wait_for_all(
    finished: queue.SimpleQueue[Any], collect: Callable[[Any], None], pending: Callable[[], bool], lock: threading.Lock
) -> None:
    """Collect finished futures until the jobs have all been read and every one of them has finished.

    It looks at the queue in naps (1 ms, doubling to `COLLECT_SECONDS` while nothing comes) rather than being
    woken for each future: a wake-up for each of thousands of small files costs more CPU (futexes, handing the
    GIL over) than the files' own bookkeeping. A nap ends early on Ctrl-C, like any sleep.
    """
    fed = False
    nap = 0.001
    while True:
        try:
            item = finished.get_nowait()
        except queue.Empty:
            time.sleep(nap)
            nap = min(nap * 2, COLLECT_SECONDS)
            continue
        nap = 0.001
        if item is _END:
            fed = True
        else:
            collect(item)
        with lock:
            if fed and not pending():
                return
