"""Engage JSON models (v2 and v3), shared by the server and the SDK so the two never disagree.

Input models ignore unknown fields (Engage may add response fields at any time, and integrators send extra ones);
names are camelCase on the wire. Money is ``Decimal``; datetimes must carry an offset.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        str_strip_whitespace=True,
    )


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _decimal_number(value: Decimal) -> float | int:
    # JSON numbers on the wire, as Engage sends them; Decimal in memory so arithmetic is exact.
    if value == value.to_integral_value():
        return int(value)
    return float(value)


Money = Annotated[Decimal, PlainSerializer(_decimal_number, return_type=float | int, when_used="json")]


class ChannelType(StrEnum):
    POS = "POS"
    ECOM = "ECOM"
    OTHER = "OTHER"


class ValueType(StrEnum):
    PERCENT = "PERCENT"
    MONEY = "MONEY"
    EXTERNALOFFER = "EXTERNALOFFER"
    MANUAL = "MANUAL"
    SWIPE = "SWIPE"


class PromotionStatus(StrEnum):
    DRAFT = "Draft"
    SCHEDULED = "Scheduled"
    ACTIVE = "Active"
    ENDED = "Ended"
    TEMPORARY = "Temporary"


class AssignedValidityUnit(StrEnum):
    DAYS = "Days"
    MONTHS = "Months"


def _unit(value: Any) -> Any:
    if isinstance(value, str):
        for unit in AssignedValidityUnit:
            if unit.value.lower() == value.strip().lower():
                return unit
    return value


ChannelTypeIn = Annotated[ChannelType, BeforeValidator(_upper)]
ValueTypeIn = Annotated[ValueType, BeforeValidator(_upper)]


# ----------------------------------------------------------------------------------------------- errors


class ErrorBody(WireModel):
    """Every error: HTTP status, an Engage-style PascalCase name, and a human message."""

    status_code: int
    error_code: str
    message: str


# ------------------------------------------------------------------------------------ promotion definitions


class AssignDateRange(WireModel):
    unit: Annotated[AssignedValidityUnit, BeforeValidator(_unit)]
    amount: int = Field(ge=1, le=3650)


DateOrInstant = date | AwareDatetime
"""A date (``2024-05-01``) or an instant with offset; instants are reduced to their date in the tenant's zone."""


class PromotionValidity(WireModel):
    start_date: DateOrInstant
    end_date: DateOrInstant | None = None
    assigned_validity: AssignDateRange | None = None


class LocalValue(WireModel):
    currency: str = Field(min_length=3, max_length=3)
    amount: Money

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("currency must be an ISO 4217 code such as SEK")
        return value.upper()


class RedemptionChannelIn(WireModel):
    type: ChannelTypeIn
    value_type: ValueTypeIn
    value: str | None = None
    local_values: list[LocalValue] | None = None
    instruction: str | None = Field(default=None, max_length=512)

    @field_validator("value", mode="before")
    @classmethod
    def _value_text(cls, value: Any) -> Any:
        # The definition API takes the value as a string; be lenient with numbers sent by loosely typed clients.
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float | Decimal):
            return str(value)
        return value


class Presentation(WireModel):
    heading: str | None = None
    description: str | None = None
    link: str | None = None
    image_url: str | None = None


class ReturnPolicy(StrEnum):
    NONE = "none"
    REACTIVATE_ON_RETURN = "reactivateOnReturn"


class MultichannelPromotionCreate(WireModel):
    """`MultichannelBasePromotionModel`: the body of create and (with the same shape) of update."""

    name: str = Field(min_length=1, max_length=450)
    external_id: str | None = Field(default=None, max_length=450)
    validity: PromotionValidity
    presentation: Presentation | None = None
    redemption_channels: list[RedemptionChannelIn] = Field(default_factory=list, max_length=10)
    return_policy: ReturnPolicy | None = Field(
        default=None, description="Extension: reactivate the assignment when the sale is returned."
    )


class RedemptionChannelOut(WireModel):
    type: ChannelType
    value_type: ValueType
    value: str | None = None
    local_values: list[LocalValue] | None = None
    instruction: str | None = None


class ValidityOut(WireModel):
    start_date: str
    end_date: str | None = None
    assigned_validity: AssignDateRange | None = None


class MultichannelPromotion(WireModel):
    """`MultichannelPromotionModel` as the server answers it."""

    id: str
    external_id: str | None = None
    name: str
    status: PromotionStatus
    validity: ValidityOut
    presentation: Presentation
    redemption_channels: list[RedemptionChannelOut]
    return_policy: ReturnPolicy = ReturnPolicy.NONE
    created_on: str | None = None
    changed_on: str | None = None


class PromotionPage(WireModel):
    """Extension: a page of promotion definitions."""

    items: list[MultichannelPromotion]
    total_count: int
    offset: int
    count: int


# --------------------------------------------------------------------------------- assignment & fetching


class MoneyValue(WireModel):
    amount: Money
    currency: str


class ApiPromotionChannel(WireModel):
    type: ChannelType
    value_type: ValueType
    value: int | MoneyValue | str | None = None
    local_values: list[LocalValue] | None = None
    instruction: str | None = None


class ApiPromotion(WireModel):
    """`ApiPromotionModel`: one assignment of a promotion to a contact (``id`` = assignment id)."""

    id: str
    assignment_id: str | None = Field(default=None, description="v3 only: the same value as id.")
    promotion_id: str
    external_id: str | None = None
    type: str = "Multichannel"
    name: str
    expires_on: str | None = None
    valid_from: str | None = Field(default=None, description="Extension: when the assignment becomes valid.")
    heading: str | None = None
    description: str | None = None
    redeemed: bool = False
    redeemed_on: str | None = None
    image_url: str | None = None
    link: str | None = None
    redemption_channels: list[ApiPromotionChannel]


class AssignmentCreateV3(WireModel):
    contact_id: str
    promotion_id: str


class RedeemBody(WireModel):
    """Redeem request. Extension fields are optional and used for late replays and reporting."""

    redemption_channel: str | None = None
    redeemed_on: AwareDatetime | None = None
    store_external_id: str | None = Field(default=None, max_length=255)
    unique_receipt_id: str | None = Field(default=None, max_length=255)


class BulkAssignCreate(WireModel):
    """Extension: assign one promotion to many contacts in the background."""

    contact_ids: list[str] | None = Field(default=None, max_length=100_000)
    contact_keys: list[str] | None = Field(default=None, max_length=100_000)
    contact_type: str | None = None
    batch_id: str | None = Field(
        default=None,
        max_length=255,
        description="Caller's id for this batch: repeating a batch id never assigns a contact twice.",
    )


class JobOut(WireModel):
    """Extension: a background job (bulk assignment, file import, export)."""

    id: str
    kind: str
    status: str
    progress_done: int
    progress_total: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_on: str
    finished_on: str | None = None


# ------------------------------------------------------------------------------------------------ contacts


class ContactOut(WireModel):
    """A contact. v3 answers carry `contactType` at the top; v2 answers (Engage's `IApiContact`) only in
    `meta.contactType`, from which it is filled in here."""

    id: str
    contact_type: str | None = None
    attributes: dict[str, Any]
    preferences: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    consents: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _type_from_meta(self) -> ContactOut:
        if self.contact_type is None:
            self.contact_type = self.meta.get("contactType") or "Member"
        return self


# ------------------------------------------------------------------------------------------------ receipts


class ExtraData(WireModel):
    name: str = Field(min_length=1, max_length=255)
    value: str | None = Field(default=None, max_length=4000)

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else value


class ReceiptContact(WireModel):
    match_key: str = Field(min_length=1, max_length=255)
    match_key_type: str
    contact_type: str | None = None

    @field_validator("match_key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ReceiptDiscount(WireModel):
    value: Money
    type: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=500)


class ReceiptItemType(StrEnum):
    PURCHASE = "PURCHASE"
    RETURN = "RETURN"
    ADJUSTMENT = "ADJUSTMENT"


class ReceiptItem(WireModel):
    type: Annotated[ReceiptItemType, BeforeValidator(_upper)] = ReceiptItemType.PURCHASE
    sku: str | None = Field(default=None, max_length=255)
    quantity: Decimal
    gross_paid_price: Money
    tax_amount: Money | None = None
    tax_percent: Decimal | None = None
    article_number: str | None = Field(default=None, max_length=255)
    article_name: str | None = Field(default=None, max_length=500)
    pack_quantity: Decimal | None = None
    article_group: str | None = Field(default=None, max_length=255)
    margin_percent: Decimal | None = None
    awards_bonus: bool | None = None
    extra_data: list[ExtraData] | None = None
    discounts: list[ReceiptDiscount] | None = None


class PaymentMethod(WireModel):
    type: str = Field(min_length=1, max_length=100)
    value: Money
    description: str | None = Field(default=None, max_length=500)
    extra_data: list[ExtraData] | None = None


class TaxDetail(WireModel):
    description: str | None = None
    value: Money | None = None
    percent: Decimal | None = None
    total_including_tax: Money | None = None
    total_excluding_tax: Money | None = None


class UsedBonusCheck(WireModel):
    check_number: str


class UsedPromotion(WireModel):
    promotion_id: str | None = None
    coupon_id: str | None = None


class Receipt(WireModel):
    """`POST /api/v2/receipts` body (Part B §7.2), plus promoflow's `originalUniqueReceiptId` for returns."""

    contact: ReceiptContact
    unique_receipt_id: str = Field(min_length=1, max_length=255)
    receipt_number: str | None = Field(default=None, max_length=255)
    created_date: AwareDatetime
    store_external_id: str = Field(min_length=1, max_length=255)
    # Three letters, checked by the server's receipt rules, which answer `InvalidCurrency` (docs/receipts.md).
    currency: str = Field(min_length=1, max_length=255)
    exchange_rate_to_group_currency: Decimal | None = None
    total_gross_price: Money
    payment_methods: list[PaymentMethod] = Field(min_length=1)
    items: list[ReceiptItem] = Field(min_length=1, max_length=5000)
    tax_details: list[TaxDetail] | None = None
    used_bonus_checks: list[UsedBonusCheck] | None = None
    used_promotions: list[UsedPromotion] | None = None
    extra_data: list[ExtraData] | None = None
    original_unique_receipt_id: str | None = Field(
        default=None, max_length=255, description="Extension: the sale this RETURN receipt returns."
    )

    @field_validator("receipt_number", mode="before")
    @classmethod
    def _number_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ReceiptResult(WireModel):
    unique_receipt_id: str
    status: str
    warnings: list[str] = Field(default_factory=list)


T = TypeVar("T")


class Page(WireModel, Generic[T]):
    """Engage's paged result: ``{items, totalCount, offset, count}``."""

    items: list[T]
    total_count: int
    offset: int
    count: int


def dump(model: BaseModel) -> dict[str, Any]:
    """The model as wire JSON (camelCase, money as numbers)."""
    return model.model_dump(mode="json", by_alias=True)


def dump_json(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True).encode()

