"""Sample records and hypothesis strategies shared by the XML format tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from promoflow.wire.engage import Receipt
from promoflow.wire.xml import Redemption

GUID = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
CEST = timezone(timedelta(hours=2))
WHEN = datetime(2024, 5, 1, 14, 3, tzinfo=CEST)


def redemption(**changes: Any) -> Redemption:
    fields: dict[str, Any] = {
        "coupon_id": GUID,
        "redemption_channel": "POS",
        "redeemed_on": WHEN,
        "store_external_id": "471",
        "unique_receipt_id": "r-1",
        "idempotency_key": "k-1",
    }
    fields.update(changes)
    return Redemption(**fields)


def receipt(**changes: Any) -> Receipt:
    body: dict[str, Any] = {
        "contact": {"matchKey": "90154424", "matchKeyType": "memberNumber", "contactType": "Member"},
        "uniqueReceiptId": "14534304434293",
        "receiptNumber": "87684684684",
        "createdDate": "2019-07-23T10:14:00+02:00",
        "storeExternalId": "471",
        "currency": "SEK",
        "totalGrossPrice": "199.50",
        "paymentMethods": [
            {
                "type": "card",
                "value": "199.50",
                "extraData": [
                    {"name": "cardNumber", "value": "489456*"},
                    {"name": "cardIssuer", "value": "X"},
                ],
            }
        ],
        "items": [
            {
                "type": "PURCHASE",
                "sku": "7391234567",
                "quantity": 1,
                "grossPaidPrice": "199.50",
                "taxAmount": "39.90",
                "taxPercent": 25,
                "articleNumber": "A-1",
                "articleName": "Stickad tröja V-neck",
                "discounts": [{"value": "-200.00", "type": "325", "description": "50% autumn discount"}],
            }
        ],
        "usedPromotions": [{"couponId": GUID}],
    }
    body.update(changes)
    return Receipt.model_validate(body)


# ------------------------------------------------------------------------------------------- strategies

# Text an XML file can carry and the models keep as is: no control characters (tab and newline are fine), no
# surrogates or non-characters, no surrounding whitespace (the models strip it).
_characters = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Cn", "Zl", "Zp")
) | st.sampled_from("\t\n&<>\"'")


def text(max_size: int = 30) -> st.SearchStrategy[str]:
    return (
        st.text(_characters, min_size=1, max_size=max_size)
        .map(str.strip)
        .filter(bool)
        .filter(lambda s: len(s) <= max_size)
    )


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Instants of the wire's window (EARLIEST–LATEST): the models refuse others.
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31), timezones=offsets)
money = st.decimals(min_value=-(10**7), max_value=10**7, places=2, allow_nan=False, allow_infinity=False)
guids = st.uuids().map(str)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


# Not st.builds(Redemption, ...): hypothesis would read pydantic's alias signature and invent the fields.
redemptions = st.fixed_dictionaries(
    {
        "coupon_id": guids,
        "contact_id": optional(guids),
        "redemption_channel": st.sampled_from(["POS", "ECOM", "OTHER"]),
        "redeemed_on": instants,
        "store_external_id": optional(text(255)),
        "unique_receipt_id": optional(text(255)),
        "idempotency_key": optional(text(255)),
    }
).map(lambda fields: Redemption(**fields))

_extra_data = st.lists(st.fixed_dictionaries({"name": text(40), "value": optional(text(60))}), max_size=3)


def _drop_none(strategy: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return strategy.map(lambda data: {key: value for key, value in data.items() if value is not None})


_items = st.lists(
    _drop_none(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["PURCHASE", "RETURN", "ADJUSTMENT"]),
                "quantity": st.integers(-5, 5),
                "grossPaidPrice": money,
            },
            optional={
                "sku": optional(text(40)),
                "taxAmount": optional(money),
                "taxPercent": optional(st.sampled_from(["0", "6", "12", "25"])),
                "articleNumber": optional(text(40)),
                "articleName": optional(text(80)),
                "awardsBonus": optional(st.booleans()),
                "extraData": optional(_extra_data),
                "discounts": optional(
                    st.lists(
                        _drop_none(
                            st.fixed_dictionaries(
                                {"value": money},
                                optional={"type": optional(text(20)), "description": text(60)},
                            )
                        ),
                        max_size=2,
                    )
                ),
            },
        )
    ),
    min_size=1,
    max_size=4,
)

receipts = _drop_none(
    st.fixed_dictionaries(
        {
            "contact": _drop_none(
                st.fixed_dictionaries(
                    {
                        "matchKey": text(40),
                        "matchKeyType": st.sampled_from(["email", "memberNumber", "contactId"]),
                    },
                    optional={"contactType": optional(st.sampled_from(["Member", "Contact"]))},
                )
            ),
            "uniqueReceiptId": text(255),
            "createdDate": instants,
            "storeExternalId": text(20),
            "currency": st.sampled_from(["SEK", "EUR", "NOK"]),
            "totalGrossPrice": money,
            "paymentMethods": st.lists(
                _drop_none(
                    st.fixed_dictionaries(
                        {"type": text(20), "value": money},
                        optional={"description": optional(text(60)), "extraData": optional(_extra_data)},
                    )
                ),
                min_size=1,
                max_size=3,
            ),
            "items": _items,
        },
        optional={
            "receiptNumber": optional(text(20)),
            "exchangeRateToGroupCurrency": optional(st.sampled_from(["1", "0.0935", "11.2"])),
            "taxDetails": optional(
                st.lists(
                    _drop_none(st.fixed_dictionaries({}, optional={"description": text(20), "value": money})),
                    max_size=2,
                )
            ),
            "usedBonusChecks": optional(
                st.lists(st.fixed_dictionaries({"checkNumber": text(20)}), max_size=2)
            ),
            "usedPromotions": optional(
                st.lists(
                    _drop_none(st.fixed_dictionaries({}, optional={"couponId": guids, "promotionId": guids}))
                )
            ),
            "extraData": optional(_extra_data),
            "originalUniqueReceiptId": optional(text(40)),
        },
    )
).map(Receipt.model_validate)
