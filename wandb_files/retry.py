"""When and how long to wait before trying a request again: one policy for GraphQL calls and transfers.

A call has a deadline (`Api(timeout=...)`): its attempts and the waits between them all fit inside it, so
``timeout`` bounds what a user waits for one call, not for one of its attempts. A transfer's deadline starts
again whenever bytes arrive, so a big download is never cut short while it makes progress.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: HTTP statuses worth another try: the server or something in front of it is overloaded or restarting.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

#: A refused connection means nothing listens there: retried only this long, in case the server is restarting.
REFUSED_GRACE_SECONDS = 2.0
#: The shortest timeout an attempt is given, however little of the deadline is left.
MIN_ATTEMPT_SECONDS = 0.05


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    Attributes:
        max_attempts: attempts in all, the first included.
        backoff_base: the wait ceiling after the first failure, in seconds; it doubles each time.
        backoff_max: the largest wait between two attempts, in seconds.
        total_timeout: no new attempt starts after this many seconds since the first (nor since the last
            progress, for a transfer), whatever the call's own deadline.
        attempt_timeout: the read timeout of one attempt; None gives each attempt what is left of the deadline.
    """

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 16.0
    total_timeout: float = 120.0
    attempt_timeout: float | None = None

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `failures` consecutive failures (1 for the first).

        A server's `Retry-After` is honoured, capped at `backoff_max` so one bad header cannot stall a caller.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (failures - 1)))
        return random.uniform(ceiling / 2, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)


class Backoff:
    """The retry state of one call under a `RetryPolicy`: how many attempts failed, since when, until when.

    Args:
        policy: The policy to follow.
        what: What is being retried, for the debug log (never a URL: it may carry a signature).
        deadline: Seconds the whole call may take (attempts and waits); None for the policy's `total_timeout`.
    """

    def __init__(self, policy: RetryPolicy, what: str, deadline: float | None = None) -> None:
        self.policy = policy
        self.what = what
        self.failures = 0
        self.deadline = deadline
        self.started = time.monotonic()

    def _ends(self) -> float:
        limit = self.policy.total_timeout if self.deadline is None else min(self.deadline, self.policy.total_timeout)
        return self.started + limit

    def elapsed(self) -> float:
        """Seconds since the call started (or last progressed)."""
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return self._ends() - time.monotonic()

    def attempt_timeout(self) -> float:
        """The timeout to give the next attempt: the policy's, within what is left of the deadline."""
        left = self.remaining()
        if self.policy.attempt_timeout is not None:
            left = min(left, self.policy.attempt_timeout)
        return max(left, MIN_ATTEMPT_SECONDS)

    def progressed(self) -> None:
        """An attempt moved bytes: the count of failures and the deadline start again from now."""
        self.failures = 0
        self.started = time.monotonic()

    def failed(
        self,
        error: BaseException,
        retry_after: float | None = None,
        *,
        retryable: bool = True,
        within: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Count a failed attempt, then sleep before the next one.

        Args:
            error: What to raise when no attempt is left.
            retry_after: The server's `Retry-After`, in seconds.
            retryable: False when this failure must not be retried at all.
            within: Retry only while the call is younger than this many seconds (e.g. a refused connection).
            sleep: How to wait (a cancellable wait may raise instead of returning).

        Raises:
            BaseException: `error`, when it may not be retried, or the attempts or the time are spent.
        """
        self.failures += 1
        wait = self.policy.delay(self.failures, retry_after)
        now = time.monotonic()
        ends = self._ends() if within is None else min(self._ends(), self.started + within)
        if not retryable or self.failures >= self.policy.max_attempts or now + wait > ends:
            raise error from None
        log.debug("retrying %s in %.2fs after failure %d: %s", self.what, wait, self.failures, error)
        sleep(wait)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """The `Retry-After` header in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
