"""Promotion export files: assigned, redeemed and deleted sections streamed by the server."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from promoflow.wire.xml import (
    ExportChange,
    ExportedPromotion,
    PromotionExportWriter,
    Record,
    RecordError,
    read_promotion_export,
    write_promotion_export,
    xsd_file,
)
from tests.wire._samples import GUID, guids, instants, optional, text

XSD = etree.XMLSchema(etree.parse(str(xsd_file("promotionExport"))))

channels = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["POS", "ECOM", "OTHER"]),
            "valueType": st.sampled_from(["PERCENT", "MONEY"]),
        },
        optional={"value": text(10), "instruction": text(40)},
    ),
    max_size=3,
)
exported = st.fixed_dictionaries(
    {
        "change": st.sampled_from(list(ExportChange)),
        "contactId": guids,
        "couponId": guids,
        "promotionId": guids,
    },
    optional={
        "contactKey": text(40),
        "contactType": st.sampled_from(["Member", "Contact"]),
        "externalPromotionId": text(40),
        "externalPromotionCodeId": text(40),
        "name": text(40),
        "heading": text(40),
        "description": text(200),
        "validFromDate": instants,
        "expireDateTime": instants,
        "currency": st.sampled_from(["SEK", "EUR"]),
        "redemptionChannels": channels,
        "assignedDateTime": instants,
        "redeemedDateTime": instants,
        "redeemedChannel": st.sampled_from(["POS", "ECOM", "OTHER"]),
        "storeId": text(20),
        "storeType": st.sampled_from(["RETAIL", "ECOM"]),
        "uniqueReceiptId": optional(text(20)),
        "deletedDateTime": instants,
    },
).map(ExportedPromotion.model_validate)


@settings(max_examples=100, deadline=None)
@given(items=st.lists(exported, max_size=6))
def test_round_trip(items: list[ExportedPromotion]) -> None:
    data = write_promotion_export(items, export_id="e-1", created_on=datetime(2024, 5, 4, tzinfo=UTC))
    XSD.assertValid(etree.fromstring(data))
    assert [item.value for item in read_promotion_export(data) if isinstance(item, Record)] == items


def test_sections_follow_the_changes() -> None:
    def item(change: ExportChange) -> ExportedPromotion:
        return ExportedPromotion(change=change, contact_id=GUID, coupon_id=GUID, promotion_id=GUID)

    out = io.BytesIO()
    with PromotionExportWriter(out, from_date_time=datetime(2024, 5, 3, tzinfo=UTC)) as writer:
        for change in ("assigned", "assigned", "redeemed", "deleted", "redeemed"):
            writer.write(item(ExportChange(change)))
    data = out.getvalue()
    XSD.assertValid(etree.fromstring(data))
    assert (data.count(b"<assigned>"), data.count(b"<redeemed>"), data.count(b"<deleted>")) == (1, 2, 1)
    assert b'fromDateTime="2024-05-03T00:00:00+00:00"' in data
    changes = [r.value.change for r in read_promotion_export(data) if isinstance(r, Record)]
    assert changes == ["assigned", "assigned", "redeemed", "deleted", "redeemed"]


def test_a_bad_record_does_not_hide_the_others() -> None:
    good = f"<promotion><contactId>{GUID}</contactId><couponId>{GUID}</couponId><promotionId>{GUID}</promotionId></promotion>"
    data = f"<promotionExport><redeemed>{good}<promotion><couponId>x</couponId></promotion>{good}</redeemed></promotionExport>"
    first, bad, last = read_promotion_export(data.encode())
    assert isinstance(first, Record) and isinstance(last, Record)
    assert isinstance(bad, RecordError) and bad.key == "x" and bad.index == 2
