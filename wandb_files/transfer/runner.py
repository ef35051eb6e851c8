"""The bulk runner: a thread pool, one progress bar, cancellation on Ctrl-C, failures gathered into one error;
and what every transfer shares: how a broken connection is told and retried."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from typing import TYPE_CHECKING, Protocol, TypeVar

import requests
import urllib3
from tqdm.auto import tqdm

from wandb_files.errors import DownloadError, Interrupted, TransportError, UploadError
from wandb_files.graphql import HTTPResponse, connection_problem
from wandb_files.retry import REFUSED_GRACE_SECONDS

if TYPE_CHECKING:
    from wandb_files.graphql import GraphQLClient

#: Parallel transfers unless told otherwise (chosen by measurement: see the README's performance section).
DEFAULT_MAX_WORKERS = 32
#: After Ctrl-C, how long running transfers get to stop at their next chunk before the call returns.
CANCEL_GRACE_SECONDS = 1.0

ProgressCallback = Callable[[int], None]
#: A connection that failed or broke: worth another attempt. (A reset while requests reads a response body
#: surfaces as ChunkedEncodingError, which is not a ConnectionError.)
BROKEN_CONNECTION = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    OSError,
)


class Cancelled(Exception):
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
        """Raise `Cancelled` if the call was asked to stop."""
        if self._event.is_set():
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less if asked to stop (then raise `Cancelled`)."""
        if self._event.wait(seconds):
            raise Cancelled()

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


NEVER = Cancel()


class Retryable(Exception):
    def __init__(self, error: Exception, retry_after: float | None = None, within: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.within = within


def connection_failure(name: str, verb: str, exc: BaseException) -> Retryable:
    problem, unreachable = connection_problem(exc)
    return Retryable(
        TransportError(f"{name}: could not {verb} it ({problem})"),
        within=REFUSED_GRACE_SECONDS if unreachable else None,
    )


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


class _Job(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int | None: ...


J = TypeVar("J", bound=_Job)
R = TypeVar("R")


def run_parallel(
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
    results: dict[int, R] = {}  # by the job's index
    failures: list[tuple[str, BaseException]] = list(refused)
    with tqdm(
        total=sum(job.size or 0 for job in jobs),
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        disable=progress_enabled(progress),
        desc=f"{verb}ing",
        dynamic_ncols=True,
        postfix={"files": f"0/{len(jobs)}"},
    ) as bar:

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
            except Cancelled:
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
            kept = [results[i] for i in sorted(results)]
            raise Interrupted(
                kept, sorted(failures, key=lambda item: item[0]), len(jobs) - len(kept) - (len(failures) - len(refused))
            ) from None
        finally:
            pool.shutdown(wait=not cancel.is_set())
    succeeded = [results[i] for i in sorted(results)]
    if failures:
        failures.sort(key=lambda item: item[0])
        raise (DownloadError if verb == "download" else UploadError)(failures, succeeded)
    return succeeded
