"""Flow control of one bulk call: stopping it (`Cancel`), its bandwidth limit (`Throttle`), how many of its
attempts run at once (`AdaptiveGate`, lowered on 429s), and the progress callback its transfers report to."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

from wandb_files.http import HTTPResponse

log = logging.getLogger(__name__)

#: What a transfer calls with each count of new bytes (negative when an attempt starts over); in a bulk call it
#: also paces the call to its bandwidth limit.
ProgressCallback = Callable[[int], None]


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
