"""Wire shapes of the receipt feature's extensions (stores, history, ledger, reports) — for the OpenAPI document
and for input validation. Receipts themselves use the shared `promoflow.wire.engage.Receipt`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from ...wire.engage import Flag, Text, WireModel


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


STORE_DETAILS = (
    "street",
    "zipCode",
    "city",
    "county",
    "region",
    "countryCode",
    "phoneNumber",
    "email",
    "homepage",
    "timeZone",
)


class StoreIn(WireModel):
    """Extension: name a store and set its type (RETAIL → a redeem-by-receipt is POS, ECOM → ECOM). Fields left
    out keep their value."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Malmö C", "type": "RETAIL", "city": "Malmö"}]}
    )

    name: str | None = Text(None, max_length=255)
    type: Annotated[str | None, BeforeValidator(_upper)] = Field(
        default=None, max_length=6, pattern="^(RETAIL|ECOM)$"
    )
    active: Flag | None = None
    street: str | None = Text(None, max_length=255)
    zip_code: str | None = Text(None, max_length=40)
    city: str | None = Text(None, max_length=255)
    county: str | None = Text(None, max_length=255)
    region: str | None = Text(None, max_length=255)
    country_code: str | None = Text(None, max_length=3)
    phone_number: str | None = Text(None, max_length=40)
    email: str | None = Text(None, max_length=255)
    homepage: str | None = Text(None, max_length=500)
    time_zone: str | None = Text(None, max_length=64)


class StoreOut(WireModel):
    external_id: str
    name: str | None = None
    type: str
    active: bool
    street: str | None = None
    zip_code: str | None = None
    city: str | None = None
    county: str | None = None
    region: str | None = None
    country_code: str | None = None
    phone_number: str | None = None
    email: str | None = None
    homepage: str | None = None
    time_zone: str | None = None
    created_on: str
    changed_on: str


class LinkedPromotion(WireModel):
    assignment_id: str
    promotion_id: str
    kind: str = Field(description="redeemed (by this receipt), linked (already redeemed) or returned")


class TransactionItem(WireModel):
    """Engage's `TransactionItem`, plus promoflow's fields (uniqueReceiptId, totals, linked promotions)."""

    id: str
    external_id: str
    unique_receipt_id: str
    transaction_number: str | None = None
    created_date: str
    store_external_id: str
    store_name: str | None = None
    store_type: str | None = None
    type: str
    number_of_items: float
    net_price_sum: float
    local_net_price_sum: float
    local_currency: str
    group_currency: str
    total_gross_price: float
    total_discount: float
    original_unique_receipt_id: str | None = None
    line_items: list[dict[str, Any]]
    payment_methods: list[dict[str, Any]]
    used_promotions: list[LinkedPromotion]
    warnings: list[str]
    received_on: str


class TransactionPage(WireModel):
    items: list[TransactionItem]
    total_count: int
    offset: int
    count: int


class LedgerEvent(WireModel):
    type: str = Field(description="assigned, shown, redeemed, linked, reactivated or deleted")
    at: str
    via: str | None = None
    channel: str | None = None
    store_external_id: str | None = None
    unique_receipt_id: str | None = None
    detail: dict[str, Any] | None = None


class Ledger(WireModel):
    assignment_id: str
    promotion_id: str
    contact_id: str
    events: list[LedgerEvent]


class ReportFigures(WireModel):
    redeemed: int = 0
    receipts: int = 0
    returns: int = 0
    revenue: dict[str, float] = Field(default_factory=dict, description="Net of returns, by currency.")
    discount: dict[str, float] = Field(default_factory=dict, description="Net of returns, by currency.")


class ChannelFigures(WireModel):
    channel: str
    redeemed: int


class StoreFigures(ReportFigures):
    store_external_id: str | None
    store_name: str | None = None


class DayFigures(ReportFigures):
    date: str
    shown: int = Field(default=0, description="Assignments shown for the first time that day.")


class PromotionReport(WireModel):
    promotion_id: str
    external_id: str | None = None
    name: str
    status: str
    time_zone: str
    assigned: int
    deleted: int
    shown: int
    impressions: int
    redeemed: int
    reactivated: int
    redemption_rate: float
    receipts: int
    returns: int
    revenue: dict[str, float]
    discount: dict[str, float]
    by_channel: list[ChannelFigures]
    by_store: list[StoreFigures]
    by_day: list[DayFigures]


class PromotionHeadline(WireModel):
    promotion_id: str
    external_id: str | None = None
    name: str
    status: str
    assigned: int
    shown: int
    redeemed: int
    redemption_rate: float
    receipts: int
    revenue: dict[str, float]


class PromotionReportPage(WireModel):
    items: list[PromotionHeadline]
    total_count: int
    offset: int
    count: int
