"""RetryPolicy decisions, backoff schedules, Retry-After, budget: all with an injected clock, no sleeping."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from promoflow.client import (
    ApiError,
    ConnectionFailedError,
    RequestTimeoutError,
    RetryPolicy,
    TransportError,
)
from promoflow.client._exceptions import error_from_response
from promoflow.client._retry import parse_retry_after

from ._support import FakeClock


def _api(status: int, code: str = "X", retry_after: str | None = None) -> ApiError:
    headers = httpx.Headers({"Retry-After": retry_after} if retry_after is not None else {})
    body = f'{{"statusCode": {status}, "errorCode": "{code}", "message": "m"}}'.encode()
    return error_from_response(status, headers, body)


def _policy(**changes: object) -> RetryPolicy:
    clock = FakeClock()
    base = RetryPolicy(clock=clock, sleep=clock.sleep, rng=lambda: 1.0)
    return base.replace(**changes)


# ------------------------------------------------------------------------------------------------ decisions


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert RetryPolicy().is_retryable(_api(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 415, 422, 501, 505])
def test_other_statuses_are_never_retried(status: int) -> None:
    assert not RetryPolicy().is_retryable(_api(status))


def test_idempotency_key_in_use_is_retried_but_other_conflicts_are_not() -> None:
    policy = RetryPolicy()
    assert policy.is_retryable(_api(409, "IdempotencyKeyInUse"))
    assert not policy.is_retryable(_api(409, "PromotionAlreadyRedeemed"))
    assert not policy.is_retryable(_api(422, "IdempotencyKeyMismatch"))


def test_transport_failures() -> None:
    policy = RetryPolicy()
    assert policy.is_retryable(ConnectionFailedError("refused", may_have_reached_server=False))
    assert policy.is_retryable(RequestTimeoutError("slow", may_have_reached_server=True))
    # A request that cannot be sent at all (bad scheme, proxy misconfigured) will not improve.
    assert not policy.is_retryable(TransportError("ftp://", may_have_reached_server=False))


# ------------------------------------------------------------------------------------------------ schedules


def test_exponential_backoff_is_capped() -> None:
    policy = _policy(base_delay=0.5, multiplier=2.0, max_delay=3.0, jitter="none")
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_spans_zero_to_the_backoff() -> None:
    high = _policy(base_delay=1.0, max_delay=10.0, jitter="full", rng=lambda: 0.999)
    low = high.replace(rng=lambda: 0.0)
    assert high.backoff(3) == pytest.approx(3.996)
    assert low.backoff(3) == 0.0


def test_decorrelated_jitter_grows_from_the_previous_wait() -> None:
    policy = _policy(base_delay=1.0, max_delay=20.0, jitter="decorrelated", rng=lambda: 1.0)
    assert policy.backoff(1) == 3.0
    assert policy.backoff(2, previous=3.0) == 9.0
    assert policy.backoff(3, previous=9.0) == 20.0  # capped
    assert policy.replace(rng=lambda: 0.0).backoff(2, previous=9.0) == 1.0


def test_background_follows_engage_gaps_never_shorter() -> None:
    for rng in (0.0, 0.5, 0.999):
        policy = RetryPolicy.background(rng=lambda rng=rng: rng)
        gaps = [policy.backoff(n) for n in range(1, 6)]
        for gap, engage in zip(gaps, (10, 30, 60, 300, 300), strict=True):
            assert engage <= gap <= engage * 1.1
    policy = RetryPolicy.background()
    assert policy.max_attempts == 5
    assert policy.total_budget is not None and policy.total_budget >= 10 + 30 + 60 + 300


def test_interactive_is_short() -> None:
    policy = RetryPolicy.interactive()
    assert policy.max_attempts == 3
    assert policy.total_budget == 3.0
    assert policy.max_retry_after <= 3.0
    assert RetryPolicy.interactive(max_attempts=2).max_attempts == 2


def test_never_makes_one_attempt() -> None:
    state = RetryPolicy.never().begin()
    state.start_attempt()
    assert state.next_delay(_api(503)) is None


def test_policy_is_a_frozen_value() -> None:
    assert RetryPolicy.interactive() == RetryPolicy.interactive(sleep=lambda s: None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().max_attempts = 9  # type: ignore[misc]
    assert RetryPolicy().replace(read_before_retry=True).read_before_retry


@pytest.mark.parametrize(
    "changes",
    [
        {"max_attempts": 0},
        {"base_delay": -1},
        {"multiplier": 0.5},
        {"jitter": "wild"},
        {"schedule": (1.0, -1.0)},
        {"total_budget": 0},
        {"schedule_spread": 2},
    ],
)
def test_invalid_policies_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ Retry-After


def test_retry_after_raises_the_wait_and_is_capped() -> None:
    policy = _policy(base_delay=0.1, jitter="none", max_retry_after=5.0)
    assert policy.delay_for(_api(429, retry_after="2"), 1) == 2.0
    assert policy.delay_for(_api(503, retry_after="120"), 1) == 5.0
    # A Retry-After shorter than the backoff does not shorten it.
    assert policy.replace(base_delay=4.0).delay_for(_api(503, retry_after="1"), 1) == 4.0


def test_parse_retry_after_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("inf") is None


def test_parse_retry_after_http_date() -> None:
    now = datetime(2025, 1, 2, 10, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after(earlier, now=now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert parse_retry_after("Wed, 99 Foo 2015 07:28:00 GMT", now=now) is None


# ------------------------------------------------------------------------------------------------ budget


def test_attempts_are_limited() -> None:
    policy = _policy(max_attempts=3, jitter="none", base_delay=1.0, total_budget=None)
    state = policy.begin()
    delays = []
    while True:
        state.start_attempt()
        delay = state.next_delay(_api(503))
        if delay is None:
            break
        delays.append(delay)
        policy.sleep(delay)
    assert state.attempts == 3
    assert delays == [1.0, 2.0]


def test_budget_stops_a_wait_that_would_overrun() -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        max_attempts=10, base_delay=1.0, jitter="none", total_budget=3.5, clock=clock, sleep=clock.sleep
    )
    state = policy.begin()
    delays = []
    while True:
        state.start_attempt()
        delay = state.next_delay(_api(502))
        if delay is None:
            break
        delays.append(delay)
        clock.sleep(delay)
        assert state.remaining() == pytest.approx(3.5 - clock.now)
    assert delays == [1.0, 2.0]  # the next wait (4 s) would end past the budget
    assert clock.now == 3.0


def test_budget_refuses_a_retry_after_beyond_it() -> None:
    clock = FakeClock()
    policy = RetryPolicy.interactive(clock=clock, sleep=clock.sleep, max_retry_after=60.0)
    state = policy.begin()
    state.start_attempt()
    assert state.next_delay(_api(503, retry_after="30")) is None


def test_non_retryable_error_stops_at_once() -> None:
    state = _policy().begin()
    state.start_attempt()
    assert state.next_delay(_api(400)) is None
    assert state.delays == []
