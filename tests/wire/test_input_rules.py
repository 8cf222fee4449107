"""The wire's input rules, shared by HTTP and the XML files: the date window, strict JSON types (files keep their
text), bounded text without NUL, and error messages a client can act on."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from promoflow.wire.engage import (
    EARLIEST,
    FROM_TEXT,
    LATEST,
    PromotionValidity,
    Receipt,
    RedeemBody,
    error_code,
    error_text,
)
from promoflow.wire.xml import Record, RecordError, read_promotions, read_redemptions, read_transactions
from tests.wire._samples import GUID, receipt


def test_the_window_is_2000_to_2100() -> None:
    assert (date(2000, 1, 1), date(2100, 12, 31)) == (EARLIEST, LATEST)


@pytest.mark.parametrize(
    ("model", "data", "code"),
    [
        (PromotionValidity, {"startDate": "1999-12-31"}, "InvalidValidity"),
        (PromotionValidity, {"startDate": "2026-01-01", "endDate": "2101-01-01"}, "InvalidValidity"),
        (PromotionValidity, {"startDate": "0001-01-01T00:00:00+14:00"}, "InvalidValidity"),
        (RedeemBody, {"redeemedOn": "1970-01-01T00:00:00+00:00"}, "InvalidRedeemedOn"),
        (Receipt, {**receipt().model_dump(mode="json", by_alias=True), "createdDate": "9999-12-31T23:59:59-14:00"},
         "InvalidCreatedDate"),
    ],
)  # fmt: skip
def test_dates_outside_the_window_name_their_error_code(model: Any, data: dict[str, Any], code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    (error,) = caught.value.errors()
    assert error_code(error) == code
    assert error_text(error) == "must lie between 2000-01-01 and 2100-12-31"


def test_the_first_and_last_day_of_the_window_are_accepted() -> None:
    assert PromotionValidity.model_validate({"startDate": "2000-01-01", "endDate": "2100-12-31"})
    assert RedeemBody.model_validate({"redeemedOn": "2100-12-31T23:59:59-14:00"}).redeemed_on is not None


def test_a_nul_is_named_as_such() -> None:
    with pytest.raises(ValidationError) as caught:
        RedeemBody.model_validate({"uniqueReceiptId": "a\x00b"})
    assert error_text(caught.value.errors()[0]) == "contains a NUL character"


@pytest.mark.parametrize("flag", ["true", "1", "false", "0"])
def test_booleans_are_text_in_files_and_json_true_false_elsewhere(flag: str) -> None:
    data = receipt().model_dump(mode="json", by_alias=True)
    data["items"][0]["awardsBonus"] = flag
    assert Receipt.model_validate(data, context=FROM_TEXT).items[0].awards_bonus is (flag in ("true", "1"))
    with pytest.raises(ValidationError, match="must be true or false"):
        Receipt.model_validate(data)
    data["items"][0]["awardsBonus"] = 1
    with pytest.raises(ValidationError, match="must be true or false"):
        Receipt.model_validate(data, context=FROM_TEXT)


def _only(records: list[Any]) -> Any:
    (item,) = records
    return item


@pytest.mark.parametrize(
    "when", ["1999-12-31T23:59:59+00:00", "2101-01-01T00:00:00+00:00", "0001-01-01T00:00:00+14:00"]
)
def test_a_redemption_file_record_dated_outside_the_window_is_invalid(when: str) -> None:
    doc = f"<promotionRedemptions><redemption><couponId>{GUID}</couponId><redeemedOn>{when}</redeemedOn></redemption></promotionRedemptions>"
    item = _only(list(read_redemptions(doc.encode())))
    assert isinstance(item, RecordError) and "redeemedOn" in item.reason and "2000-01-01" in item.reason


@pytest.mark.parametrize(("field", "day"), [("validFromDate", "1999-12-31"), ("validToDate", "2101-01-01")])
def test_a_promotion_file_record_dated_outside_the_window_is_invalid(field: str, day: str) -> None:
    doc = (
        "<promotions><createOrUpdate><promotion><promotionName>A</promotionName>"
        f"<externalPromotionId>A</externalPromotionId><{field}>{day}</{field}></promotion></createOrUpdate></promotions>"
    )
    item = _only(list(read_promotions(doc.encode())))
    assert (
        isinstance(item, RecordError)
        and field[0].lower() in item.reason.lower()
        and "2100-12-31" in item.reason
    )
    doc = (
        "<promotions><assign><assignment><externalPromotionId>A</externalPromotionId>"
        f"<contactId>{GUID}</contactId><validFromDate>1999-01-01</validFromDate></assignment></assign></promotions>"
    )
    item = _only(list(read_promotions(doc.encode())))
    assert isinstance(item, RecordError) and "2000-01-01" in item.reason


def test_a_transaction_file_record_dated_outside_the_window_is_invalid() -> None:
    from promoflow.wire.xml import write_transactions

    good = write_transactions([receipt()])
    assert isinstance(_only(list(read_transactions(good))), Record)
    bad = good.replace(b"2019-07-23T10:14:00+02:00", b"1999-07-23T10:14:00+02:00")
    item = _only(list(read_transactions(bad)))
    assert isinstance(item, RecordError) and "createdDate" in item.reason
