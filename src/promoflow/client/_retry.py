"""When and how long to wait before trying a request again (ENGAGE-SPEC A17, Part B §8).

A :class:`RetryPolicy` is a frozen value object; the clients ask it three questions after a failed attempt:
is this failure worth another attempt (:meth:`RetryPolicy.is_retryable`), how long to wait
(:meth:`RetryPolicy.delay_for`), and is there time and attempts left (:class:`RetryState`).

What is retried: connection failures, timeouts, 429, 500, 502, 503, 504, and promoflow's 409
``IdempotencyKeyInUse`` (the first request with that key is still running, so asking again later is the
documented way to learn its outcome). Never any other 4xx: the answer would be the same.

Waits: capped exponential backoff (``base_delay * multiplier ** (n - 1)``, at most ``max_delay``) with full
jitter (uniform in ``[0, backoff)``, AWS "full jitter") or decorrelated jitter, or, when ``schedule`` is set,
those fixed gaps stretched by up to ``schedule_spread`` (never shortened: Engage asks for *at least* these
gaps). A ``Retry-After`` from the server raises the wait to that value, capped at ``max_retry_after``.
``total_budget`` bounds the whole call including the attempts themselves: no wait is started that would end
past it, and the clients shorten each attempt's timeout to the time left.

Sleeping, the clock and the random source are injectable (``sleep``, ``async_sleep``, ``clock``, ``rng``) so
tests never really sleep; they take no part in equality.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from promoflow.client._exceptions import (
    ApiError,
    IdempotencyKeyInUseError,
    PromoflowClientError,
    TransportError,
    is_retryable_transport,
)
from promoflow.client._headers import parse_retry_after

__all__ = ["RETRYABLE_STATUSES", "Jitter", "RetryPolicy", "RetryState", "parse_retry_after"]

RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})

Jitter = Literal["full", "decorrelated", "none"]

ENGAGE_BACKGROUND_GAPS: tuple[float, ...] = (10.0, 30.0, 60.0, 300.0)
"""Engage's retry page: background jobs wait 10 s, 30 s, 60 s, 300 s between attempts."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a client retries one logical call.

    ``max_attempts`` counts the first attempt (1 = never retry). ``read_before_retry`` is for servers without
    idempotency keys (real Engage): an uncertain redeem is settled by reading the promotion state before it is
    sent again, and a state-changing call that cannot be settled that way (assign) is not retried after an
    uncertain failure.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: Jitter = "full"
    schedule: tuple[float, ...] = ()
    schedule_spread: float = 0.1
    total_budget: float | None = 30.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    read_before_retry: bool = False
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (the first attempt counts)")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.jitter not in ("full", "decorrelated", "none"):
            raise ValueError(f"unknown jitter {self.jitter!r}")
        if any(gap < 0 for gap in self.schedule):
            raise ValueError("schedule gaps must not be negative")
        if not 0 <= self.schedule_spread <= 1:
            raise ValueError("schedule_spread must be between 0 and 1")
        if self.total_budget is not None and self.total_budget <= 0:
            raise ValueError("total_budget must be positive, or None for no budget")
        if not isinstance(self.schedule, tuple):
            object.__setattr__(self, "schedule", tuple(self.schedule))
        if not isinstance(self.retry_statuses, frozenset):
            object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))

    # ------------------------------------------------------------------------------------------ presets

    @classmethod
    def interactive(cls, **overrides: Any) -> RetryPolicy:
        """For checkout: three attempts at most, short waits, everything within about 3 seconds."""
        settings: dict[str, Any] = {
            "max_attempts": 3,
            "base_delay": 0.2,
            "max_delay": 1.0,
            "total_budget": 3.0,
            "max_retry_after": 2.0,
        }
        return cls(**(settings | overrides))

    @classmethod
    def background(cls, **overrides: Any) -> RetryPolicy:
        """For background sync: Engage's growing gaps of 10 s, 30 s, 60 s and 300 s, within 15 minutes."""
        settings: dict[str, Any] = {
            "max_attempts": len(ENGAGE_BACKGROUND_GAPS) + 1,
            "schedule": ENGAGE_BACKGROUND_GAPS,
            "max_delay": max(ENGAGE_BACKGROUND_GAPS),
            "total_budget": 900.0,
            "max_retry_after": 300.0,
        }
        return cls(**(settings | overrides))

    @classmethod
    def never(cls, **overrides: Any) -> RetryPolicy:
        """One attempt only (the caller handles failures itself, e.g. an outbox)."""
        return cls(**({"max_attempts": 1} | overrides))

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with changes, e.g. ``RetryPolicy.interactive().replace(read_before_retry=True)``."""
        return dataclasses.replace(self, **changes)

    # --------------------------------------------------------------------------------------- decisions

    def is_retryable(self, error: PromoflowClientError) -> bool:
        """Whether ``error`` is a failure another attempt may cure (ignoring attempts and time left)."""
        if isinstance(error, TransportError):
            return is_retryable_transport(error)
        if isinstance(error, IdempotencyKeyInUseError):
            return True
        if isinstance(error, ApiError):
            return error.status in self.retry_statuses
        return False

    def backoff(self, retry_number: int, previous: float | None = None) -> float:
        """The wait before retry ``retry_number`` (1 = the wait after the first attempt), before Retry-After.

        ``previous`` is the last wait, used by decorrelated jitter.
        """
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        if self.schedule:
            gap = self.schedule[min(retry_number, len(self.schedule)) - 1]
            return gap * (1.0 + self.schedule_spread * self.rng())
        if self.jitter == "decorrelated":
            # AWS "decorrelated jitter": grows from the previous wait, not from the attempt number.
            low = self.base_delay
            high = max(low, (previous if previous is not None else self.base_delay) * 3)
            return min(self.max_delay, low + (high - low) * self.rng())
        capped = min(self.max_delay, self.base_delay * self.multiplier ** (retry_number - 1))
        if self.jitter == "full":
            return capped * self.rng()
        return capped

    def delay_for(
        self, error: PromoflowClientError, retry_number: int, previous: float | None = None
    ) -> float:
        """The wait before the next attempt after ``error``: the backoff, raised to a capped Retry-After."""
        delay = self.backoff(retry_number, previous)
        retry_after = error.retry_after if isinstance(error, ApiError) else None
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def begin(self) -> RetryState:
        """Start the bookkeeping of one logical call (attempts made, time left)."""
        return RetryState(self)


class RetryState:
    """Attempts and time budget of one logical call under a :class:`RetryPolicy` (mutable, not shared)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = policy.clock()
        self.deadline = None if policy.total_budget is None else self.started + policy.total_budget
        self.attempts = 0
        self.delays: list[float] = []

    def remaining(self) -> float | None:
        """Seconds left in the budget (never negative), or None without a budget."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.policy.clock())

    def start_attempt(self) -> None:
        self.attempts += 1

    def next_delay(self, error: PromoflowClientError) -> float | None:
        """After a failed attempt: how long to wait before the next one, or None to give up."""
        policy = self.policy
        if not policy.is_retryable(error) or self.attempts >= policy.max_attempts:
            return None
        previous = self.delays[-1] if self.delays else None
        delay = policy.delay_for(error, len(self.delays) + 1, previous)
        if self.deadline is not None and policy.clock() + delay >= self.deadline:
            # Waiting would use up the budget: give the caller the failure now, while it can still act.
            return None
        self.delays.append(delay)
        return delay
