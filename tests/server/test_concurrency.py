"""Real concurrency against a real server process, on SQLite and PostgreSQL: requests released together by a
barrier from many threads, outcomes checked in the answers and straight in the database."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func

from promoflow.server.models import assignment, audit_event, contact, job, redemption

from ._support import count_rows, new_contact, new_promotion

N = 50


def together(
    n: int, send: Callable[[httpx.Client, int], httpx.Response], client: httpx.Client
) -> list[httpx.Response]:
    """Run ``send`` n times on n threads, all released at the same instant."""
    barrier = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return send(client, i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def _client(live: Any, tenant: dict[str, Any]) -> httpx.Client:
    return live.client(tenant, limits=httpx.Limits(max_connections=N, max_keepalive_connections=N))


def _assignment(http: httpx.Client, **promo: Any) -> tuple[str, str]:
    cid = new_contact(http)["id"]
    pid = new_promotion(http, start="2020-01-01", end="2099-12-31", **promo)["id"]
    r = http.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign")
    assert r.status_code == 200, r.text
    return cid, r.json()["id"]


def _redemptions(db_url: str, assignment_id: str) -> int:
    return count_rows(db_url, redemption, redemption.c.assignment_id == uuid.UUID(assignment_id))


def test_fifty_concurrent_redeems_of_one_assignment_succeed_once(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    with _client(live, live_tenant) as http:
        _, aid = _assignment(http)
        answers = together(
            N,
            lambda c, i: c.post(f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS"}),
            http,
        )
        assert Counter(r.status_code for r in answers) == {200: 1, 409: N - 1}
        assert {r.json()["errorCode"] for r in answers if r.status_code == 409} == {
            "PromotionAlreadyRedeemed"
        }
        won = next(r.json() for r in answers if r.status_code == 200)
        assert won["id"] == aid and won["redeemed"] is True
    assert _redemptions(live.db_url, aid) == 1


def test_concurrent_redeems_of_many_assignments_each_succeed_once(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    """Many assignments redeemed at once, each by several threads: on SQLite the fast path commits concurrent
    redeems together (one group, one transaction), winners and losers of different assignments in the same
    group; each assignment still gets exactly one 200 and one redemption row."""
    k = 5
    with _client(live, live_tenant) as http:
        aids = [_assignment(http)[1] for _ in range(N // k)]
        answers = together(
            N,
            lambda c, i: c.post(f"/api/v2/promotions/codes/{aids[i % len(aids)]}/redeem", json="POS"),
            http,
        )
    by_assignment: dict[str, Counter[int]] = {aid: Counter() for aid in aids}
    for i, r in enumerate(answers):
        by_assignment[aids[i % len(aids)]][r.status_code] += 1
    assert all(c == {200: 1, 409: k - 1} for c in by_assignment.values()), by_assignment
    assert all(_redemptions(live.db_url, aid) == 1 for aid in aids)


def test_concurrent_redeems_through_all_paths_and_with_keys_succeed_once(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    """The three redeem paths at once, half of the calls with their own Idempotency-Key (which takes the routed
    path instead of PostgreSQL's fast lane), a few by template id on the contact-scoped path."""
    with _client(live, live_tenant) as http:
        cid, aid = _assignment(http)
        pid = http.get(f"/api/v2/contacts/{cid}/promotions").json()[0]["promotionId"]
        paths = [
            f"/api/v2/promotions/codes/{aid}/redeem",
            f"/api/v3/promotion-assignments/{aid}/redeem",
            f"/api/v2/contacts/{cid}/promotions/{aid}/redeem",
            f"/api/v2/contacts/{cid}/promotions/{pid}/redeem",
        ]

        def send(c: httpx.Client, i: int) -> httpx.Response:
            headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"} if i % 2 else {}
            return c.post(paths[i % len(paths)], json={"redemptionChannel": "POS"}, headers=headers)

        answers = together(N, send, http)
        codes = Counter((r.status_code, r.json().get("errorCode")) for r in answers)
        assert codes[(200, None)] == 1
        # A template id names the contact's one *redeemable* assignment: once it is redeemed, there is none.
        assert set(codes) - {(200, None)} <= {
            (409, "PromotionAlreadyRedeemed"),
            (404, "PromotionNotAssociatedWithContact"),
        }
        assert sum(n for (status, _), n in codes.items() if status == 409) >= N - 1 - N // len(paths)
    assert _redemptions(live.db_url, aid) == 1


def test_concurrent_creates_of_one_contact_key_make_one_contact(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    with _client(live, live_tenant) as http:
        answers = together(
            20,
            lambda c, i: c.post("/api/v2/contacts", json={"email": "same@example.com", "firstName": f"n{i}"}),
            http,
        )
    assert Counter(r.status_code for r in answers) == {201: 1, 200: 19}
    assert len({r.json()["id"] for r in answers}) == 1
    tid = uuid.UUID(live_tenant["tenantId"])
    assert count_rows(live.db_url, contact, contact.c.tenant_id == tid) == 1


def _bulk_setup(http: httpx.Client, n: int = 30) -> tuple[str, list[str], list[str]]:
    contacts = [new_contact(http) for _ in range(n)]
    pid = new_promotion(http, start="2020-01-01", end="2099-12-31")["id"]
    ids = [c["id"] for c in contacts[: n // 2]]
    emails = [c["attributes"]["email"] for c in contacts[n // 2 :]]
    return pid, ids, emails


def _per_contact(db_url: str, promotion_id: str) -> Counter[uuid.UUID]:
    from promoflow.server.db import make_sync_engine

    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                assignment.select()
                .with_only_columns(assignment.c.contact_id, func.count())
                .where(assignment.c.promotion_id == uuid.UUID(promotion_id))
                .group_by(assignment.c.contact_id)
            ).all()
    finally:
        engine.dispose()
    return Counter({r[0]: r[1] for r in rows})


def test_concurrent_bulk_retries_with_one_batch_id_assign_each_contact_once(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    with _client(live, live_tenant) as http:
        pid, ids, emails = _bulk_setup(http)
        body = {"contactIds": ids, "contactKeys": emails, "batchId": "spring-campaign"}
        answers = together(
            6,
            lambda c, i: c.post(f"/api/v2/promotions/multichannels/{pid}/bulk-assignments", json=body),
            http,
        )
        assert {r.status_code for r in answers} == {202}
        job_ids = {r.json()["id"] for r in answers}
        assert len(job_ids) == 6  # each retry is its own job; the batch id keeps them from assigning twice
        assert live.run_jobs(workers=2) >= 6  # (the database is shared: other tests' jobs may be due too)
        results = [http.get(f"/api/v2/jobs/{j}").json() for j in job_ids]
    assert {r["status"] for r in results} == {"succeeded"}
    assert sum(r["result"]["assigned"] for r in results) == 30
    assert all(r["result"]["assigned"] + r["result"]["alreadyAssigned"] == 30 for r in results)
    assert all((r["progressDone"], r["progressTotal"]) == (30, 30) for r in results)
    per_contact = _per_contact(live.db_url, pid)
    assert len(per_contact) == 30 and set(per_contact.values()) == {1}


def test_concurrent_bulk_requests_with_one_idempotency_key_make_one_job(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    """No batch id: the Idempotency-Key alone keeps concurrent retries from enqueueing a second job."""
    with _client(live, live_tenant) as http:
        pid, ids, emails = _bulk_setup(http)
        body = {"contactIds": ids, "contactKeys": emails}
        key = {"Idempotency-Key": f"bulk-{uuid.uuid4()}"}
        path = f"/api/v2/promotions/multichannels/{pid}/bulk-assignments"
        answers = together(6, lambda c, i: c.post(path, json=body, headers=key), http)
        accepted = [r for r in answers if r.status_code == 202]
        assert accepted and {r.status_code for r in answers} <= {202, 409}
        assert {r.json()["errorCode"] for r in answers if r.status_code == 409} <= {"IdempotencyKeyInUse"}
        assert len({r.json()["id"] for r in accepted}) == 1
        tid = uuid.UUID(live_tenant["tenantId"])
        assert count_rows(live.db_url, job, job.c.tenant_id == tid) == 1
        assert live.run_jobs(workers=2) >= 1
        again = http.post(path, json=body, headers=key)
        assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == accepted[0].json()["id"]
        done = http.get(f"/api/v2/jobs/{accepted[0].json()['id']}").json()
    assert done["status"] == "succeeded" and done["result"]["assigned"] == 30
    assert count_rows(live.db_url, job, job.c.tenant_id == tid) == 1
    per_contact = _per_contact(live.db_url, pid)
    assert len(per_contact) == 30 and set(per_contact.values()) == {1}


def test_concurrent_updates_to_one_key_leave_one_holder(live: Any, live_tenant: dict[str, Any]) -> None:
    """Many contacts changed to the same e-mail at once: one gets it, the others a 409 — never a 500."""
    with _client(live, live_tenant) as http:
        ids = [new_contact(http)["id"] for _ in range(12)]
        answers = together(
            12, lambda c, i: c.post(f"/api/v2/contacts/{ids[i]}", json={"email": "taken@example.com"}), http
        )
        assert Counter(r.status_code for r in answers) == {200: 1, 409: 11}, [r.text for r in answers]
        assert {r.json()["errorCode"] for r in answers if r.status_code == 409} == {"ContactKeyConflict"}
        assert http.get("/api/v2/contacts/id?email=taken@example.com").json() in ids


@pytest.mark.parametrize("routed", ["none", "every other"])
def test_concurrent_plain_updates_of_one_contact_lose_no_change(
    live: Any, live_tenant: dict[str, Any], routed: str
) -> None:
    """Many updates of one contact at once, each of its own attribute or preference (the quick path's updates:
    on PostgreSQL each writes only the version of the row it read, and reads again when another changed it; with
    an Idempotency-Key the routed path answers, which locks the row it merges into): all of them are kept, and
    each is in the audit log."""
    names = [
        "firstName",
        "lastName",
        "street",
        "careOf",
        "zipCode",
        "city",
        "county",
        "companyName",
        "cardId",
    ]
    with _client(live, live_tenant) as http:
        cid = new_contact(http)["id"]
        answers = together(
            len(names) + 1,
            lambda c, i: c.post(
                f"/api/v2/contacts/{cid}",
                json={names[i]: f"v{i}"} if i < len(names) else {"preferences": {"acceptsSms": True}},
                headers={"Idempotency-Key": f"u-{cid}-{i}"} if routed != "none" and i % 2 else {},
            ),
            http,
        )
        assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
        stored = http.get(f"/api/v2/contacts/{cid}").json()
        assert {n: stored["attributes"].get(n) for n in names} == {n: f"v{i}" for i, n in enumerate(names)}
        assert stored["preferences"]["acceptsSms"] is True
        tid = uuid.UUID(str(live_tenant["tenantId"]))
        entries = count_rows(
            live.db_url, audit_event, audit_event.c.tenant_id == tid, audit_event.c.action == "contact.update"
        )
        assert entries == len(names) + 1


def test_concurrent_creates_with_one_external_id_make_one_promotion(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    with _client(live, live_tenant) as http:
        body = {"name": "x", "externalId": "ONE", "validity": {"startDate": "2026-01-01"}}
        answers = together(12, lambda c, i: c.post("/api/v2/promotions/multichannels", json=body), http)
        assert Counter(r.status_code for r in answers) == {201: 1, 409: 11}, [r.text for r in answers]
        assert {r.json()["errorCode"] for r in answers if r.status_code == 409} == {"ExternalIdInUse"}
        listed = http.get("/api/v2/promotions/multichannels").json()
        assert listed["totalCount"] == 1


def test_a_storm_of_retries_with_one_key_redeems_once_and_never_reports_already_redeemed(
    live: Any, live_tenant: dict[str, Any]
) -> None:
    """A till retrying one redeem many times at once under one Idempotency-Key: each answer is the one success
    (executed or replayed) or "still in progress" — a retry never sees its own redemption as someone else's."""
    with _client(live, live_tenant) as http:
        _, aid = _assignment(http)
        key = {"Idempotency-Key": f"till-7-{uuid.uuid4()}"}
        path = f"/api/v2/promotions/codes/{aid}/redeem"
        answers = together(
            20, lambda c, i: c.post(path, json={"redemptionChannel": "POS"}, headers=key), http
        )
        codes = Counter((r.status_code, r.json().get("errorCode")) for r in answers)
        assert set(codes) <= {(200, None), (409, "IdempotencyKeyInUse")}, codes
        assert {r.content for r in answers if r.status_code == 200} == {
            next(r.content for r in answers if r.status_code == 200)
        }
        final = http.post(path, json={"redemptionChannel": "POS"}, headers=key)
        assert final.status_code == 200 and final.headers["Idempotent-Replayed"] == "true"
    assert _redemptions(live.db_url, aid) == 1
