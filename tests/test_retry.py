"""The retry policy and backoff, as pure logic: waits, Retry-After, attempts, deadlines (no server needed)."""

from __future__ import annotations

import email.utils
import time

import pytest

from wandb_files.retry import Backoff, RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": " 0 "}, 0.0),
        ({}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, None),
    ],
)
def test_retry_after_in_seconds(header: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"Retry-After": later}) <= 31  # type: ignore[operator]
    earlier = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": earlier}) == 0.0


def test_delay_doubles_with_full_jitter_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    for failures, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)):
        waits = [policy.delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), failures
        assert max(waits) - min(waits) > ceiling / 10  # jittered, not a constant
    assert policy.delay(1, retry_after=2.5) == 2.5
    assert policy.delay(1, retry_after=600) == 4.0  # one bad header cannot stall a caller
    assert policy.delay(1, retry_after=-1) == 0.0


def _backoff(policy: RetryPolicy, deadline: float | None = None) -> tuple[Backoff, list[float]]:
    slept: list[float] = []
    backoff = Backoff(policy, "test", deadline=deadline)
    return backoff, slept


def test_failed_sleeps_then_gives_up_after_the_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.01)
    backoff, slept = _backoff(policy)
    error = RuntimeError("boom")
    backoff.failed(error, sleep=slept.append)
    backoff.failed(error, sleep=slept.append)
    with pytest.raises(RuntimeError, match="boom"):
        backoff.failed(error, sleep=slept.append)
    assert len(slept) == 2 and backoff.failures == 3


def test_a_failure_that_may_not_be_retried_is_raised_at_once() -> None:
    backoff, slept = _backoff(RetryPolicy())
    with pytest.raises(KeyError):
        backoff.failed(KeyError("x"), retryable=False, sleep=slept.append)
    assert slept == []


def test_no_wait_may_end_past_the_deadline() -> None:
    backoff, slept = _backoff(RetryPolicy(max_attempts=100, backoff_base=1.0, backoff_max=1.0), deadline=0.5)
    with pytest.raises(ValueError):
        backoff.failed(ValueError("late"), retry_after=1.0, sleep=slept.append)
    assert slept == []
    assert 0 < backoff.attempt_timeout() <= 0.5


def test_within_bounds_retries_of_a_refused_connection() -> None:
    backoff, slept = _backoff(RetryPolicy(max_attempts=100, backoff_base=0.2, backoff_max=0.2), deadline=60)
    backoff.started -= 1.9  # the call began 1.9 s ago
    with pytest.raises(ConnectionRefusedError):
        backoff.failed(ConnectionRefusedError(), retry_after=0.2, within=2.0, sleep=slept.append)
    backoff.failed(ConnectionRefusedError(), retry_after=0.05, within=2.0, sleep=slept.append)
    assert slept == [0.05]


def test_progress_starts_the_count_and_the_deadline_again() -> None:
    backoff, slept = _backoff(RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.01), deadline=10)
    backoff.started -= 9.99
    backoff.failures = 1
    backoff.progressed()
    assert backoff.failures == 0 and backoff.remaining() > 9.9
    backoff.failed(OSError(), sleep=slept.append)
    assert len(slept) == 1


def test_attempt_timeout_takes_the_policys_within_the_deadline() -> None:
    backoff, _ = _backoff(RetryPolicy(attempt_timeout=1.0), deadline=30)
    assert backoff.attempt_timeout() == 1.0
    backoff, _ = _backoff(RetryPolicy(), deadline=30)
    assert 29 < backoff.attempt_timeout() <= 30
    backoff.started -= 100
    assert backoff.attempt_timeout() == pytest.approx(0.05)  # never zero: an attempt still gets a moment
