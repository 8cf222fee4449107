"""Building blocks of the receipt tests: contacts, promotions and assignments made through the API, receipt bodies
that add up, and direct database reads (to prove what was — or was not — stored)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from promoflow.server.db import make_sync_engine
from promoflow.server.models import redemption
from promoflow.server.models.receipts import receipt, receipt_pending, receipt_promotion
from tests.conftest import Api

ERROR_KEYS = {"statusCode", "errorCode", "message"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS and body["statusCode"] == status and body["errorCode"] == code, body
    return dict(body)


def item(
    price: str = "100.00",
    *,
    sku: str = "SKU-1",
    qty: int = 1,
    type_: str = "PURCHASE",
    discount: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": type_,
        "sku": sku,
        "quantity": qty,
        "grossPaidPrice": float(Decimal(price)),
        "taxAmount": 0,
        "taxPercent": 25,
        "articleNumber": sku,
        "articleName": f"Article {sku}",
    }
    if discount is not None:
        out["discounts"] = [{"value": float(Decimal(discount)), "type": "promo", "description": "promotion"}]
    return out


def receipt_body(
    *,
    key: str,
    key_type: str = "email",
    uid: str | None = None,
    items: list[dict[str, Any]] | None = None,
    used: list[dict[str, Any]] | None = None,
    store: str = "S1",
    created: datetime | str = "2026-03-10T13:00:00+01:00",
    **extra: Any,
) -> dict[str, Any]:
    items = items if items is not None else [item("100.00", sku="A"), item("50.00", sku="B")]
    total = sum(
        (
            -abs(Decimal(str(i["grossPaidPrice"])))
            if i["type"] == "RETURN"
            else Decimal(str(i["grossPaidPrice"]))
            for i in items
        ),
        Decimal(0),
    )
    body: dict[str, Any] = {
        "contact": {"matchKey": key, "matchKeyType": key_type},
        "uniqueReceiptId": uid or f"r-{uuid.uuid4().hex[:12]}",
        "receiptNumber": "1001",
        "createdDate": created if isinstance(created, str) else created.isoformat(),
        "storeExternalId": store,
        "currency": "SEK",
        "totalGrossPrice": float(total),
        "paymentMethods": [{"type": "card", "value": float(total)}],
        "items": items,
    }
    if used is not None:
        body["usedPromotions"] = used
    body.update(extra)
    return body


class Flow:
    """The Engage flow through the in-process API, plus database reads."""

    def __init__(self, api: Api, engine: Engine) -> None:
        self.api = api
        self.engine = engine

    def contact(self, email: str | None = None, **attrs: Any) -> str:
        r = self.api.post(
            "/api/v2/contacts", json={"email": email or f"{uuid.uuid4().hex[:10]}@example.com", **attrs}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def promotion(
        self,
        *channels: str,
        return_policy: str | None = None,
        start: str = "2026-01-01",
        end: str | None = "2026-12-31",
        name: str = "20% off",
    ) -> str:
        validity: dict[str, Any] = {"startDate": start}
        if end:
            validity["endDate"] = end
        body: dict[str, Any] = {
            "name": name,
            "validity": validity,
            "redemptionChannels": [
                {"type": c, "valueType": "PERCENT", "value": "20"} for c in channels or ("POS",)
            ],
        }
        if return_policy:
            body["returnPolicy"] = return_policy
        r = self.api.post("/api/v2/promotions/multichannels", json=body)
        assert r.status_code == 201, r.text
        pid = str(r.json()["id"])
        assert self.api.post(f"/api/v2/promotions/multichannels/{pid}/activate").status_code == 200
        return pid

    def assign(self, contact_id: str, promotion_id: str) -> str:
        r = self.api.post(f"/api/v2/contacts/{contact_id}/promotions/{promotion_id}/assign")
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def send(self, body: dict[str, Any], *, v3: bool = False, **kw: Any) -> Any:
        return self.api.post(f"/api/{'v3' if v3 else 'v2'}/receipts", json=body, **kw)

    def redeem(self, assignment_id: str, channel: str = "POS") -> Any:
        return self.api.post(
            f"/api/v2/promotions/codes/{assignment_id}/redeem", json={"redemptionChannel": channel}
        )

    def item_of(self, contact_id: str, assignment_id: str) -> dict[str, Any]:
        items = self.api.get(
            f"/api/v2/contacts/{contact_id}/promotions", params={"includeRedeemed": "true"}
        ).json()
        return next(i for i in items if i["id"] == assignment_id)

    # ------------------------------------------------------------------------------------ database reads

    def count(self, table: Any, *conds: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(table).where(*conds)) or 0)

    def receipts(self, uid: str) -> int:
        return self.count(receipt, receipt.c.tenant_id == self.tenant_id, receipt.c.unique_receipt_id == uid)

    def redemptions(self, assignment_id: str) -> int:
        return self.count(redemption, redemption.c.assignment_id == uuid.UUID(assignment_id))

    def links(self, assignment_id: str) -> int:
        return self.count(receipt_promotion, receipt_promotion.c.assignment_id == uuid.UUID(assignment_id))

    def tenant_rows(self) -> dict[str, int]:
        """How many receipt-feature rows the tenant has (a refused receipt must add none)."""
        from promoflow.server.models.receipts import store

        tid = self.tenant_id
        return {
            "receipt": self.count(receipt, receipt.c.tenant_id == tid),
            "pending": self.count(receipt_pending, receipt_pending.c.tenant_id == tid),
            "links": self.count(receipt_promotion, receipt_promotion.c.tenant_id == tid),
            "store": self.count(store, store.c.tenant_id == tid),
        }

    @property
    def tenant_id(self) -> uuid.UUID:
        return uuid.UUID(self.api.tenant["tenantId"])


@pytest.fixture
def flow(api: Api) -> Iterator[Flow]:
    engine = make_sync_engine(api.settings.resolved_database_url())
    try:
        yield Flow(api, engine)
    finally:
        engine.dispose()


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    """An instant in March 2026, UTC (the FrozenClock starts on 2026-03-10 12:00 UTC)."""
    from datetime import UTC

    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


ONE_DAY = timedelta(days=1)
