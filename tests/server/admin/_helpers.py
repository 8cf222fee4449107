"""Data for the admin tests, made through the public API (the same services the UI calls)."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import Api


def contact(api: Api, **attrs: Any) -> str:
    r = api.post("/api/v2/contacts", json=attrs)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def promotion(api: Api, name: str = "Ten off", *, activate: bool = True, start: str = "2026-03-01",
              end: str | None = "2026-03-31", channels: tuple[str, ...] = ("POS",), **extra: Any) -> str:  # fmt: skip
    body = {
        "name": name,
        "validity": {"startDate": start, "endDate": end},
        "redemptionChannels": [{"type": ch, "valueType": "PERCENT", "value": "10"} for ch in channels],
        **extra,
    }
    r = api.post("/api/v2/promotions/multichannels", json=body)
    assert r.status_code == 201, r.text
    pid = str(r.json()["id"])
    if activate:
        assert api.post(f"/api/v2/promotions/multichannels/{pid}/activate").status_code == 200
    return pid


def assign(api: Api, cid: str, pid: str) -> str:
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def text_of(html: str) -> str:
    """The page's visible text, tags dropped and whitespace squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


EDITOR = {
    "name": "Spring sale",
    "external_id": "",
    "start_date": "2027-01-01",
    "end_date": "2027-01-31",
    "heading": "20% off",
    "description": "All shirts",
    "ch_POS": "on",
    "POS_value_type": "PERCENT",
    "POS_value": "20",
    "action": "save",
}


def store_presentation(api: Api, pid: str, **columns: str | None) -> None:
    """Write a promotion's presentation columns straight to the database: a row stored before the API checked
    them (``link="javascript:…"``), which the pages must still show safely."""
    import uuid

    from sqlalchemy import update

    from promoflow.server.db import make_sync_engine
    from promoflow.server.models import promotion

    engine = make_sync_engine(api.settings.resolved_database_url())
    try:
        with engine.begin() as conn:
            conn.execute(update(promotion).where(promotion.c.id == uuid.UUID(pid)).values(**columns))
    finally:
        engine.dispose()
