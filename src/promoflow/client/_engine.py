"""The retry loop, written once for both clients ("sans-I/O"), and the one loop that runs every plan.

An operation is a generator (a :data:`Plan`) that *yields* what it needs done, :class:`Send` a request or
:class:`Sleep` a while, and receives the result: an ``httpx.Response``, a mapped :class:`TransportError`, or
None after a sleep. :class:`~promoflow.client.EngageClient` runs plans with blocking calls,
:class:`~promoflow.client.AsyncEngageClient` with awaits; everything else (request building, retry decisions,
read-before-retry, response parsing) lives in the plan and is shared byte for byte.

Every plan, of a client or of a checkout (:mod:`promoflow.client._calls`), is run by the same loop
(:func:`run_blocking` and :func:`run_async` both drive :func:`_loop`; the blocking twin steps it once, since
nothing it awaits ever suspends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from promoflow.client._exceptions import (
    ApiError,
    PromoflowClientError,
    TransportError,
    error_from_response,
)
from promoflow.client._headers import is_replayed, request_id
from promoflow.client._retry import RetryPolicy
from promoflow.wire.engage import ApiPromotion

T = TypeVar("T")
A = TypeVar("A")

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """Everything needed to send one logical request; built once, sent as often as the policy allows.

    ``idempotency_key`` is fixed here, so every attempt of the operation carries the same key.
    """

    operation: str
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    idempotency_key: str | None = None

    @property
    def changes_state(self) -> bool:
        return self.method in STATE_CHANGING_METHODS

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``spec`` once; ``time_left`` (seconds, or None) caps the attempt's timeouts."""

    spec: RequestSpec
    time_left: float | None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Reply = httpx.Response | TransportError | None
Action = Send | Sleep
Plan = Generator[Action, Reply, T]

SettledBy = Literal["response", "replay", "read", "conflict"]


@dataclass
class CallOutcome:
    """What happened during one call. Pass one as ``outcome=`` to any client method to have it filled in.

    ``settled_by`` says how the call ended successfully:

    - ``"response"``: a 2xx answer to one of our attempts;
    - ``"replay"``: a 2xx answer replayed from the server's idempotency store (``Idempotent-Replayed: true``,
      so an earlier attempt of ours had already been applied; ``replayed`` is then True);
    - ``"read"``: read-before-retry found the promotion redeemed after an uncertain attempt of ours;
    - ``"conflict"``: a 409 ``PromotionAlreadyRedeemed`` answered a retry that followed an uncertain
      attempt of ours, so that attempt was applied.

    ``attempts`` counts the sends of the operation's own request (state reads are counted in
    ``state_reads``), ``delays`` the waits between them.
    """

    attempts: int = 0
    replayed: bool = False
    settled_by: SettledBy | None = None
    idempotency_key: str | None = None
    status_code: int | None = None
    request_id: str | None = None
    delays: list[float] = field(default_factory=list)
    state_reads: int = 0

    def reset(self, idempotency_key: str | None) -> None:
        """Start afresh (a CallOutcome passed to a second call describes that call only)."""
        self.attempts = 0
        self.replayed = False
        self.settled_by = None
        self.idempotency_key = idempotency_key
        self.status_code = None
        self.request_id = None
        self.delays = []
        self.state_reads = 0


@dataclass(frozen=True, slots=True)
class Settled:
    """A state-changing call whose success was established without a 2xx answer (see ``settled_by``)."""

    how: Literal["read", "conflict"]
    state: ApiPromotion | None


UncertainMode = Literal["retry", "stop"]
StateReader = Callable[[float | None], Plan[ApiPromotion | None]]


def is_uncertain(error: PromoflowClientError) -> bool:
    """Whether a failed state-changing attempt may nevertheless have been applied by the server."""
    if isinstance(error, TransportError):
        return error.may_have_reached_server
    # A 5xx may come after the change was committed (or from a proxy that lost the answer). 429 and other
    # 4xx answers are refusals: nothing was applied.
    return isinstance(error, ApiError) and error.status >= 500


def _error_of(reply: httpx.Response) -> ApiError:
    return error_from_response(reply.status_code, reply.headers, reply.content, encoding=reply.encoding)


def execute(
    spec: RequestSpec,
    policy: RetryPolicy,
    outcome: CallOutcome,
    *,
    on_uncertain: UncertainMode = "retry",
    settling_conflict: type[ApiError] | None = None,
    read_state: StateReader | None = None,
) -> Plan[httpx.Response | Settled]:
    """Send ``spec`` under ``policy`` until a 2xx answer (returned), a settlement, or a final error (raised).

    After an *uncertain* failure of a state-changing request (see :func:`is_uncertain`):

    - ``on_uncertain="stop"`` raises at once, for operations a resend could apply twice;
    - ``read_state`` (read-before-retry) is run after the wait; if it shows the promotion redeemed, the call
      is settled without sending again;
    - ``settling_conflict``: that error answering a later attempt means our uncertain attempt was applied.
    """
    state = policy.begin()
    outcome.reset(spec.idempotency_key)
    uncertain = False
    last_error: PromoflowClientError | None = None
    while True:
        time_left = state.remaining()
        if last_error is not None and time_left is not None and time_left <= 0:
            raise last_error
        state.start_attempt()
        outcome.attempts = state.attempts
        reply = yield Send(spec, time_left)
        if isinstance(reply, httpx.Response):
            outcome.status_code = reply.status_code
            outcome.request_id = request_id(reply.headers)
            if reply.is_success:
                outcome.replayed = is_replayed(reply.headers)
                outcome.settled_by = "replay" if outcome.replayed else "response"
                return reply
            error: PromoflowClientError = _error_of(reply)
        elif isinstance(reply, TransportError):
            error = reply
        else:  # pragma: no cover - a driver bug, not a server condition
            raise TypeError(f"expected a response or TransportError, got {reply!r}")

        if uncertain and settling_conflict is not None and isinstance(error, settling_conflict):
            outcome.settled_by = "conflict"
            return Settled("conflict", None)
        attempt_uncertain = spec.changes_state and is_uncertain(error)
        if attempt_uncertain and on_uncertain == "stop":
            raise error
        delay = state.next_delay(error)
        if delay is None:
            raise error
        uncertain = uncertain or attempt_uncertain
        last_error = error
        outcome.delays.append(delay)
        yield Sleep(delay)
        if attempt_uncertain and read_state is not None:
            outcome.state_reads += 1
            current = yield from read_state(state.remaining())
            if current is not None and current.redeemed:
                outcome.settled_by = "read"
                return Settled("read", current)


def execute_once(spec: RequestSpec, time_left: float | None) -> Plan[httpx.Response]:
    """One attempt, no retries: a 2xx answer is returned, anything else raised."""
    reply = yield Send(spec, time_left)
    if isinstance(reply, TransportError):
        raise reply
    if not isinstance(reply, httpx.Response):  # pragma: no cover - a driver bug
        raise TypeError(f"expected a response or TransportError, got {reply!r}")
    if not reply.is_success:
        raise _error_of(reply)
    return reply


def cap_timeout(timeout: httpx.Timeout, time_left: float | None) -> httpx.Timeout:
    """``timeout`` with every phase shortened to ``time_left`` (so one attempt cannot outlast the budget)."""
    if time_left is None:
        return timeout
    # httpx treats 0 as "fail at once"; keep a sliver so an attempt started at the edge can still connect.
    cap = max(time_left, 0.001)

    def shorten(value: float | None) -> float:
        return cap if value is None else min(value, cap)

    return httpx.Timeout(
        connect=shorten(timeout.connect),
        read=shorten(timeout.read),
        write=shorten(timeout.write),
        pool=shorten(timeout.pool),
    )


# ------------------------------------------------------------------------------------------- running plans


async def _loop(plan: Generator[A, Any, T], perform: Callable[[A], Awaitable[Any]]) -> T:
    """The one loop that runs a plan: each action it yields goes to ``perform``, whose result goes back in."""
    reply: Any = None
    try:
        while True:
            try:
                action = plan.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply = await perform(action)
    finally:
        plan.close()


def run_blocking(plan: Generator[A, Any, T], perform: Callable[[A], Any]) -> T:
    """Run ``plan`` with a blocking ``perform``: :func:`_loop`, stepped once (nothing in it ever suspends)."""

    async def at_once(action: A) -> Any:
        return perform(action)

    loop = _loop(plan, at_once)
    try:
        loop.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    loop.close()  # pragma: no cover - only a perform that returns an awaitable could get here
    raise RuntimeError("a blocking plan was given something to await")


async def run_async(plan: Generator[A, Any, T], perform: Callable[[A], Awaitable[Any]]) -> T:
    """Run ``plan`` with an awaitable ``perform`` (the async twin of :func:`run_blocking`)."""
    return await _loop(plan, perform)
