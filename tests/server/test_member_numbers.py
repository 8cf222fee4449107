"""Member numbers without a tenant-wide hot row (issue 16): unique across processes, and no create waits on a lock
held on the tenant's row."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from promoflow.server.config import Settings
from promoflow.server.contact import numbers
from promoflow.server.contact.service import ContactService
from promoflow.server.db import Database
from promoflow.server.models import contact, member_number_counter
from promoflow.server.tenant.service import TenantContext, TenantService
from tests.conftest import make_tenant

PER_PROCESS = 60
IN_FLIGHT = 8


async def _context(db: Database, api_key: str) -> TenantContext:
    async with db.read() as conn:
        ctx = await TenantService(datetime.now(UTC)).authenticate(conn, api_key)
    assert ctx is not None
    return ctx


async def _create_many(url: str, api_key: str, tag: str, start: Any) -> list[str]:
    numbers.BLOCK = 3  # many small blocks: the two processes reserve over and over, side by side
    db = Database(url, pool_size=IN_FLIGHT)
    try:
        ctx = await _context(db, api_key)
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> str:
            async with gate, db.write() as conn:
                out, created = await ContactService(ctx, datetime.now(UTC)).create(
                    conn, {"email": f"{tag}-{i}@example.com"}
                )
            assert created
            return str(out["attributes"]["memberNumber"])

        await asyncio.to_thread(start.wait)
        return await asyncio.gather(*(one(i) for i in range(PER_PROCESS)))
    finally:
        await db.dispose()


def _child(url: str, api_key: str, tag: str, start: Any, out: Any) -> None:
    try:
        out.put((tag, asyncio.run(_create_many(url, api_key, tag, start))))
    except BaseException as exc:  # the parent reports it
        out.put((tag, repr(exc)))


def test_two_processes_never_hand_out_the_same_member_number(db_url: str, data_dir: Any) -> None:
    settings = Settings(database_url=db_url, data_dir=data_dir, run_worker=False)
    tenant = make_tenant(settings)
    mp = multiprocessing.get_context("spawn")
    start, out = mp.Barrier(2), mp.Queue()
    procs = [mp.Process(target=_child, args=(db_url, tenant["apiKey"], tag, start, out)) for tag in "ab"]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(60)
    got = {tag: r for tag, r in results.items()}
    assert all(isinstance(r, list) for r in got.values()), got
    every = got["a"] + got["b"]
    assert len(every) == 2 * PER_PROCESS
    assert len(set(every)) == len(every), "a member number was handed out twice"
    assert all(len(n) == 8 and n.isdigit() for n in every)

    async def stored() -> tuple[int, int, int]:
        db = Database(db_url)
        try:
            async with db.read() as conn:
                tid = uuid.UUID(str(tenant["tenantId"]))
                q = select(func.count(), func.count(func.distinct(contact.c.member_number)))
                total, distinct = (await conn.execute(q.where(contact.c.tenant_id == tid))).one()
                counter = await conn.scalar(
                    select(member_number_counter.c.next_value).where(member_number_counter.c.tenant_id == tid)
                )
            return int(total), int(distinct), int(counter or 0)
        finally:
            await db.dispose()

    total, distinct, counter = asyncio.run(stored())
    assert total == distinct == 2 * PER_PROCESS
    assert counter >= max(int(n) for n in every)


@pytest.mark.postgres
def test_a_create_does_not_wait_on_a_lock_held_on_the_tenant_row(pg_url: str, data_dir: Any) -> None:
    """Another transaction holds the tenant's row (an UPDATE of it, not committed: the lock every create took
    when the counter lived there, and the one a settings change takes); creates still complete, including the
    one that reserves a new block of numbers."""
    settings = Settings(database_url=pg_url, data_dir=data_dir, run_worker=False)
    tenant = make_tenant(settings)
    tid = str(tenant["tenantId"])

    async def creates() -> list[str]:
        db = Database(pg_url, pool_size=4)
        try:
            ctx = await _context(db, tenant["apiKey"])
            got = []
            for i in range(3):
                async with db.write() as conn:
                    out, _ = await ContactService(ctx, datetime.now(UTC)).create(
                        conn, {"email": f"held-{i}@example.com"}
                    )
                got.append(str(out["attributes"]["memberNumber"]))
            return got
        finally:
            await db.dispose()

    numbers.BLOCK = 2  # the third create needs a new block while the tenant row is held
    try:
        with psycopg.connect(pg_url) as holder:
            holder.execute("UPDATE tenant SET updated_at = updated_at WHERE id = %s", (tid,))
            holder.execute("SELECT id FROM tenant WHERE id = %s FOR NO KEY UPDATE", (tid,))
            got = asyncio.run(asyncio.wait_for(creates(), timeout=30))
            holder.rollback()
    finally:
        numbers.BLOCK = 100
    assert len(set(got)) == 3


@pytest.mark.postgres
def test_a_tenants_writes_do_not_wait_on_its_row_even_when_it_is_locked_for_update(
    pg_url: str, data_dir: Any
) -> None:
    """Another transaction holds the tenant's row FOR UPDATE — the lock a foreign-key check waits for: a contact
    create, an update, an assignment and a receipt (each with its audit entry) still complete. With the tenant
    foreign keys of migration 0024's tables, each of them waited for that transaction."""
    import threading

    from starlette.testclient import TestClient

    from promoflow.server.http.app import create_app
    from tests.server.receipt.conftest import receipt_body

    settings = Settings(
        database_url=pg_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0
    )
    tenant = make_tenant(settings)
    tid = str(tenant["tenantId"])
    headers = {"apikey": tenant["apiKey"]}
    answers: dict[str, int] = {}
    with TestClient(create_app(settings, run_worker=False)) as client:
        body = {"name": "held", "validity": {"startDate": "2020-01-01"},
                "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "10"}]}  # fmt: skip
        pid = client.post("/api/v2/promotions/multichannels", json=body, headers=headers).json()["id"]
        assert (
            client.post(f"/api/v2/promotions/multichannels/{pid}/activate", headers=headers).status_code
            == 200
        )
        # The tenant's first create makes its member-number counter row, whose key to the tenant is checked once
        # (the counter is written once per block of numbers, never per create).
        assert (
            client.post("/api/v2/contacts", json={"email": "first@example.com"}, headers=headers).status_code
            == 201
        )
        # Likewise the first receipt of a store records the store (configuration, keyed to the tenant).
        first = receipt_body(key="first@example.com", created=datetime.now(UTC))
        assert client.post("/api/v2/receipts", json=first, headers=headers).status_code == 200

        def writes() -> None:
            r = client.post("/api/v2/contacts", json={"email": "held@example.com"}, headers=headers)
            answers["create"] = r.status_code
            cid = r.json()["id"]
            answers["update"] = client.post(
                f"/api/v2/contacts/{cid}", json={"firstName": "Held"}, headers=headers
            ).status_code
            answers["assign"] = client.post(
                f"/api/v2/contacts/{cid}/promotions/{pid}/assign", headers=headers
            ).status_code
            receipt = receipt_body(key="held@example.com", created=datetime.now(UTC))
            answers["receipt"] = client.post("/api/v2/receipts", json=receipt, headers=headers).status_code

        with psycopg.connect(pg_url) as holder:
            holder.execute("SELECT id FROM tenant WHERE id = %s FOR UPDATE", (tid,))
            worker = threading.Thread(target=writes)
            worker.start()
            worker.join(timeout=60)  # a failure detector, not a synchronisation: the writes end long before
            finished = not worker.is_alive()
            holder.rollback()
            worker.join()
    assert finished, f"writes waited on the tenant's row: {answers}"
    assert answers == {"create": 201, "update": 200, "assign": 200, "receipt": 200}, answers
