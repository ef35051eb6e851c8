"""The bulk runner: a pool of workers, one progress bar, Ctrl-C and SIGTERM, failures gathered into one error.

Its flow control (`Cancel`, `Throttle`, `AdaptiveGate`) lives in `flow`, its settings in `settings`."""

from __future__ import annotations

import contextlib
import logging
import queue
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
from wandb_files.transfer.flow import AdaptiveGate, Cancel, Cancelled, ProgressCallback
from wandb_files.transfer.settings import check_max_workers, progress_enabled

if TYPE_CHECKING:
    from wandb_files.http import HTTPClient

#: After Ctrl-C, how long running transfers get to stop at their next chunk before the call returns.
CANCEL_GRACE_SECONDS = 1.0
#: The longest a bulk call waits before it looks again for finished transfers.
COLLECT_SECONDS = 0.02
#: Jobs taken from the listing ahead of the work, per worker (the rest of a huge listing is not read yet).
WINDOW_PER_WORKER = 64

log = logging.getLogger(__name__)


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


class _Job(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int | None: ...


J = TypeVar("J", bound=_Job)
J_contra = TypeVar("J_contra", bound=_Job, contravariant=True)
R = TypeVar("R")


class Pool(Protocol[J_contra, R]):
    """What runs the jobs of a bulk call: a `ThreadPool` by default, or another engine (`engine=`)."""

    def submit(self, job: J_contra) -> Future[R]: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


#: Makes the pool of one call from (workers, the work of one job, the progress callback, the call's controls).
PoolFactory = Callable[[int, Callable[[J], R], ProgressCallback, Cancel], Pool[J, R]]


class ThreadPool(Generic[J, R]):
    """The default engine (a `PoolFactory`): each job's work on a thread of its own, `workers` at once.

    Args:
        workers: How many threads.
        work: The work of one job.
        advance: The call's progress callback (the work reports to it itself).
        cancel: The call's controls (the work checks them itself).
    """

    def __init__(self, workers: int, work: Callable[[J], R], advance: ProgressCallback, cancel: Cancel) -> None:
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
    engine: PoolFactory[J, R] = ThreadPool,
) -> list[R]:
    """Run `work` over `jobs` on `engine` (a thread pool unless the caller gives another) with one progress bar
    (bytes, and files done).

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

        pool: Pool[J, R] = engine(workers, run, advance, cancel)

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
