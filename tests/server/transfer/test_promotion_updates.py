"""createOrUpdate updates published promotions (issue 11 §11), as Engage's promotion import does: name,
presentation and end date always (the assignments' validity follows the end date, A6), the start date only while
never assigned, the channels never (set on creation); a deactivated promotion not at all. On both databases; the
fast lane (PostgreSQL) shows a renamed promotion within its cache time."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import pytest

from promoflow.server.promotion.fastlane import FACE_SECONDS
from promoflow.wire.xml import (
    PROMOTION_IMPORT_DIR,
    ImportChannel,
    ImportPresentation,
    PromotionAssignment,
    PromotionUpsert,
    Verdict,
    write_promotions,
)
from tests.server._support import assign, new_contact, new_promotion

_seq = iter(range(100, 1000))


def _process(transfer: Any, *items: Any) -> list[Any]:
    name = f"20260310120{next(_seq)}_1_promotions.xml"
    summary, records = transfer.process(PROMOTION_IMPORT_DIR, name, write_promotions(list(items)))
    assert summary.status == "processed"
    return records


def _promotion(api: Any, external_id: str) -> dict[str, Any]:
    r = api.get("/api/v2/promotions/multichannels", params={"externalId": external_id})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _expires(api: Any, contact_id: str) -> dict[str, str]:
    """Each of the contact's coupons (redeemed or expired included) → its expiresOn."""
    items = api.get(
        "/api/v3/promotion-assignments", params={"contactId": contact_id, "includeRedeemed": "true"}
    ).json()
    return {i["id"]: i["expiresOn"] for i in items}


def test_a_file_created_promotion_is_updated_by_the_next_file(transfer):
    api = transfer.api
    created = PromotionUpsert(
        promotion_name="Spring", external_promotion_id="SPRING", valid_from_date=date(2026, 3, 1),
        valid_to_date=date(2026, 3, 31),
        redemption_channels=[ImportChannel(type="POS", value_type="PERCENT", value="15")],
    )  # fmt: skip
    assert [r.verdict for r in _process(transfer, created)] == [Verdict.APPLIED]
    before = _promotion(api, "SPRING")
    assert before["status"] == "Active"  # published by default
    c = new_contact(api)
    coupon = assign(api, c["id"], before["id"])["id"]
    assert _expires(api, c["id"]) == {coupon: "2026-03-31T23:59:59+02:00"}

    update = PromotionUpsert(
        promotion_name="Spring, longer", external_promotion_id="SPRING", valid_to_date=date(2026, 4, 30),
        presentation=ImportPresentation(heading="20% off", description="All spring"), published=False,
        redemption_channels=[ImportChannel(type="ECOM", value_type="EXTERNALOFFER", value="X")],
    )  # fmt: skip
    (record,) = _process(transfer, update)
    assert record.verdict is Verdict.APPLIED, record
    reason = record.reason or ""
    assert f"updated promotion {before['id']}" in reason
    assert all(f in reason for f in ("name", "heading", "description", "end_date")), reason
    assert "redemptionChannels kept" in reason and "published=false ignored" in reason
    after = _promotion(api, "SPRING")
    assert after["id"] == before["id"] and after["status"] == "Active"
    assert after["name"] == "Spring, longer"
    assert (after["presentation"]["heading"], after["presentation"]["description"]) == (
        "20% off",
        "All spring",
    )
    assert after["validity"]["endDate"].startswith("2026-04-30")
    assert after["redemptionChannels"] == before["redemptionChannels"]  # set on creation only
    # the coupon shows the new name and lasts to the new end date
    (item,) = api.get(f"/api/v2/contacts/{c['id']}/promotions").json()
    assert (item["name"], item["heading"], item["expiresOn"]) == (
        "Spring, longer",
        "20% off",
        "2026-04-30T23:59:59+02:00",
    )
    # the same record again (twice: another file than the last) changes nothing
    again = _process(transfer, update, update)
    assert [r.verdict for r in again] == [Verdict.DUPLICATE] * 2 and "unchanged" in (again[0].reason or "")


def test_the_assignments_follow_the_end_date_up_to_their_own_validity(transfer):
    """Assigned validity 10 days: a coupon whose own end is before the promotion's is never moved; the others
    end at the earlier of the new end date and their own end — moved out, in, and out again."""
    api = transfer.api
    promo = new_promotion(api, external_id="TEN", name="Ten days", start="2026-03-01", end="2026-03-20",
                          assigned={"unit": "Days", "amount": 10})  # fmt: skip
    c = new_contact(api)
    early = assign(api, c["id"], promo["id"])["id"]  # 10 March: its own end, 20 March, is the promotion's
    api.clock.advance(timedelta(days=5))
    middle = assign(api, c["id"], promo["id"])["id"]  # 15 March: own end 25 March, cut to 20 March
    api.clock.advance(timedelta(days=2))
    late = assign(api, c["id"], promo["id"])["id"]  # 17 March: own end 27 March, cut to 20 March

    def end(day: date) -> list[Any]:
        return _process(transfer, PromotionUpsert(promotion_name="Ten days", external_promotion_id="TEN",
                                                  valid_to_date=day))  # fmt: skip

    def stamp(day: int) -> str:
        return f"2026-03-{day:02d}T23:59:59+01:00" if day < 29 else f"2026-03-{day:02d}T23:59:59+02:00"

    assert _expires(api, c["id"]) == {early: stamp(20), middle: stamp(20), late: stamp(20)}
    assert end(date(2026, 3, 26))[0].verdict is Verdict.APPLIED
    assert _expires(api, c["id"]) == {early: stamp(20), middle: stamp(25), late: stamp(26)}
    assert end(date(2026, 3, 22))[0].verdict is Verdict.APPLIED
    assert _expires(api, c["id"]) == {early: stamp(20), middle: stamp(22), late: stamp(22)}
    assert end(date(2026, 4, 30))[0].verdict is Verdict.APPLIED
    assert _expires(api, c["id"]) == {early: stamp(20), middle: stamp(25), late: stamp(27)}


def test_the_start_date_changes_only_while_never_assigned(transfer):
    api = transfer.api
    new_promotion(api, external_id="FREE", name="Free", start="2026-03-01")
    taken = new_promotion(api, external_id="TAKEN", name="Taken", start="2026-03-01")
    assign(api, new_contact(api)["id"], taken["id"])
    records = _process(
        transfer,
        PromotionUpsert(
            promotion_name="Free", external_promotion_id="FREE", valid_from_date=date(2026, 4, 1)
        ),
        PromotionUpsert(
            promotion_name="Taken, renamed", external_promotion_id="TAKEN", valid_from_date=date(2026, 3, 5)
        ),  # fmt: skip
    )
    assert [r.verdict for r in records] == [Verdict.APPLIED, Verdict.INVALID]
    assert "PromotionHasAssignments" in (records[1].reason or "")
    moved = _promotion(api, "FREE")
    assert moved["validity"]["startDate"].startswith("2026-04-01") and moved["status"] == "Scheduled"
    kept = _promotion(api, "TAKEN")  # the refused record changed nothing, not even the name
    assert kept["name"] == "Taken" and kept["validity"]["startDate"].startswith("2026-03-01")


def test_a_deactivated_promotion_is_not_changed_and_one_ended_by_its_date_can_be_extended(transfer):
    api = transfer.api
    gone = new_promotion(api, external_id="GONE", name="Gone")
    assert api.post(f"/api/v2/promotions/multichannels/{gone['id']}/deactivate").status_code == 200
    over = new_promotion(api, external_id="OVER", name="Over", start="2026-03-01", end="2026-03-12")
    c = new_contact(api)
    coupon = assign(api, c["id"], over["id"])["id"]
    api.clock.advance(timedelta(days=4))  # 14 March: "Over" has ended by its date, its coupon expired
    r = api.post(f"/api/v2/promotions/codes/{coupon}/redeem", json={"redemptionChannel": "POS"})
    assert r.status_code == 409 and r.json()["errorCode"] == "PromotionExpired"
    records = _process(
        transfer,
        PromotionUpsert(promotion_name="Gone again", external_promotion_id="GONE"),
        PromotionUpsert(promotion_name="Over", external_promotion_id="OVER", valid_to_date=date(2026, 3, 31)),
    )
    assert [r.verdict for r in records] == [Verdict.INVALID, Verdict.APPLIED]
    assert "PromotionNotActive" in (records[0].reason or "")
    assert _promotion(api, "GONE")["name"] == "Gone"
    assert _promotion(api, "OVER")["status"] == "Active"
    r = api.post(f"/api/v2/promotions/codes/{coupon}/redeem", json={"redemptionChannel": "POS"})
    assert r.status_code == 200, r.text  # its coupon is valid again, to the new end date


def test_an_assignment_in_the_same_file_sees_the_update(transfer):
    api = transfer.api
    c = new_contact(api)
    _process(transfer, PromotionUpsert(promotion_name="Short", external_promotion_id="SHORT",
                                       valid_to_date=date(2026, 3, 15)))  # fmt: skip
    records = _process(
        transfer,
        PromotionUpsert(
            promotion_name="Short", external_promotion_id="SHORT", valid_to_date=date(2026, 3, 25)
        ),
        PromotionAssignment(external_promotion_id="SHORT", contact_id=c["id"]),
    )
    assert [r.verdict for r in records] == [Verdict.APPLIED, Verdict.APPLIED]
    assert list(_expires(api, c["id"]).values()) == ["2026-03-25T23:59:59+01:00"]


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_the_fast_lane_shows_a_renamed_promotion_within_its_cache_time(transfer):
    api = transfer.api
    _process(transfer, PromotionUpsert(promotion_name="Old name", external_promotion_id="FAST"))
    c = new_contact(api)
    assign(api, c["id"], _promotion(api, "FAST")["id"])
    state = api.client.app.state.promoflow  # type: ignore[attr-defined]
    answered = state.extras.get("fastlane_answered", 0)
    assert [i["name"] for i in api.get(f"/api/v2/contacts/{c['id']}/promotions").json()] == ["Old name"]
    assert state.extras.get("fastlane_answered", 0) == answered + 1  # the fast lane answered (and cached it)
    _process(transfer, PromotionUpsert(promotion_name="New name", external_promotion_id="FAST"))
    renamed = time.monotonic()
    deadline = renamed + FACE_SECONDS + 10
    while [i["name"] for i in api.get(f"/api/v2/contacts/{c['id']}/promotions").json()] != ["New name"]:
        assert time.monotonic() < deadline, "the fast lane still shows the old name"
        time.sleep(0.1)  # polling the observable answer, bounded by the deadline
    assert time.monotonic() - renamed <= FACE_SECONDS + 5
