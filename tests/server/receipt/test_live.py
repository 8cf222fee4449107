"""Against a real `promoflow serve` process: concurrent copies of a receipt, a receipt racing a redeem call, and a
pending receipt that survives a restart of the server (it lives in the database, not in memory)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from promoflow.server.config import Settings
from promoflow.server.db import make_sync_engine
from promoflow.server.models import redemption
from promoflow.server.models.receipts import receipt, receipt_promotion
from tests.conftest import make_tenant
from tests.server.receipt.conftest import receipt_body
from tests.support.servers import ServerProcess, start_server


class LiveServer:
    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir
        self.tenant = make_tenant(Settings(database_url=db_url, data_dir=data_dir))
        self.engine: Engine = make_sync_engine(db_url)
        self.server: ServerProcess | None = None

    def start(self) -> None:
        self.server = start_server(self.db_url, self.data_dir, "--no-ftp", "--no-worker")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def headers(self) -> dict[str, str]:
        return {"apikey": self.tenant["apiKey"]}

    def client(self) -> httpx.Client:
        assert self.server is not None
        return httpx.Client(base_url=self.server.base_url, headers=self.headers, timeout=60)

    def async_client(self) -> httpx.AsyncClient:
        assert self.server is not None
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        return httpx.AsyncClient(
            base_url=self.server.base_url, headers=self.headers, timeout=60, limits=limits
        )

    def count(self, table: Any, *conds: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(table).where(*conds)) or 0)

    def setup_promotion(
        self, c: httpx.Client, contacts: int = 1, per_contact: int = 1
    ) -> list[tuple[str, str, str]]:
        """(email, contact id, assignment id) for each assignment of a fresh Active POS promotion."""
        r = c.post("/api/v2/promotions/multichannels", json={
            "name": "srv", "validity": {"startDate": "2020-01-01"},
            "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "10"}]})  # fmt: skip
        pid = r.json()["id"]
        assert c.post(f"/api/v2/promotions/multichannels/{pid}/activate").status_code == 200
        out = []
        for _ in range(contacts):
            email = f"{uuid.uuid4().hex[:10]}@example.com"
            cid = c.post("/api/v2/contacts", json={"email": email}).json()["id"]
            for _ in range(per_contact):
                out.append(
                    (email, cid, c.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"])
                )
        return out


@pytest.fixture
def srv(db_url: str, data_dir: Path) -> Iterator[LiveServer]:
    env = LiveServer(db_url, data_dir)
    env.start()
    try:
        yield env
    finally:
        env.stop()
        env.engine.dispose()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def test_twenty_concurrent_copies_make_one_receipt_one_redemption_one_link(srv: LiveServer) -> None:
    with srv.client() as c:
        [(email, _cid, aid)] = srv.setup_promotion(c)
    with_coupon = receipt_body(key=email, used=[{"couponId": aid}], created=_now())
    # A plain receipt takes the one-statement quick path on PostgreSQL: the same guarantee must hold there.
    plain = receipt_body(key=email, created=_now(), store=f"NEW-{uuid.uuid4().hex[:6]}")

    async def burst(body: dict[str, Any]) -> list[httpx.Response]:
        async with srv.async_client() as ac:
            return list(await asyncio.gather(*(ac.post("/api/v2/receipts", json=body) for _ in range(20))))

    tid = uuid.UUID(srv.tenant["tenantId"])
    for body in (with_coupon, plain):
        replies = asyncio.run(burst(body))
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
        assert sorted(r.json()["status"] for r in replies) == ["Created"] + ["Duplicate"] * 19
        uid = body["uniqueReceiptId"]
        assert srv.count(receipt, receipt.c.tenant_id == tid, receipt.c.unique_receipt_id == uid) == 1
    assert srv.count(redemption, redemption.c.assignment_id == uuid.UUID(aid)) == 1
    assert srv.count(receipt_promotion, receipt_promotion.c.assignment_id == uuid.UUID(aid)) == 1
    with srv.client() as c:
        assert c.get(f"/api/v2/stores/{plain['storeExternalId']}").status_code == 200


def test_receipt_racing_a_redeem_ends_with_one_redemption_and_one_link(srv: LiveServer) -> None:
    with srv.client() as c:
        slots = srv.setup_promotion(c, contacts=10)
    bodies = [receipt_body(key=email, used=[{"couponId": aid}], created=_now()) for email, _, aid in slots]

    async def race() -> list[httpx.Response]:
        async with srv.async_client() as ac:
            calls = []
            for (_, _, aid), body in zip(slots, bodies, strict=True):
                calls.append(ac.post("/api/v2/receipts", json=body))
                calls.append(
                    ac.post(f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS"})
                )
            return list(await asyncio.gather(*calls))

    replies = asyncio.run(race())
    with srv.engine.connect() as conn:
        for i, (_, _, aid) in enumerate(slots):
            receipt_reply, redeem_reply = replies[2 * i], replies[2 * i + 1]
            assert receipt_reply.status_code == 200 and receipt_reply.json()["warnings"] == [], (
                receipt_reply.text
            )
            assert redeem_reply.status_code in (200, 409), redeem_reply.text
            a = uuid.UUID(aid)
            assert conn.scalar(select(func.count()).where(redemption.c.assignment_id == a)) == 1
            kinds = conn.execute(
                select(receipt_promotion.c.kind).where(receipt_promotion.c.assignment_id == a)
            ).all()
            # Whoever won: the redeem call (the receipt then links to it) or the receipt (the call gets a 409).
            expected = "linked" if redeem_reply.status_code == 200 else "redeemed"
            assert [k[0] for k in kinds] == [expected]
            if redeem_reply.status_code == 409:
                assert redeem_reply.json()["errorCode"] == "PromotionAlreadyRedeemed"
            uid = bodies[i]["uniqueReceiptId"]
            assert conn.scalar(select(func.count()).where(receipt.c.unique_receipt_id == uid)) == 1


def test_pending_receipt_survives_a_restart_and_is_applied_when_the_contact_appears(srv: LiveServer) -> None:
    new_email = f"{uuid.uuid4().hex[:10]}@example.com"
    phone = "+4670" + str(uuid.uuid4().int)[:7]
    with srv.client() as c:
        [(_email, cid, aid)] = srv.setup_promotion(c)
        unknown = receipt_body(key=new_email, created=_now())
        by_phone = receipt_body(key=phone, key_type="mobilePhone", used=[{"couponId": aid}], created=_now())
        assert c.post("/api/v2/receipts", json=unknown).status_code == 202
        assert c.post("/api/v2/receipts", json=by_phone).status_code == 202
    srv.stop()
    srv.start()  # a new process: nothing of the first one's memory
    with srv.client() as c:
        created = c.post("/api/v2/contacts", json={"email": new_email})
        assert created.status_code == 201
        history = c.get(f"/api/v2/contacts/{created.json()['id']}/transactions").json()
        assert [t["uniqueReceiptId"] for t in history["items"]] == [unknown["uniqueReceiptId"]]
        assert c.post(f"/api/v2/contacts/{cid}", json={"mobilePhone": phone}).status_code == 200
        items = c.get(f"/api/v2/contacts/{cid}/promotions", params={"includeRedeemed": "true"}).json()
        assert [(i["id"], i["redeemed"]) for i in items] == [(aid, True)]
        [tx] = c.get(f"/api/v2/contacts/{cid}/transactions").json()["items"]
        assert tx["usedPromotions"][0]["kind"] == "redeemed"


def test_receipt_racing_the_creation_of_its_contact_is_never_left_pending(srv: LiveServer) -> None:
    """A receipt for a new customer sent while another system creates that customer: whichever commits first,
    the receipt ends up matched (never pending for a contact that exists)."""
    emails = [f"{uuid.uuid4().hex[:10]}@example.com" for _ in range(15)]
    bodies = [receipt_body(key=e, created=_now()) for e in emails]

    async def race() -> list[httpx.Response]:
        async with srv.async_client() as ac:
            calls = []
            for email, body in zip(emails, bodies, strict=True):
                calls.append(ac.post("/api/v2/receipts", json=body))
                calls.append(ac.post("/api/v2/contacts", json={"email": email}))
            return list(await asyncio.gather(*calls))

    replies = asyncio.run(race())
    assert all(r.status_code in (200, 201, 202) for r in replies), [r.text for r in replies]
    tid = uuid.UUID(srv.tenant["tenantId"])
    assert srv.count(receipt, receipt.c.tenant_id == tid, receipt.c.status == "pending") == 0
    assert srv.count(receipt, receipt.c.tenant_id == tid, receipt.c.status == "matched") == len(emails)
