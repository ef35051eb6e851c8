"""When and how long to wait before trying a request again: one policy for GraphQL calls and transfers."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass
from typing import Mapping

log = logging.getLogger(__name__)

#: HTTP statuses worth another try: the server or something in front of it is overloaded or restarting.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    Attributes:
        max_attempts: attempts in all, the first included.
        backoff_base: the wait ceiling after the first failure, in seconds; it doubles each time.
        backoff_max: the largest wait between two attempts, in seconds.
        total_timeout: no new attempt starts after this many seconds since the first.
    """

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 16.0
    total_timeout: float = 120.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `failures` consecutive failures (1 for the first).

        A server's `Retry-After` is honoured, capped at `backoff_max` so one bad header cannot stall a caller.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (failures - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def should_retry(self, failures: int, started: float, wait: float) -> bool:
        """Whether another attempt fits in the budget after `failures` failures, waiting `wait` seconds first."""
        return failures < self.max_attempts and (time.monotonic() - started) + wait <= self.total_timeout


NO_RETRY = RetryPolicy(max_attempts=1)


class Backoff:
    """The retry state of one call under a `RetryPolicy`: how many attempts failed, since when.

    Args:
        policy: The policy to follow.
        what: What is being retried, for the debug log (never a URL: it may carry a signature).
    """

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy = policy
        self.what = what
        self.failures = 0
        self.started = time.monotonic()

    def failed(self, error: BaseException, retry_after: float | None = None, *, retryable: bool = True) -> None:
        """Count a failed attempt, then sleep before the next one.

        Raises:
            BaseException: `error`, when it may not be retried or the policy's attempts or time are spent.
        """
        self.failures += 1
        wait = self.policy.delay(self.failures, retry_after)
        if not retryable or not self.policy.should_retry(self.failures, self.started, wait):
            raise error from None
        log.debug("retrying %s in %.2fs after failure %d: %s", self.what, wait, self.failures, error)
        time.sleep(wait)


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
