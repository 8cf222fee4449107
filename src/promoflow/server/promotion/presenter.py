"""The promotion feature's wire: Engage's models (v2 and v3) built from the services' domain values, for the router
and the fast path alike.

Absent optional fields are left out, never sent as ``null``: clients generated from Engage's swagger type them as
string / array / object and reject ``null`` (a client that accepts ``null`` accepts a missing key too). Engage's
own clients may also parse strictly (the published Python client raises on a field it does not know), so
promoflow's extension fields appear only where they are used: ``assignmentId`` and ``validFrom`` on v3 items,
``presentation.imageUrl`` when set, ``returnPolicy`` when not "none" (the list extension shows its fields always).
Every answer matches the operation's declared ``response_model`` (the test suite validates each against the
OpenAPI document).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pydantic_core

from ...kit.timeutil import iso, start_of_day
from ...wire.engage import ReturnPolicy
from .domain import AssignmentView, Promotion, PromotionFace, PromotionPage
from .rules import json_number, status_of


def _present(out: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """``out`` with the optional fields that have a value."""
    for k, v in optional.items():
        if v is not None:
            out[k] = v
    return out


def _local_values(ch: dict[str, Any]) -> list[dict[str, Any]] | None:
    # Money on the wire is a JSON number (A5), kept exact as text in the database.
    values = [
        {"currency": lv["currency"], "amount": json_number(lv["amount"])}
        for lv in ch.get("localValues") or ()
    ]
    return values or None


def _read_value(ch: dict[str, Any], currency: str) -> Any:
    """A channel's value as the contact-promotions API types it: PERCENT → integer, MONEY → {amount, currency}."""
    value = ch.get("value")
    if value is None:
        return None
    if ch["valueType"] == "PERCENT":
        return int(value)
    if ch["valueType"] == "MONEY":
        return {"amount": json_number(value), "currency": currency}
    return value


def face(promo: PromotionFace, currency: str) -> dict[str, Any]:
    """The part of an `ApiPromotionModel` item that every assignment of one promotion shows alike (the fast path
    caches it per promotion)."""
    channels = [
        _present({"type": ch["type"], "valueType": ch["valueType"]}, value=_read_value(ch, currency),
                 localValues=_local_values(ch), instruction=ch.get("instruction"))
        for ch in promo.channels
    ]  # fmt: skip
    out: dict[str, Any] = {"promotionId": str(promo.promotion_id)}
    _present(out, externalId=promo.external_id)
    out.update(type="Multichannel", name=promo.name)
    return _present(out, heading=promo.heading, description=promo.description, imageUrl=promo.image_url,
                    link=promo.link, redemptionChannels=channels)  # fmt: skip


def item_of(
    assignment_id: Any,
    part: dict[str, Any],
    valid_from: datetime,
    valid_to: datetime | None,
    redeemed_at: datetime | None,
    tz: ZoneInfo,
    v3: bool,
) -> dict[str, Any]:
    """One `ApiPromotionModel` item; ``id`` is the assignment id. v3 items also carry ``assignmentId`` (the same
    value) and the extension ``validFrom``; v2 items carry exactly Engage's fields."""
    out: dict[str, Any] = {"id": str(assignment_id)}
    if v3:
        out["assignmentId"] = out["id"]
    out.update(part)
    _present(out, expiresOn=iso(valid_to, tz))
    if v3:
        out["validFrom"] = iso(valid_from, tz)
    out["redeemed"] = redeemed_at is not None
    return _present(out, redeemedOn=iso(redeemed_at, tz))


# The JSON of recent faces' fields (`face_json`), each kept with the face it was written from.
_FACE_JSON: dict[Any, tuple[dict[str, Any], bytes]] = {}


def face_json(key: Any, part: dict[str, Any]) -> bytes:
    """``part``'s fields as JSON, without the braces (a face always has ``promotionId``), as `item_of`'s answer
    holds them. Written once per face: kept under ``key`` while ``part`` is the face cached for it (the fast path
    caches faces per promotion, and a renewed face is another object)."""
    cached = _FACE_JSON.get(key)
    if cached is not None and cached[0] is part:
        return cached[1]
    if len(_FACE_JSON) >= 50_000:
        _FACE_JSON.clear()
    text = pydantic_core.to_json(part)[1:-1]
    _FACE_JSON[key] = (part, text)
    return text


def unredeemed_json(
    assignment_id: Any, fields: bytes, valid_from: datetime, valid_to: datetime | None, tz: ZoneInfo, v3: bool
) -> bytes:
    """The JSON of `item_of`'s answer for an assignment not redeemed, byte for byte, from its face's `face_json`:
    the id and the moments are the only fields of their own, and their texts (a GUID, ISO 8601) need no escape."""
    aid = str(assignment_id)
    head = f'{{"id":"{aid}","assignmentId":"{aid}",' if v3 else f'{{"id":"{aid}",'
    end = iso(valid_to, tz)
    tail = "" if end is None else f',"expiresOn":"{end}"'
    if v3:
        tail += f',"validFrom":"{iso(valid_from, tz)}"'
    return b"".join((head.encode(), fields, tail.encode(), b',"redeemed":false}'))


def item(view: AssignmentView, currency: str, tz: ZoneInfo, *, v3: bool) -> dict[str, Any]:
    return item_of(
        view.id, face(view.promotion, currency), view.valid_from, view.valid_to, view.redeemed_at, tz, v3
    )


def items(views: list[AssignmentView], currency: str, tz: ZoneInfo, *, v3: bool) -> list[dict[str, Any]]:
    faces: dict[Any, dict[str, Any]] = {}
    out = []
    for view in views:
        part = faces.get(view.promotion.promotion_id)
        if part is None:
            part = faces[view.promotion.promotion_id] = face(view.promotion, currency)
        out.append(item_of(view.id, part, view.valid_from, view.valid_to, view.redeemed_at, tz, v3))
    return out


def validity(promo: Promotion, tz: ZoneInfo) -> dict[str, Any]:
    """`PromotionValidityModel`: dates echoed as the local midnight they start."""
    out: dict[str, Any] = {"startDate": iso(start_of_day(promo.start_date, tz), tz)}
    if promo.end_date is not None:
        out["endDate"] = iso(start_of_day(promo.end_date, tz), tz)
    if promo.assigned_unit is not None:
        out["assignedValidity"] = {"unit": promo.assigned_unit, "amount": promo.assigned_amount}
    return out


def definition(promo: Promotion, now: datetime, tz: ZoneInfo, *, extended: bool = False) -> dict[str, Any]:
    """The `MultichannelPromotionModel`. ``extended`` (the list extension) adds promoflow's fields: ``returnPolicy``
    always, ``createdOn`` and ``changedOn``."""
    out: dict[str, Any] = {"id": str(promo.id)}
    _present(out, externalId=promo.external_id)
    out.update(name=promo.name, status=status_of(promo, now, tz).value, validity=validity(promo, tz))
    out["presentation"] = _present({}, heading=promo.heading, description=promo.description, link=promo.link,
                                   imageUrl=promo.image_url)  # fmt: skip
    out["redemptionChannels"] = [
        _present({"type": ch["type"], "valueType": ch["valueType"]}, value=ch.get("value"),
                 localValues=_local_values(ch), instruction=ch.get("instruction"))
        for ch in promo.channels
    ]  # fmt: skip
    if extended or promo.return_policy != ReturnPolicy.NONE.value:
        out["returnPolicy"] = promo.return_policy
    if extended:
        out["createdOn"] = iso(promo.created_at, tz)
        out["changedOn"] = iso(promo.updated_at, tz)
    return out


def page(result: PromotionPage, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """The list extension's page: ``{items, totalCount, offset, count}``."""
    items_out = [definition(p, now, tz, extended=True) for p in result.items]
    return {"items": items_out, "totalCount": result.total, "offset": result.offset, "count": len(items_out)}
