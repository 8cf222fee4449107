"""The clients against a real HTTP server on 127.0.0.1: retries, idempotency keys, read-before-retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from promoflow.client import (
    AlreadyRedeemedError,
    AsyncEngageClient,
    BadRequestError,
    CallOutcome,
    ConnectionFailedError,
    EngageClient,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
)

from ._support import DROP, HANG, FakeClock, Recorded, Reply, ScriptedServer

CONTACT_ID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
ASSIGNMENT_ID = "11111111-2222-4333-8444-555555555555"
TEMPLATE_ID = "99999999-8888-4777-8666-555555555555"
REDEEM_PATH = f"/api/v2/contacts/{CONTACT_ID}/promotions/{ASSIGNMENT_ID}/redeem"
STATE_PATH = f"/api/v2/contacts/{CONTACT_ID}/promotions"


def promotion(*, redeemed: bool) -> dict[str, Any]:
    return {
        "id": ASSIGNMENT_ID,
        "promotionId": TEMPLATE_ID,
        "name": "20% off",
        "redeemed": redeemed,
        "redeemedOn": "2025-03-01T12:30:00+01:00" if redeemed else None,
        "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": 20}],
    }


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"statusCode": status, "errorCode": code, "message": code}, headers or {})


ALREADY_REDEEMED = error(409, "PromotionAlreadyRedeemed")
REDEEMED = Reply(200, promotion(redeemed=True))


def policy(clock: FakeClock, **changes: Any) -> RetryPolicy:
    """Exponential waits without jitter, sleeping on the fake clock (nothing really sleeps)."""
    settings: dict[str, Any] = {
        "max_attempts": 4,
        "base_delay": 0.5,
        "jitter": "none",
        "clock": clock,
        "sleep": clock.sleep,
        "async_sleep": clock.async_sleep,
    }
    return RetryPolicy(**(settings | changes))


@pytest.fixture
def client_for(engage_server: ScriptedServer, fake_clock: FakeClock) -> Iterator[Any]:
    clients: list[EngageClient] = []

    def make(**options: Any) -> EngageClient:
        retry = options.pop("retry", None) or policy(fake_clock, **options.pop("retry_changes", {}))
        client = EngageClient(engage_server.url, "secret", retry=retry, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def keys(requests: list[Recorded]) -> list[str | None]:
    return [request.header("Idempotency-Key") for request in requests]


# ------------------------------------------------------------------------------------------- plain retries


def test_503_then_success_reuses_the_idempotency_key(
    engage_server: ScriptedServer, client_for: Any, fake_clock: FakeClock
) -> None:
    engage_server.expect(error(503, "ServiceUnavailable"), error(502, "BadGateway"), REDEEMED)
    outcome = CallOutcome()
    redeemed = client_for().redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)
    assert redeemed is not None and redeemed.redeemed
    requests = engage_server.requests
    assert [r.path for r in requests] == [REDEEM_PATH] * 3
    assert len(set(keys(requests))) == 1 and keys(requests)[0] == outcome.idempotency_key
    assert fake_clock.sleeps == [0.5, 1.0] == outcome.delays
    assert (outcome.attempts, outcome.settled_by, outcome.replayed) == (3, "response", False)


def test_an_outcome_object_describes_the_last_call_only(
    engage_server: ScriptedServer, client_for: Any
) -> None:
    engage_server.expect(error(503, "ServiceUnavailable"), REDEEMED, REDEEMED)
    outcome = CallOutcome()
    client = client_for()
    client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)
    assert (outcome.attempts, outcome.delays) == (2, [0.5])
    client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)
    assert (outcome.attempts, outcome.delays) == (1, [])
    assert outcome.idempotency_key == engage_server.requests[-1].header("Idempotency-Key")


def test_retry_after_is_honoured(
    engage_server: ScriptedServer, client_for: Any, fake_clock: FakeClock
) -> None:
    engage_server.expect(error(429, "TooManyRequests", {"Retry-After": "2"}), Reply(200, 7))
    assert client_for().count_contacts() == 7
    assert fake_clock.sleeps == [2.0]


def test_one_call_may_run_under_another_retry_policy(
    engage_server: ScriptedServer, client_for: Any, fake_clock: FakeClock
) -> None:
    engage_server.expect(error(503, "ServiceUnavailable"), REDEEMED)
    client = client_for(retry=RetryPolicy.never(clock=fake_clock, sleep=fake_clock.sleep))
    outcome = CallOutcome()
    client.redeem(
        ASSIGNMENT_ID, "POS", CONTACT_ID, retry=policy(fake_clock, base_delay=0.25), outcome=outcome
    )
    assert (outcome.attempts, fake_clock.sleeps) == (2, [0.25])
    engage_server.expect(error(503, "ServiceUnavailable"))
    with pytest.raises(ServerError):  # the client's own policy again: one attempt
        client.count_contacts()


def test_bad_request_is_not_retried(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(error(400, "NotAValidRedemptionChannel"))
    with pytest.raises(BadRequestError) as caught:
        client_for().redeem(ASSIGNMENT_ID, "BOGUS", CONTACT_ID)
    assert caught.value.error_code == "NotAValidRedemptionChannel"
    assert len(engage_server.requests) == 1


def test_attempts_run_out(engage_server: ScriptedServer, client_for: Any, fake_clock: FakeClock) -> None:
    engage_server.expect(*[error(500, "InternalServerError")] * 4)
    outcome = CallOutcome()
    with pytest.raises(ServerError):
        client_for().list_promotions(CONTACT_ID, "POS", outcome=outcome)
    assert outcome.attempts == 4 == len(engage_server.requests)
    assert fake_clock.sleeps == [0.5, 1.0, 2.0]


def test_interactive_budget_gives_up_early(
    engage_server: ScriptedServer, client_for: Any, fake_clock: FakeClock
) -> None:
    engage_server.expect(*[error(503, "ServiceUnavailable", {"Retry-After": "1.5"})] * 5)
    retry = RetryPolicy.interactive(clock=fake_clock, sleep=fake_clock.sleep, rng=lambda: 0.5)
    with pytest.raises(ServerError):
        client_for(retry=retry).count_contacts()
    # 1.5 s + 1.5 s would reach the 3 s budget: only one wait was taken.
    assert fake_clock.sleeps == [1.5]
    assert len(engage_server.requests) == 2


def test_idempotency_key_in_use_is_retried(
    engage_server: ScriptedServer, client_for: Any, fake_clock: FakeClock
) -> None:
    engage_server.expect(error(409, "IdempotencyKeyInUse"), REDEEMED)
    client_for().redeem(ASSIGNMENT_ID, "POS", CONTACT_ID)
    assert len(set(keys(engage_server.requests))) == 1
    assert len(engage_server.requests) == 2


def test_replayed_answer_is_reported(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(Reply(200, promotion(redeemed=True), {"Idempotent-Replayed": "true"}))
    outcome = CallOutcome()
    client_for().redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, idempotency_key="k-1", outcome=outcome)
    assert (outcome.replayed, outcome.settled_by, outcome.idempotency_key) == (True, "replay", "k-1")


# ------------------------------------------------------------------------------------------ transport errors


def test_dropped_connection_is_retried_with_the_same_key(
    engage_server: ScriptedServer, client_for: Any
) -> None:
    engage_server.expect(DROP, REDEEMED)
    outcome = CallOutcome()
    client_for().redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)
    assert outcome.attempts == 2
    assert len(set(keys(engage_server.requests))) == 1


def test_connection_refused(closed_port_url: str, fake_clock: FakeClock) -> None:
    with EngageClient(closed_port_url, "k", retry=policy(fake_clock, max_attempts=3)) as client:
        outcome = CallOutcome()
        with pytest.raises(ConnectionFailedError) as caught:
            client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)
    assert caught.value.may_have_reached_server is False
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert outcome.attempts == 3
    assert fake_clock.sleeps == [0.5, 1.0]


def test_read_timeout(engage_server: ScriptedServer) -> None:
    engage_server.expect(HANG)
    client = EngageClient(engage_server.url, "k", timeout=0.2, retry=RetryPolicy.never())
    with client, pytest.raises(RequestTimeoutError) as caught:
        client.count_contacts()
    assert caught.value.may_have_reached_server is True
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_budget_caps_the_attempt_timeout(engage_server: ScriptedServer) -> None:
    engage_server.expect(HANG)
    retry = RetryPolicy(max_attempts=1, total_budget=0.3)
    with EngageClient(engage_server.url, "k", timeout=30.0, retry=retry) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.count_contacts()
    assert time.monotonic() - started < 5  # the 30 s timeout was cut to the 0.3 s budget


# -------------------------------------------------------------------------- uncertain redeem without keys


def test_conflict_after_own_uncertain_attempt_is_success(
    engage_server: ScriptedServer, client_for: Any
) -> None:
    engage_server.expect(DROP, ALREADY_REDEEMED)
    outcome = CallOutcome()
    assert client_for().redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome) is None
    assert (outcome.settled_by, outcome.attempts) == ("conflict", 2)


def test_conflict_after_a_5xx_is_success(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(error(504, "GatewayTimeout"), ALREADY_REDEEMED)
    outcome = CallOutcome()
    client_for().redeem(ASSIGNMENT_ID, "POS", path="v2-code", outcome=outcome)
    assert outcome.settled_by == "conflict"


def test_conflict_on_the_first_attempt_is_an_error(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(ALREADY_REDEEMED)
    with pytest.raises(AlreadyRedeemedError):
        client_for().redeem(ASSIGNMENT_ID, "POS", CONTACT_ID)


def test_conflict_after_a_certain_refusal_is_an_error(engage_server: ScriptedServer, client_for: Any) -> None:
    # A 429 is a refusal: nothing of ours was applied, so a 409 afterwards is someone else's redeem.
    engage_server.expect(error(429, "TooManyRequests"), ALREADY_REDEEMED)
    with pytest.raises(AlreadyRedeemedError):
        client_for().redeem(ASSIGNMENT_ID, "POS", CONTACT_ID)


def test_read_before_retry_settles_without_resending(
    engage_server: ScriptedServer, client_for: Any, fake_clock: FakeClock
) -> None:
    engage_server.expect(DROP, Reply(200, [promotion(redeemed=True)]))
    outcome = CallOutcome()
    client = client_for(retry_changes={"read_before_retry": True})
    state = client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)
    assert state is not None and state.redeemed
    assert [(r.method, r.path) for r in engage_server.requests] == [
        ("POST", REDEEM_PATH),
        ("GET", STATE_PATH),
    ]
    assert engage_server.requests[1].query == {"includeRedeemed": ["true"]}
    assert (outcome.settled_by, outcome.attempts, outcome.state_reads) == ("read", 1, 1)
    # Engage's advice: wait before checking.
    assert fake_clock.sleeps == [0.5]


def test_read_before_retry_resends_when_not_redeemed(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(error(503, "ServiceUnavailable"), Reply(200, [promotion(redeemed=False)]), REDEEMED)
    outcome = CallOutcome()
    client_for(retry_changes={"read_before_retry": True}).redeem(
        ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome
    )
    assert [r.method for r in engage_server.requests] == ["POST", "GET", "POST"]
    assert (outcome.settled_by, outcome.attempts) == ("response", 2)


def test_read_before_retry_resends_when_the_read_fails(
    engage_server: ScriptedServer, client_for: Any
) -> None:
    engage_server.expect(DROP, error(500, "InternalServerError"), ALREADY_REDEEMED)
    outcome = CallOutcome()
    client_for(retry_changes={"read_before_retry": True}).redeem(
        ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome
    )
    assert [r.method for r in engage_server.requests] == ["POST", "GET", "POST"]
    assert outcome.settled_by == "conflict"


def test_read_before_retry_is_skipped_after_a_refusal(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(error(429, "TooManyRequests"), REDEEMED)
    client_for(retry_changes={"read_before_retry": True}).redeem(ASSIGNMENT_ID, "POS", CONTACT_ID)
    assert [r.method for r in engage_server.requests] == ["POST", "POST"]


def test_read_before_retry_without_contact_just_resends(
    engage_server: ScriptedServer, client_for: Any
) -> None:
    engage_server.expect(DROP, REDEEMED)
    client_for(retry_changes={"read_before_retry": True}).redeem(ASSIGNMENT_ID, "POS")
    assert [r.path for r in engage_server.requests] == [
        f"/api/v2/promotions/codes/{ASSIGNMENT_ID}/redeem"
    ] * 2


def test_uncertain_assign_is_not_resent_without_keys(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(DROP)
    with pytest.raises(ConnectionFailedError) as caught:
        client_for(retry_changes={"read_before_retry": True}).assign(CONTACT_ID, TEMPLATE_ID)
    assert caught.value.may_have_reached_server
    assert len(engage_server.requests) == 1


def test_certain_assign_failure_is_retried_without_keys(
    engage_server: ScriptedServer, client_for: Any
) -> None:
    engage_server.expect(error(429, "TooManyRequests"), Reply(200, promotion(redeemed=False)))
    client_for(retry_changes={"read_before_retry": True}).assign(CONTACT_ID, TEMPLATE_ID)
    assert len(engage_server.requests) == 2


def test_uncertain_assign_is_resent_with_the_same_key(engage_server: ScriptedServer, client_for: Any) -> None:
    engage_server.expect(DROP, Reply(200, promotion(redeemed=False)))
    client_for().assign(CONTACT_ID, TEMPLATE_ID)
    assert len(engage_server.requests) == 2
    assert len(set(keys(engage_server.requests))) == 1


# ------------------------------------------------------------------------------------------------------ async


def test_async_retries_with_the_same_key(engage_server: ScriptedServer, fake_clock: FakeClock) -> None:
    engage_server.expect(DROP, error(503, "ServiceUnavailable"), REDEEMED)
    outcome = CallOutcome()

    async def run() -> None:
        async with AsyncEngageClient(engage_server.url, "k", retry=policy(fake_clock)) as client:
            redeemed = await client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)
            assert redeemed is not None

    asyncio.run(run())
    assert outcome.attempts == 3
    assert len(set(keys(engage_server.requests))) == 1
    assert fake_clock.sleeps == [0.5, 1.0]


def test_async_read_before_retry(engage_server: ScriptedServer, fake_clock: FakeClock) -> None:
    engage_server.expect(DROP, Reply(200, [promotion(redeemed=True)]))
    outcome = CallOutcome()

    async def run() -> None:
        retry = policy(fake_clock, read_before_retry=True)
        async with AsyncEngageClient(engage_server.url, "k", retry=retry) as client:
            await client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, outcome=outcome)

    asyncio.run(run())
    assert outcome.settled_by == "read"


def test_async_connection_refused(closed_port_url: str, fake_clock: FakeClock) -> None:
    async def run() -> None:
        async with AsyncEngageClient(
            closed_port_url, "k", retry=policy(fake_clock, max_attempts=2)
        ) as client:
            await client.count_contacts()

    with pytest.raises(ConnectionFailedError) as caught:
        asyncio.run(run())
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert fake_clock.sleeps == [0.5]


def test_async_lookup_and_contacts(engage_server: ScriptedServer) -> None:
    engage_server.expect(
        Reply(200, CONTACT_ID),
        error(404, "ContactNotFound"),
        Reply(
            201, {"id": CONTACT_ID, "contactType": "Member", "attributes": {}, "preferences": {}, "meta": {}}
        ),
    )

    async def run() -> tuple[str | None, str | None, str]:
        async with AsyncEngageClient(engage_server.url, "k", retry=RetryPolicy.never()) as client:
            found = await client.lookup_contact_id(email="a@example.com")
            missing = await client.lookup_contact_id(email="b@example.com")
            created = await client.create_contact({"email": "b@example.com"}, source="POS")
            return found, missing, created.id

    assert asyncio.run(run()) == (CONTACT_ID, None, CONTACT_ID)
    assert engage_server.requests[2].header("source") == "POS"
