"""Idempotency keys (A9): a replay answers the first answer; a different request under the same key is refused; a
key still held is refused as retryable; and no crash can leave a key that replays a success that did not happen."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from promoflow.server.http import idempotency
from promoflow.server.http.errors import KeyTakenOverError
from promoflow.server.models import contact, idempotency_record

from ._support import assert_error, count_rows, new_contact, new_promotion, snapshot

BODY = {"email": "ada@example.com", "firstName": "Ada"}


def _post(api: Any, path: str, body: Any, key: str | None, headers: dict[str, str] | None = None) -> Any:
    h = dict(headers or api.headers)
    h["Content-Type"] = "application/json"
    if key is not None:
        h["Idempotency-Key"] = key
    return api.client.post(path, content=json.dumps(body).encode(), headers=h)


def _in_db(api: Any, fn: Any) -> Any:
    """Run ``fn(conn)`` in one write transaction on the app's own database, on the app's event loop."""
    db = api.client.app.state.promoflow.db

    async def run() -> Any:
        async with db.write() as conn:
            return await fn(conn)

    return api.client.portal.call(run)


def _contacts(api: Any) -> int:
    return count_rows(api.settings.resolved_database_url(), contact, contact.c.tenant_id == _tid(api))


def _tid(api: Any) -> uuid.UUID:
    return uuid.UUID(api.tenant["tenantId"])


def _claim_as_a_request_would(api: Any, key: str, path: str, body: Any) -> None:
    """What the first request does before its unit of work: claim the key (state running, with a lock expiry)."""
    fp = idempotency.fingerprint("POST", path, "", json.dumps(body).encode())
    settings = api.settings

    async def claim(conn: Any) -> Any:
        return await idempotency.claim(
            conn,
            _tid(api),
            key,
            fp,
            api.clock.now(),
            lock=timedelta(seconds=settings.idempotency_lock_seconds),
            ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )

    assert _in_db(api, claim) is None  # the claim is ours


def test_replay_returns_the_first_answer_and_changes_nothing(api: Any) -> None:
    first = _post(api, "/api/v2/contacts", BODY, "create-ada")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    after_first = snapshot(api.settings.resolved_database_url(), _tid(api))
    api.clock.advance(timedelta(hours=24))  # kept for at least 24 h
    again = _post(api, "/api/v2/contacts", BODY, "create-ada")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert snapshot(api.settings.resolved_database_url(), _tid(api)) == after_first
    # Without the key the same body is an ordinary create of an existing key: 200, the contact unchanged.
    plain = _post(api, "/api/v2/contacts", BODY, None)
    assert plain.status_code == 200 and plain.json()["id"] == first.json()["id"]


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT"])
def test_every_write_method_replays(api: Any, method: str) -> None:
    cid = new_contact(api)["id"]
    if method == "PUT":
        pid = new_promotion(api, activate=False)["id"]
        path, body = (
            f"/api/v2/promotions/multichannels/{pid}",
            {"name": "renamed", "validity": {"startDate": "2026-04-01"}},
        )
    else:
        path = f"/api/v2/contacts/{cid}" if method == "POST" else f"/api/v3/contacts/{cid}"
        body = {"lastName": "Lovelace"}
    headers = {**api.headers, "Idempotency-Key": f"{method}-1"}
    first = api.client.request(method, path, json=body, headers=headers)
    assert first.status_code == 200, first.text
    api.clock.advance(timedelta(minutes=5))
    again = api.client.request(method, path, json=body, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content


def test_a_refusal_is_the_outcome_of_its_key_and_replays_too(api: Any) -> None:
    cid = new_contact(api)["id"]
    pid = new_promotion(api)["id"]
    aid = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
    path = f"/api/v2/promotions/codes/{aid}/redeem"
    won = _post(api, path, {"redemptionChannel": "POS"}, "redeem-1")
    assert won.status_code == 200
    refused = _post(api, path, {"redemptionChannel": "POS"}, "redeem-2")
    assert_error(refused, 409, "PromotionAlreadyRedeemed")
    assert api.post(f"/api/v2/promotions/codes/{aid}/reactivate").status_code == 200
    # The assignment could be redeemed again now, but key redeem-2 already has its answer.
    replay = _post(api, path, {"redemptionChannel": "POS"}, "redeem-2")
    assert replay.status_code == 409 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == refused.content
    # And redeem-1 still answers its success, with the original redeemedOn.
    replay = _post(api, path, {"redemptionChannel": "POS"}, "redeem-1")
    assert replay.status_code == 200 and replay.json() == won.json()


def test_same_key_different_request_is_422_and_changes_nothing(api: Any) -> None:
    first = _post(api, "/api/v2/contacts", BODY, "k1")
    assert first.status_code == 201
    before = snapshot(api.settings.resolved_database_url(), _tid(api))
    other_body = _post(api, "/api/v2/contacts", {**BODY, "firstName": "Grace"}, "k1")
    assert_error(other_body, 422, "IdempotencyKeyMismatch")
    other_path = _post(api, "/api/v3/contacts", BODY, "k1")
    assert_error(other_path, 422, "IdempotencyKeyMismatch")
    other_query = api.client.post(
        "/api/v2/contacts?x=1", json=BODY, headers={**api.headers, "Idempotency-Key": "k1"}
    )
    assert_error(other_query, 422, "IdempotencyKeyMismatch")
    assert snapshot(api.settings.resolved_database_url(), _tid(api)) == before


def test_a_key_still_running_is_409_and_taken_over_after_the_lock_expires(api: Any) -> None:
    """A claim left `running` — the request is still working, or its process died before committing (then its
    write never happened: the write and the stored answer commit together)."""
    _claim_as_a_request_would(api, "held", "/api/v2/contacts", BODY)
    before = snapshot(api.settings.resolved_database_url(), _tid(api))
    busy = _post(api, "/api/v2/contacts", BODY, "held")
    assert_error(busy, 409, "IdempotencyKeyInUse")
    assert snapshot(api.settings.resolved_database_url(), _tid(api)) == before
    assert _contacts(api) == 0

    api.clock.advance(timedelta(seconds=api.settings.idempotency_lock_seconds - 1))
    assert_error(_post(api, "/api/v2/contacts", BODY, "held"), 409, "IdempotencyKeyInUse")
    api.clock.advance(timedelta(seconds=2))  # the holder is now taken to have died
    done = _post(api, "/api/v2/contacts", BODY, "held")
    assert done.status_code == 201 and "Idempotent-Replayed" not in done.headers
    assert _contacts(api) == 1
    replay = _post(api, "/api/v2/contacts", BODY, "held")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == done.json() and _contacts(api) == 1


def test_a_crash_between_the_write_and_its_answer_never_replays_a_success(api: Any, monkeypatch: Any) -> None:
    """The unit of work fails after the business write, while the answer is being stored: the write rolls back
    with it, the key is released, and the retry runs the request again — exactly one effect."""
    real_complete = idempotency.complete
    calls: list[int] = []

    async def crash(conn: Any, *args: Any, **kw: Any) -> None:
        calls.append(1)
        # The contact row is written in this very transaction: prove it, then die before the commit.
        assert await conn.scalar(
            contact.select().with_only_columns(contact.c.id).where(contact.c.tenant_id == _tid(api))
        )
        raise RuntimeError("process died")

    monkeypatch.setattr(idempotency, "complete", crash)
    with pytest.raises(RuntimeError, match="process died"):
        _post(api, "/api/v2/contacts", BODY, "crashy")
    assert calls == [1]
    assert _contacts(api) == 0
    db_url = api.settings.resolved_database_url()
    assert count_rows(db_url, idempotency_record, idempotency_record.c.tenant_id == _tid(api)) == 0

    monkeypatch.setattr(idempotency, "complete", real_complete)
    retry = _post(api, "/api/v2/contacts", BODY, "crashy")
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
    assert _contacts(api) == 1
    replay = _post(api, "/api/v2/contacts", BODY, "crashy")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert _contacts(api) == 1


def test_a_failed_redeem_does_not_hold_its_key(api: Any, monkeypatch: Any) -> None:
    """The same for the one call that must be exactly-once: a redeem that dies mid-way leaves the assignment
    unredeemed and its key free, and the retry under the same key redeems once."""
    from promoflow.server.promotion.assignment import AssignmentService

    cid = new_contact(api)["id"]
    pid = new_promotion(api)["id"]
    aid = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
    path = f"/api/v2/promotions/codes/{aid}/redeem"

    async def die(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("process died")

    monkeypatch.setattr(AssignmentService, "item", die)  # runs after the conditional UPDATE and the INSERT
    with pytest.raises(RuntimeError):
        _post(api, path, {"redemptionChannel": "POS"}, "r-1")
    monkeypatch.undo()
    assert api.get(f"/api/v2/contacts/{cid}/promotions").json()[0]["redeemed"] is False
    retry = _post(api, path, {"redemptionChannel": "POS"}, "r-1")
    assert retry.status_code == 200 and retry.json()["redeemed"] is True
    from promoflow.server.models import redemption

    assert (
        count_rows(
            api.settings.resolved_database_url(), redemption, redemption.c.assignment_id == uuid.UUID(aid)
        )
        == 1
    )


def test_keys_belong_to_their_tenant(api: Any) -> None:
    first = _post(api, "/api/v2/contacts", BODY, "shared-key")
    other = api.new_tenant()
    theirs = _post(api, "/api/v2/contacts", BODY, "shared-key", headers=api.as_tenant(other))
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]


def test_after_the_retention_a_key_is_new_again(api: Any) -> None:
    first = _post(api, "/api/v2/contacts", BODY, "old")
    api.clock.advance(timedelta(hours=api.settings.idempotency_ttl_hours, seconds=1))
    later = _post(api, "/api/v2/contacts", {**BODY, "firstName": "Someone"}, "old")
    # Not a mismatch any more: a new request, here a create of an existing key (200, the contact unchanged).
    assert later.status_code == 200 and "Idempotent-Replayed" not in later.headers
    assert later.json()["id"] == first.json()["id"] and later.json()["attributes"]["firstName"] == "Ada"


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_a_malformed_key_is_400_and_changes_nothing(api: Any, key: str) -> None:
    before = snapshot(api.settings.resolved_database_url(), _tid(api))
    r = api.client.post("/api/v2/contacts", json=BODY, headers={**api.headers, "Idempotency-Key": key})
    assert_error(r, 400, "InvalidIdempotencyKey")
    assert snapshot(api.settings.resolved_database_url(), _tid(api)) == before


def test_the_longest_key_is_accepted(api: Any) -> None:
    r = _post(api, "/api/v2/contacts", BODY, "k" * 255)
    assert r.status_code == 201
    assert _post(api, "/api/v2/contacts", BODY, "k" * 255).headers["Idempotent-Replayed"] == "true"


@pytest.mark.postgres
def test_a_holder_that_outlives_its_lock_cannot_overwrite_the_answer_of_the_request_that_took_over(
    pg_url: str, tmp_path: Any, monkeypatch: Any
) -> None:
    """Request A holds a redeem's key past the lock (stuck, not dead); retry B takes the key over and redeems.
    When A wakes up, its outcome must not replace B's stored success, nor commit anything of its own: the retry
    of a success must keep answering that success. (PostgreSQL: on SQLite one writer at a time makes A finish
    before B can even claim the key.)"""
    import threading

    from starlette.testclient import TestClient

    from promoflow.kit.clock import FrozenClock
    from promoflow.server.config import Settings
    from promoflow.server.http.app import create_app
    from promoflow.server.promotion.assignment import RedemptionService
    from tests.conftest import START, make_tenant

    settings = Settings(
        database_url=pg_url, data_dir=tmp_path, run_worker=False, default_rate_limit_per_second=0
    )
    clock = FrozenClock(START)
    tenant = make_tenant(settings)
    h = {"apikey": tenant["apiKey"]}
    real_redeem = RedemptionService.redeem
    inside = threading.Event()
    release: list[Any] = []

    async def stuck_redeem(self: Any, *args: Any, **kw: Any) -> Any:
        if not release:  # only the first request gets stuck
            import anyio

            gate = anyio.Event()
            release.append(gate)
            inside.set()
            await gate.wait()
        return await real_redeem(self, *args, **kw)

    with TestClient(create_app(settings, clock=clock, run_worker=False)) as client:
        cid = client.post("/api/v2/contacts", json={"email": "a@example.com"}, headers=h).json()["id"]
        pid = client.post(
            "/api/v2/promotions/multichannels",
            json={"name": "p", "validity": {"startDate": "2026-01-01"},
                  "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "5"}]},
            headers=h,
        ).json()["id"]  # fmt: skip
        client.post(f"/api/v2/promotions/multichannels/{pid}/activate", headers=h)
        aid = client.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign", headers=h).json()["id"]
        monkeypatch.setattr(RedemptionService, "redeem", stuck_redeem)
        headers = {**h, "Idempotency-Key": "till-1"}
        path = f"/api/v2/promotions/codes/{aid}/redeem"
        answers: dict[str, Any] = {}
        first = threading.Thread(
            target=lambda: answers.update(a=client.post(path, json="POS", headers=headers))
        )
        first.start()
        assert inside.wait(30)  # A has claimed the key and is inside its unit of work
        clock.advance(timedelta(seconds=settings.idempotency_lock_seconds + 1))
        b = client.post(path, json="POS", headers=headers)
        assert b.status_code == 200 and b.json()["redeemed"] is True  # B took the key over and redeemed
        client.portal.call(release[0].set)  # A wakes up
        first.join(30)
        a = answers["a"]
        # A lost the key: it answers "retry" (which replays B's success), not "already redeemed".
        assert_error(a, 409, "IdempotencyKeyInUse")
        replay = client.post(path, json="POS", headers=headers)
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.content == b.content
    from promoflow.server.models import redemption

    assert count_rows(pg_url, redemption, redemption.c.assignment_id == uuid.UUID(aid)) == 1


def test_only_the_current_holder_of_a_key_can_complete_or_release_it(api: Any) -> None:
    """The fencing itself, on both databases: after a take-over, the old holder's completion raises (rolling
    its transaction back) and its release leaves the new holder's claim alone."""
    lock = timedelta(seconds=api.settings.idempotency_lock_seconds)
    t0 = api.clock.now()
    _claim_as_a_request_would(api, "fenced", "/api/v2/contacts", BODY)
    a_owner = t0 + lock
    api.clock.advance(lock + timedelta(seconds=1))
    _claim_as_a_request_would(api, "fenced", "/api/v2/contacts", BODY)  # B takes the key over
    b_owner = api.clock.now() + lock
    tid = _tid(api)

    async def old_holder_completes(conn: Any) -> None:
        await idempotency.complete(conn, tid, "fenced", 201, b"{}", owner=a_owner)

    with pytest.raises(KeyTakenOverError):
        _in_db(api, old_holder_completes)
    _in_db(api, lambda conn: idempotency.release(conn, tid, "fenced", owner=a_owner))
    db_url = api.settings.resolved_database_url()
    assert (
        count_rows(db_url, idempotency_record, idempotency_record.c.key == "fenced") == 1
    )  # B's claim stands
    _in_db(api, lambda conn: idempotency.complete(conn, tid, "fenced", 201, b'{"id": "b"}', owner=b_owner))
    replay = _post(api, "/api/v2/contacts", BODY, "fenced")
    assert replay.status_code == 201 and replay.json() == {"id": "b"}
