"""The contact writes' quick paths (contact/quick.py, both databases) answer exactly what the routed path answers:
the same body applied to two twin contacts (or creating two twins), one through an app with the fast lane and one
without, gives the same status, headers and answer (ids, e-mails and the generated member number aside) and the
same stored contact; what they do not handle (keys in an update, unknown attributes, bad values, unknown ids,
Idempotency-Key, a key already held, a receipt waiting for the new contact) they leave to the routed path."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, select, text
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.contact import numbers
from promoflow.server.contact.quick import (
    ANSWERED,
    _CreateItem,
    _pg_create_params,
    _pg_write_creates,
    _planned,
    _UpdateItem,
    pg_creates,
    pg_updates,
)
from promoflow.server.db import Database, make_sync_engine
from promoflow.server.hooks import contact_probes
from promoflow.server.http.app import create_app
from promoflow.server.models import audit_event, contact
from promoflow.server.promotion.fastlane import LANE, asyncpg_pool
from promoflow.server.receipt.service import PENDING, ReceiptService
from promoflow.server.tenant.service import TenantService
from promoflow.wire.engage import Receipt
from tests.conftest import make_tenant

from ._support import assert_error, count_rows
from .receipt.conftest import receipt_body


def _client(settings: Settings, clock: Any, fast: bool) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update={"fast_lane": fast}), clock=clock, run_worker=False)
    )


@pytest.fixture
def both(settings: Settings, clock: Any) -> Iterator[tuple[TestClient, TestClient, dict[str, str]]]:
    tenant = make_tenant(settings)
    with _client(settings, clock, True) as fast, _client(settings, clock, False) as routed:
        yield fast, routed, {"apikey": tenant["apiKey"]}


def _answered(client: TestClient) -> int:
    return int(client.app.state.promoflow.extras.get(ANSWERED, 0))  # type: ignore[attr-defined]


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    out = {**body, "id": "-", "attributes": {**body["attributes"]}}
    out["attributes"].pop("memberNumber", None)
    out["attributes"].pop("email", None)
    return out


PLAIN = [
    {"firstName": " Ada ", "lastName": "Lovelace", "city": "Lund"},
    {"lastName": None, "city": "", "zipCode": "22100", "birthDay": "1815-12-10"},
    {"preferences": {"acceptsEmail": True, "acceptsSms": None}},
    {"firstName": "Ada", "preferences": {"acceptsSms": False}, "memberStatus": 3, "gender": True},
    {},
]
DECLINED = [
    {"contactType": "Contact"},
    {"favouriteColour": "teal"},  # unknown: the routed path names it
]


def test_plain_updates_answer_the_same_on_both_paths(both: Any) -> None:
    fast, routed, headers = both
    a = fast.post(
        "/api/v3/contacts", json={"email": "a@example.com", "city": "Malmö"}, headers=headers
    ).json()
    b = routed.post(
        "/api/v3/contacts", json={"email": "b@example.com", "city": "Malmö"}, headers=headers
    ).json()
    for body in PLAIN + DECLINED:
        for path, method in (("/api/v2/contacts/{}", "POST"), ("/api/v3/contacts/{}", "PATCH")):
            before = _answered(fast)
            fa = fast.request(method, path.format(a["id"]), json=body, headers=headers)
            ra = routed.request(method, path.format(b["id"]), json=body, headers=headers)
            assert fa.status_code == ra.status_code == 200, (fa.text, ra.text)
            assert _comparable(fa.json()) == _comparable(ra.json()), body
            assert fa.headers.get("Promoflow-Warnings") == ra.headers.get("Promoflow-Warnings")
            took = _answered(fast) - before
            assert took == (1 if body in PLAIN else 0), body
        stored_a = routed.get(f"/api/v3/contacts/{a['id']}", headers=headers).json()
        stored_b = routed.get(f"/api/v3/contacts/{b['id']}", headers=headers).json()
        assert _comparable(stored_a) == _comparable(stored_b)


def test_refusals_and_replays_go_to_the_routed_path(both: Any) -> None:
    fast, _, headers = both
    c = fast.post("/api/v2/contacts", json={"email": "c@example.com"}, headers=headers).json()
    assert_error(fast.post(f"/api/v2/contacts/{c['id']}", json={"firstName": {"x": 1}}, headers=headers),
                 400, "InvalidAttributeValue")  # fmt: skip
    assert_error(fast.post(f"/api/v2/contacts/{c['id']}", json={"preferences": "yes"}, headers=headers),
                 400, "InvalidPayload")  # fmt: skip
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(
        fast.post(f"/api/v2/contacts/{unknown}", json={"city": "X"}, headers=headers), 404, "ContactNotFound"
    )
    assert_error(
        fast.post("/api/v2/contacts/nope", json={"city": "X"}, headers=headers), 400, "InvalidContactId"
    )
    other = make_tenant(fast.app.state.promoflow.settings)  # type: ignore[attr-defined]
    r = fast.post(f"/api/v2/contacts/{c['id']}", json={"city": "X"}, headers={"apikey": other["apiKey"]})
    assert_error(r, 404, "ContactNotFound")
    for key in ({"email": "new@example.com"}, {"mobilePhone": "+46701234567"}, {"memberNumber": "M-1"}):
        before = _answered(fast)  # a key may conflict and fires contact_changed: the routed path answers
        r = fast.post(f"/api/v2/contacts/{c['id']}", json=key, headers=headers)
        assert r.status_code == 200 and _answered(fast) == before
        assert set(key.values()) <= set(r.json()["attributes"].values())
    h = {**headers, "Idempotency-Key": "q-1"}
    first = fast.post(f"/api/v2/contacts/{c['id']}", json={"city": "Y"}, headers=h)
    again = fast.post(f"/api/v2/contacts/{c['id']}", json={"city": "Y"}, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()


CREATES: list[tuple[dict[str, Any], dict[str, str]]] = [
    ({"email": " Ada@Example.com ", "firstName": "Ada", "city": "Lund"}, {}),
    (
        {
            "email": "x@example.com",
            "preferences": {"acceptsEmail": True, "acceptsSms": None},
            "memberStatus": 3,
        },
        {"source": "POS", "storeExternalId": "S1", "createAsUnapproved": "true"},
    ),
    ({"email": "x@example.com", "contactType": "member", "mobilePhone": "070-123 45 67", "gender": True}, {}),
    (
        {"email": "x@example.com", "memberNumber": "M-{n}", "birthDay": "1815-12-10"},
        {"createAsUnapproved": "no"},
    ),
]
CREATES_DECLINED: list[dict[str, Any]] = [
    {"email": "x@example.com", "favouriteColour": "teal"},  # unknown: the routed path names it
    {"firstName": "no key"},  # 400 MissingKeyAttribute
    {"email": "not an address"},  # 400
    {"email": "x@example.com", "contactType": "Nope"},  # 400
]


def _twin(body: dict[str, Any], n: int, side: str) -> dict[str, Any]:
    out = {**body}
    if "email" in out and "@" in out["email"]:
        out["email"] = f"{side}{n}-{out['email'].strip()}"
    if "memberNumber" in out:
        out["memberNumber"] = out["memberNumber"].format(n=f"{side}{n}")
    return out


def test_creates_answer_the_same_on_both_paths(both: Any) -> None:
    fast, routed, headers = both
    n = 0
    for body, extra in CREATES:
        for version in ("v2", "v3"):
            n += 1
            before = _answered(fast)
            if version == "v3":  # v3 takes the headers' values as query parameters (the routed path answers)
                params, h = extra, headers
            else:
                params, h = {}, {**headers, **extra}
            fa = fast.post(f"/api/{version}/contacts", json=_twin(body, n, "a"), params=params, headers=h)
            ra = routed.post(f"/api/{version}/contacts", json=_twin(body, n, "b"), params=params, headers=h)
            assert fa.status_code == ra.status_code == 201, (fa.text, ra.text)
            assert _comparable(fa.json()) == _comparable(ra.json()), body
            assert fa.headers.get("Promoflow-Warnings") == ra.headers.get("Promoflow-Warnings")
            assert fa.headers["content-type"] == ra.headers["content-type"]
            assert _answered(fast) - before == (0 if params else 1), (body, version)
            stored_a = routed.get(f"/api/v3/contacts/{fa.json()['id']}", headers=headers).json()
            stored_b = routed.get(f"/api/v3/contacts/{ra.json()['id']}", headers=headers).json()
            assert _comparable(stored_a) == _comparable(stored_b)
            if "memberNumber" not in body:  # generated, one per contact
                assert stored_a["attributes"]["memberNumber"] != stored_b["attributes"]["memberNumber"]
    for body in CREATES_DECLINED:
        for version in ("v2", "v3"):
            n += 1
            before = _answered(fast)
            fa = fast.post(f"/api/{version}/contacts", json=_twin(body, n, "a"), headers=headers)
            ra = routed.post(f"/api/{version}/contacts", json=_twin(body, n, "b"), headers=headers)
            assert fa.status_code == ra.status_code, (fa.text, ra.text)
            assert _answered(fast) == before, body
            if fa.status_code < 300:
                assert _comparable(fa.json()) == _comparable(ra.json())
                assert fa.headers.get("Promoflow-Warnings") == ra.headers.get("Promoflow-Warnings")
            else:
                assert fa.json() == ra.json()


def test_a_create_whose_key_is_held_answers_that_contact_and_one_awaited_goes_to_the_routed_path(
    both: Any, settings: Settings
) -> None:
    fast, routed, headers = both
    first = fast.post("/api/v2/contacts", json={"email": "held@example.com", "city": "A"}, headers=headers)
    assert first.status_code == 201
    before = _answered(fast)
    # "Create or get": the contact that holds the key, unchanged (200), from the quick path as from the routed.
    for v in ("v2", "v3"):
        body = {"email": "HELD@example.com", "city": "B", "firstName": "Other"}
        again = fast.post(f"/api/{v}/contacts", json=body, headers=headers)
        other = routed.post(f"/api/{v}/contacts", json=body, headers=headers)
        assert again.status_code == other.status_code == 200, (again.text, other.text)
        assert again.json() == other.json()
        assert again.headers.get("Promoflow-Warnings") is None
    assert (
        again.json()["id"] == first.json()["id"] and again.json()["attributes"] == first.json()["attributes"]
    )
    assert _answered(fast) == before + 2
    own = audit_event.c.contact_id == uuid.UUID(first.json()["id"])
    assert (
        count_rows(settings.resolved_database_url(), audit_event, own) == 1
    )  # its contact.create, nothing else
    before = _answered(fast)
    # A receipt waits for this e-mail: the routed path creates the contact and matches the receipt.
    sale = receipt_body(key="awaited@example.com")
    assert fast.post("/api/v2/receipts", json=sale, headers=headers).status_code == 202
    created = fast.post("/api/v2/contacts", json={"email": "awaited@example.com"}, headers=headers)
    assert created.status_code == 201 and _answered(fast) == before
    page = fast.get(f"/api/v2/contacts/{created.json()['id']}/transactions", headers=headers).json()
    assert [t["uniqueReceiptId"] for t in page["items"]] == [sale["uniqueReceiptId"]]
    # A receipt waits for another key: the quick path creates the contact, the receipt stays pending.
    other = receipt_body(key="someone-else@example.com")
    assert fast.post("/api/v2/receipts", json=other, headers=headers).status_code == 202
    assert (
        fast.post("/api/v2/contacts", json={"email": "free@example.com"}, headers=headers).status_code == 201
    )
    assert _answered(fast) == before + 1


def _written(settings: Settings, contact_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The contact's name search keys and its audit entries as stored (with whether ``before``/``after`` are SQL
    NULL: JSON null and SQL NULL read back alike), the twin-specific values (ids, e-mail, member number) out."""
    engine = make_sync_engine(settings.resolved_database_url())
    e = audit_event.c
    try:
        with engine.connect() as conn:
            keys = conn.execute(
                select(contact.c.name_key, contact.c.name_key_rev, contact.c.updated_at).where(
                    contact.c.id == uuid.UUID(contact_id)
                )
            ).one()
            rows = conn.execute(
                select(audit_event, e.before.is_(None).label("sql_null_before"),
                       e.after.is_(None).label("sql_null_after"))
                .where(e.contact_id == uuid.UUID(contact_id))
                .order_by(e.id)
            ).all()  # fmt: skip
    finally:
        engine.dispose()
    entries = []
    for r in rows:
        entry = dict(r._mapping)
        assert entry.pop("object_id") == contact_id and str(entry.pop("contact_id")) == contact_id
        entry.pop("id")
        for side in ("before", "after"):
            if entry[side] is not None:
                entry[side] = {k: v for k, v in entry[side].items() if k not in ("email", "memberNumber")}
        entries.append(entry)
    return dict(keys._mapping), entries


NAMED_CREATES = [
    {"email": "n@example.com", "firstName": " Åsa ", "lastName": "Sjö  Berg", "city": "Lund"},
    {"email": "n@example.com", "lastName": "ÉMILE", "preferences": {"acceptsEmail": True}},
    {"email": "n@example.com", "city": "Ystad"},  # no name: no keys
]
NAMED_UPDATES = [
    {"firstName": "Ébba", "city": ""},
    {"lastName": None, "preferences": {"acceptsSms": False}},
    {"firstName": "Ébba"},  # nothing changes: no entry
    {"lastName": "Strauß", "firstName": ""},
    {"preferences": {"acceptsSms": False}, "zipCode": "22100"},
]


def test_both_paths_write_the_same_audit_entries_and_name_keys(both: Any, settings: Settings,
                                                               clock: Any) -> None:  # fmt: skip
    """The quick paths write what `ContactService.create/update` write: the name search keys (`name_keys`) and
    the audit entries (action, actor, before/after, time), in the change's transaction."""
    fast, routed, headers = both
    for n, body in enumerate(NAMED_CREATES):
        clock.set(clock.now() + timedelta(seconds=1))
        before = _answered(fast)
        fa = fast.post("/api/v2/contacts", json=_twin(body, n, "a"), headers={**headers, "source": "POS"})
        ra = routed.post("/api/v2/contacts", json=_twin(body, n, "b"), headers={**headers, "source": "POS"})
        assert fa.status_code == ra.status_code == 201 and _answered(fast) == before + 1
        a, b = fa.json()["id"], ra.json()["id"]
        for change in NAMED_UPDATES:
            clock.set(clock.now() + timedelta(seconds=1))
            before = _answered(fast)
            assert fast.post(f"/api/v2/contacts/{a}", json=change, headers=headers).status_code == 200
            assert routed.post(f"/api/v2/contacts/{b}", json=change, headers=headers).status_code == 200
            assert _answered(fast) == before + 1
        keys_a, entries_a = _written(settings, a)
        keys_b, entries_b = _written(settings, b)
        assert keys_a == keys_b and entries_a == entries_b, body
        assert [e["action"] for e in entries_a] == ["contact.create"] + ["contact.update"] * 4
        assert entries_a[-1]["at"] == keys_a["updated_at"]
        assert entries_a[0]["after"]["source"] == "POS" and entries_a[0]["before"] is None
        assert (keys_a["name_key"], keys_a["name_key_rev"]) == ("strauss", "strauss")
    created = fast.post(
        "/api/v2/contacts", json={**NAMED_CREATES[0], "email": "z@example.com"}, headers=headers
    )
    keys, entries = _written(settings, created.json()["id"])
    assert (keys["name_key"], keys["name_key_rev"]) == ("asa sjo berg", "sjo berg asa")
    assert entries[0]["after"]["firstName"] == "Åsa" and entries[0]["actor_kind"] == "api_key"


@pytest.mark.postgres
def test_a_quick_create_matches_a_receipt_kept_pending_while_it_waited(pg_url: str, data_dir: Any,
                                                                        clock: Any) -> None:  # fmt: skip
    """The quick create asks the receipts in its one statement, after their key locks (migration 0023's function
    reads with a snapshot of its own): a receipt kept pending for the new e-mail by a transaction that held the
    key's lock while the create waited for it is seen, so the routed path creates the contact and matches it —
    none is left waiting for a contact that exists."""
    settings = Settings(
        database_url=pg_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0
    )
    tenant = make_tenant(settings)
    headers = {"apikey": tenant["apiKey"]}
    sale = receipt_body(key="race@example.com")

    async def race(fast: TestClient) -> Any:
        db = Database(pg_url, pool_size=2)
        try:
            async with db.read() as conn:
                ctx = await TenantService(clock.now()).authenticate(conn, tenant["apiKey"])
            assert ctx is not None
            async with db.write() as conn:  # kept pending, not committed yet: it holds the key's lock
                outcome = await ReceiptService(ctx, clock.now()).ingest(conn, Receipt.model_validate(sale))
                assert outcome.status == PENDING
                create = asyncio.create_task(
                    asyncio.to_thread(fast.post, "/api/v2/contacts", json={"email": "race@example.com"},
                                      headers=headers)
                )  # fmt: skip
                while not await _waits_on_an_advisory_lock(conn):
                    assert not create.done(), create.result().text
                    await asyncio.sleep(0.01)  # polling for the create to block on the lock, not timing it
            return await create
        finally:
            await db.dispose()

    with _client(settings, clock, True) as fast:
        before = _answered(fast)
        created = asyncio.run(race(fast))
        assert created.status_code == 201, created.text
        assert (
            _answered(fast) == before
        )  # the quick path saw the receipt and left the create to the routed path
        page = fast.get(f"/api/v2/contacts/{created.json()['id']}/transactions", headers=headers).json()
        assert [t["uniqueReceiptId"] for t in page["items"]] == [sale["uniqueReceiptId"]]


async def _waits_on_an_advisory_lock(conn: Any) -> bool:
    found = await conn.scalar(
        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
             "(SELECT oid FROM pg_database WHERE datname = current_database())")
    )  # fmt: skip
    return bool(found)


def test_quick_and_routed_creates_share_the_member_numbers(
    both: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small blocks of numbers (PostgreSQL: the quick create reserves them on the connection it holds, the routed
    one on a connection of its own), creates on both paths taking turns: every generated number is handed out
    once."""
    fast, routed, headers = both
    monkeypatch.setattr(numbers, "BLOCK", 2)
    got = []
    for i in range(7):
        before = _answered(fast)
        a = fast.post("/api/v2/contacts", json={"email": f"qn{i}@example.com"}, headers=headers)
        b = routed.post("/api/v2/contacts", json={"email": f"rn{i}@example.com"}, headers=headers)
        assert a.status_code == b.status_code == 201 and _answered(fast) == before + 1
        got += [a.json()["attributes"]["memberNumber"], b.json()["attributes"]["memberNumber"]]
    assert len(set(got)) == len(got) == 14
    assert all(len(n) == 8 and n.isdigit() for n in got)


# ------------------------------------------------------------------------------------ PostgreSQL: in batches


def _creates_at_once(fast: TestClient, api_key: str, bodies: list[dict[str, Any]],
                     headers: dict[int, dict[str, str]] | None = None) -> tuple[list[Any], Any]:  # fmt: skip
    """``bodies`` handed to the app's gatherer of quick creates in one turn of its event loop (as concurrent
    requests arriving together hand them; ``headers``: the request headers of some of them, by position): the
    rows written (None: the routed path would answer) and the gatherer."""
    st = fast.app.state.promoflow  # type: ignore[attr-defined]
    pool = asyncpg_pool(st)
    assert pool is not None

    async def run() -> tuple[list[Any], Any]:
        async with st.db.read() as conn:
            ctx = await TenantService(st.clock.now()).authenticate(conn, api_key)
        assert ctx is not None
        probes = contact_probes()
        assert probes is not None
        gather = pg_creates(st, pool)
        items = []
        for i, body in enumerate(bodies):
            plan = _planned(ctx, body, (headers or {}).get(i, {}), v3=False)
            assert plan is not None
            items.append(_CreateItem(ctx, plan, probes, uuid.uuid4(), st.clock.now()))
        return list(await asyncio.gather(*(gather(item) for item in items))), gather

    assert fast.portal is not None
    return fast.portal.call(run)


@pytest.mark.postgres
def test_concurrent_creates_go_in_one_statement_each_as_if_alone(
    pg_url: str, data_dir: Any, clock: Any
) -> None:
    """Creates that arrive together are written by one statement in one transaction: each is written as it would
    be alone — its own member number, its audit entry, none for a key another contact holds (that contact is its
    answer), one of two creates of the same e-mail — and the others are left to the routed path."""
    settings = Settings(
        database_url=pg_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0
    )
    tenant = make_tenant(settings)
    with _client(settings, clock, True) as fast:
        held = fast.post(
            "/api/v2/contacts", json={"email": "held@example.com"}, headers={"apikey": tenant["apiKey"]}
        )
        assert held.status_code == 201
        bodies = [{"email": f"b{i}@example.com", "firstName": f"Ann{i}"} for i in range(20)]
        bodies += [
            {"email": "twin@example.com"},
            {"email": "twin@example.com"},
            {"email": "held@example.com"},
        ]
        rows, gather = _creates_at_once(fast, tenant["apiKey"], bodies)
        assert (gather.batches, gather.items) == (
            1 + 1,
            1 + len(bodies),
        )  # the first create's, then one for all
        written = [r for r in rows if r is not None and not r.held]
        assert [r.attributes["email"] for r in rows[:20]] == [f"b{i}@example.com" for i in range(20)]
        assert sorted(r is None for r in rows[20:22]) == [False, True]
        # A create whose key a contact already holds answers that contact (the routed path's 200, unchanged).
        assert rows[22] is not None and rows[22].held and str(rows[22].id) == held.json()["id"]
        engine = make_sync_engine(pg_url)
        try:
            with engine.connect() as conn:
                stored = conn.execute(
                    select(contact.c.id, contact.c.member_number, contact.c.name_key).where(
                        contact.c.tenant_id == uuid.UUID(tenant["tenantId"])
                    )
                ).all()
                entries = conn.execute(
                    select(audit_event.c.contact_id).where(audit_event.c.action == "contact.create",
                                                           audit_event.c.tenant_id == uuid.UUID(tenant["tenantId"]))
                ).scalars().all()  # fmt: skip
        finally:
            engine.dispose()
        assert len(stored) == 1 + len(written) == 22
        numbers_given = [n for _, n, _ in stored]
        assert len(set(numbers_given)) == len(numbers_given) and all(len(n) == 8 for n in numbers_given)
        assert sorted(entries) == sorted(i for i, _, _ in stored)  # one entry per contact written
        assert {k for _, _, k in stored} >= {f"ann{i}" for i in range(20)}


@pytest.mark.postgres
def test_a_create_the_database_refuses_does_not_fail_the_others_of_its_batch(pg_url: str, data_dir: Any,
                                                                            clock: Any) -> None:  # fmt: skip
    """A value the database refuses (a ``source`` header longer than its column) fails the batch's statement: each
    create is then tried alone, so only that one is left to the routed path (which answers it 400) and the others
    are written."""
    settings = Settings(
        database_url=pg_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0
    )
    tenant = make_tenant(settings)
    with _client(settings, clock, True) as fast:
        fast.post(
            "/api/v2/contacts", json={"email": "first@example.com"}, headers={"apikey": tenant["apiKey"]}
        )
        bodies = [{"email": f"c{i}@example.com"} for i in range(6)]
        bodies.insert(3, {"email": "long@example.com"})
        long_source = {"source": "x" * 300}
        rows, gather = _creates_at_once(fast, tenant["apiKey"], bodies, {3: long_source})
        assert [r is None for r in rows] == [False, False, False, True, False, False, False]
        assert gather.batches == 2  # the first create's, then the batch (which failed and was tried alone)
        answer = fast.post(
            "/api/v2/contacts", json=bodies[3], headers={"apikey": tenant["apiKey"], **long_source}
        )
        assert answer.status_code == 400, answer.text


@pytest.mark.postgres
def test_concurrent_updates_go_in_one_statement_and_lose_no_change(
    pg_url: str, data_dir: Any, clock: Any
) -> None:
    """Updates that arrive together are read by one statement and written by one: each merges into the row as it
    would alone; two changes of one contact in the batch are both kept (the second is read again after the first
    is written) and both audited; a contact of another tenant is left to the routed path (its 404)."""
    settings = Settings(
        database_url=pg_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0
    )
    tenant, other = make_tenant(settings), make_tenant(settings)
    with _client(settings, clock, True) as fast:
        ids = [
            fast.post("/api/v2/contacts", json={"email": f"u{i}@example.com"}, headers={"apikey": tenant["apiKey"]})
            .json()["id"]
            for i in range(8)
        ]  # fmt: skip
        foreign = fast.post(
            "/api/v2/contacts", json={"email": "f@example.com"}, headers={"apikey": other["apiKey"]}
        )
        st = fast.app.state.promoflow  # type: ignore[attr-defined]
        pool = asyncpg_pool(st)
        assert pool is not None
        changes = [(uuid.UUID(i), {"city": f"City{n}"}) for n, i in enumerate(ids)]
        changes += [
            (uuid.UUID(ids[0]), {"firstName": "Ada"}),
            (uuid.UUID(foreign.json()["id"]), {"city": "X"}),
        ]

        async def run() -> tuple[list[Any], Any]:
            async with st.db.read() as conn:
                ctx = await TenantService(st.clock.now()).authenticate(conn, tenant["apiKey"])
            assert ctx is not None
            gather = pg_updates(st, pool)
            items = [_UpdateItem(ctx, guid, changed, None, st.clock.now()) for guid, changed in changes]
            return list(await asyncio.gather(*(gather(item) for item in items))), gather

        assert fast.portal is not None
        rows, gather = fast.portal.call(run)
        assert (gather.batches, gather.items) == (1, len(changes))
        assert [r.attributes["city"] for r in rows[:8]] == [f"City{n}" for n in range(8)]
        assert rows[8].attributes["firstName"] == "Ada" and rows[8].attributes["city"] == "City0"
        assert rows[9] is None
        stored = fast.get(f"/api/v2/contacts/{ids[0]}", headers={"apikey": tenant["apiKey"]}).json()[
            "attributes"
        ]
        assert (stored["city"], stored["firstName"]) == ("City0", "Ada")
        tid = uuid.UUID(tenant["tenantId"])
        engine = make_sync_engine(pg_url)
        try:
            with engine.connect() as conn:
                updates = conn.execute(
                    select(audit_event.c.contact_id).where(audit_event.c.tenant_id == tid,
                                                           audit_event.c.action == "contact.update")
                ).scalars().all()  # fmt: skip
        finally:
            engine.dispose()
        assert sorted(updates) == sorted([uuid.UUID(i) for i in ids] + [uuid.UUID(ids[0])])


def test_sqlite_rewrites_the_name_keys_only_when_the_names_change(sqlite_url: str, data_dir: Any,
                                                                  clock: Any) -> None:  # fmt: skip
    """SQLite rewrites the entries of every index whose column an UPDATE sets, equal or not: a quick update whose
    names stay the same leaves the name keys (and their two indexes) alone; one that changes a name writes them."""
    settings = Settings(database_url=sqlite_url, data_dir=data_dir, run_worker=False,
                        default_rate_limit_per_second=0)  # fmt: skip
    headers = {"apikey": make_tenant(settings)["apiKey"]}
    with _client(settings, clock, True) as fast:
        lane = fast.app.state.promoflow.extras[LANE]  # type: ignore[attr-defined]
        made = fast.post(
            "/api/v2/contacts", json={"email": "n@example.com", "firstName": "Ada"}, headers=headers
        )
        cid = made.json()["id"]
        updates: list[str] = []

        def traced(sql: str) -> None:
            if sql.lstrip().upper().startswith("UPDATE CONTACT"):
                updates.append(sql)

        fast.portal.call(lane.write, lambda conn: conn.set_trace_callback(traced))  # type: ignore[union-attr]
        for body in ({"city": "Lund"}, {"firstName": "Ada", "zipCode": "22100"}, {"firstName": "Augusta"},
                     {"lastName": "King"}, {"city": "Malmö"}):  # fmt: skip
            before = _answered(fast)
            assert fast.post(f"/api/v2/contacts/{cid}", json=body, headers=headers).status_code == 200
            assert _answered(fast) == before + 1
        fast.portal.call(lane.write, lambda conn: conn.set_trace_callback(None))  # type: ignore[union-attr]
        assert ["name_key" in sql for sql in updates] == [False, False, True, True, False], updates
        keys, _ = _written(settings, cid)
        assert (keys["name_key"], keys["name_key_rev"]) == ("augusta king", "king augusta")


def test_the_routed_update_sets_only_the_derived_columns_that_change(settings: Settings, clock: Any) -> None:
    """`ContactService.update` (the routed path: key changes, Idempotency-Key requests, file imports) sets a
    derived column — a key's, a name search key — only when its value changes: SQLite would rewrite its index's
    entry for nothing. The columns set, from the statements the app's engine sends; the stored row after each."""
    headers = {"apikey": make_tenant(settings)["apiKey"]}
    with _client(settings, clock, False) as routed:
        engine = routed.app.state.promoflow.db.engine.sync_engine  # type: ignore[attr-defined]
        made = routed.post(
            "/api/v2/contacts", json={"email": "a@example.com", "firstName": "Ada"}, headers=headers
        )
        cid = made.json()["id"]
        sets: list[set[str]] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE CONTACT SET"):
                head = statement.split(" WHERE ")[0]
                sets.append({c for c in ("key_value", "email", "mobile_phone", "name_key", "name_key_rev")
                             if re.search(rf"\b{c}\s*=", head)})  # fmt: skip

        event.listen(engine, "before_cursor_execute", seen)
        try:
            for body in ({"city": "Lund"}, {"email": "b@example.com"}, {"firstName": "Augusta"},
                         {"mobilePhone": "+46701234567", "firstName": "Augusta"}):  # fmt: skip
                r = routed.post(f"/api/v2/contacts/{cid}", json=body, headers=headers)
                assert r.status_code == 200, r.text
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert sets == [set(), {"key_value", "email"}, {"name_key", "name_key_rev"}, {"mobile_phone"}], sets
        keys, _ = _written(settings, cid)
        assert (keys["name_key"], keys["name_key_rev"]) == ("augusta", "augusta")
        stored = routed.get(f"/api/v2/contacts/{cid}", headers=headers).json()["attributes"]
        assert (stored["email"], stored["mobilePhone"], stored["city"]) == (
            "b@example.com",
            "+46701234567",
            "Lund",
        )


@pytest.mark.postgres
def test_a_batch_of_creates_takes_every_rows_locks_first_in_order(
    pg_url: str, data_dir: Any, clock: Any
) -> None:
    """A batch written by one statement takes every row's advisory locks (the receipts' `contact_changed` hook's)
    before it looks at any row, in order, as the transaction around several statements does — so two batches, or
    a batch and a receipt, never wait on each other in a cycle. Held here by another session: the batch's
    largest lock, which the batch's first row needs. While the batch waits for it, it holds every other lock
    (a batch that took each row's locks as it reached the row would hold none of the second row's); once the
    lock is free, both contacts are written."""
    settings = Settings(
        database_url=pg_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0
    )
    tenant = make_tenant(settings)
    with _client(settings, clock, True) as fast:
        st = fast.app.state.promoflow  # type: ignore[attr-defined]
        assert fast.post("/api/v2/contacts", json={"email": "warm@example.com"},
                         headers={"apikey": tenant["apiKey"]}).status_code == 201  # fmt: skip
        pool = asyncpg_pool(st)
        assert pool is not None

        async def run() -> tuple[set[int], set[int], set[int], int, list[Any]]:
            async with st.db.read() as conn:
                ctx = await TenantService(st.clock.now()).authenticate(conn, tenant["apiKey"])
            probes = contact_probes()
            assert ctx is not None and probes is not None
            items, locks = [], []
            for i in range(2):
                body = {"email": f"lock{i}@example.com", "memberNumber": f"L{i}"}
                plan = _planned(ctx, body, {}, v3=False)
                assert plan is not None and not plan.generated
                item = _CreateItem(ctx, plan, probes, uuid.uuid4(), st.clock.now())
                items.append(item)
                locks.append(set(_pg_create_params(item, dict(plan.attrs))[2]))
            biggest = max(locks[0] | locks[1])
            first = 0 if biggest in locks[0] else 1
            items = [items[first], items[1 - first]]
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as holder:
                await holder.execute("SELECT pg_advisory_lock(%s)", (biggest,))
                batch = asyncio.ensure_future(_pg_write_creates(pool, st.db.engine.url, items))
                seen: dict[int, bool] = {}
                for _ in range(1000):  # until the batch waits for the held lock (a condition, polled)
                    cur = await holder.execute(
                        "SELECT (classid::bigint << 32) | objid::bigint, granted FROM pg_locks WHERE locktype = "
                        "'advisory' AND pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database())"
                    )
                    seen = {int(k): bool(g) for k, g in await cur.fetchall()}
                    if seen.get(biggest) is False:
                        break
                    await asyncio.sleep(0.01)
                await holder.execute("SELECT pg_advisory_unlock(%s)", (biggest,))
                written = await batch
            granted = {k for k, g in seen.items() if g}
            return granted, {k for k, g in seen.items() if not g}, locks[0] | locks[1], biggest, written

        assert fast.portal is not None
        granted, waiting, every_lock, biggest, written = fast.portal.call(run)
        assert waiting == {biggest} and granted == every_lock - {biggest}, (granted, waiting, every_lock)
        assert [r.attributes["email"] for r in written] in (
            ["lock0@example.com", "lock1@example.com"],
            ["lock1@example.com", "lock0@example.com"],
        )


def _same_answer(fast: Any, routed: Any, path: str, headers: dict[str, str]) -> Any:
    """The request on both paths: the same status, body and content type. Returns the quick path's answer."""
    fa, ra = fast.get(path, headers=headers), routed.get(path, headers=headers)
    assert (fa.status_code, fa.content) == (ra.status_code, ra.content), (path, fa.text, ra.text)
    assert fa.headers["content-type"] == ra.headers["content-type"]
    return fa


def test_contact_lookups_answer_the_same_on_both_paths(both: Any) -> None:
    """`GET /contacts/id` (the checkout identifying its customer): the quick path answers the questions whose one
    contact it finds, as the routed path does; every other question — refused, unknown parameters, a parameter
    twice, no contact, several, another tenant's — it leaves to the routed path, which answers it the same."""
    fast, routed, headers = both
    ada = {"email": "ada@example.com", "mobilePhone": "+46701234567", "socialSecurityNumber": "191212121212"}
    made = fast.post("/api/v2/contacts", json=ada, headers=headers).json()
    number = made["attributes"]["memberNumber"]
    for email in ("twin1@example.com", "twin2@example.com"):  # two contacts with one phone: "several match"
        fast.post("/api/v2/contacts", json={"email": email, "mobilePhone": "+46700000001"}, headers=headers)
    found = [
        "email=ada@example.com", "email=ADA%40Example.COM", f"customKey={number}", "any=ada@example.com",
        "mobilePhone=%2B46701234567", "socialSecurityNumber=19121212-1212", "email=ada@example.com&contactType=Member",
        "email=ada@example.com&mobilePhone=",
    ]  # fmt: skip
    routed_only = [
        "email=nobody@example.com", "email=not-an-e-mail", "", "email=ada@example.com&mobilePhone=%2B46701234567",
        "email=ada@example.com&contactType=Contact", "email=ada@example.com&contactType=Nope",
        "mobilePhone=%2B46700000001", "email=ada@example.com&email=ada@example.com", "email=ada@example.com&x=1",
    ]  # fmt: skip
    for v in ("v2", "v3"):
        for query in found + routed_only:
            before = _answered(fast)
            answer = _same_answer(fast, routed, f"/api/{v}/contacts/id?{query}", headers)
            assert _answered(fast) - before == (query in found), query
            if query in found:
                assert answer.json() == made["id"], query
    other = {"apikey": make_tenant(fast.app.state.promoflow.settings)["apiKey"]}  # type: ignore[attr-defined]
    before = _answered(fast)
    assert_error(_same_answer(fast, routed, "/api/v2/contacts/id?email=ada@example.com", other), 404,
                 "ContactNotFound")  # fmt: skip
    assert _answered(fast) == before


def test_contact_reads_answer_the_same_on_both_paths(both: Any) -> None:
    """`GET /contacts/{id}`: the quick path answers a contact of the caller's tenant as the routed path does (v2
    without ``contactType``); not a GUID, no such contact, another tenant's, a query string — the routed path.
    The literal paths beside it (``/contacts/count``, ``/contacts/id``) stay theirs."""
    fast, routed, headers = both
    made = fast.post(
        "/api/v3/contacts", json={"email": "read@example.com", "firstName": "Åsa"}, headers=headers
    )
    cid = made.json()["id"]
    for v in ("v2", "v3"):
        for ident in (cid, cid.upper(), "{" + cid + "}", cid.replace("-", "")):
            before = _answered(fast)
            answer = _same_answer(fast, routed, f"/api/{v}/contacts/{ident}", headers)
            assert answer.status_code == 200 and answer.json()["id"] == cid
            assert ("contactType" in answer.json()) == (v == "v3")
            assert _answered(fast) == before + 1
        before = _answered(fast)
        for ident, status in (
            ("00000000-0000-4000-8000-000000000000", 404),
            ("nope", 400),
            (f"{cid}?x=1", 200),
        ):
            assert _same_answer(fast, routed, f"/api/{v}/contacts/{ident}", headers).status_code == status
        assert _answered(fast) == before
        assert _same_answer(fast, routed, f"/api/{v}/contacts/count", headers).json() == 1
        assert (
            _same_answer(fast, routed, f"/api/{v}/contacts/id?email=read@example.com", headers).json() == cid
        )
    other = {"apikey": make_tenant(fast.app.state.promoflow.settings)["apiKey"]}  # type: ignore[attr-defined]
    assert_error(_same_answer(fast, routed, f"/api/v2/contacts/{cid}", other), 404, "ContactNotFound")
