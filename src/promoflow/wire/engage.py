"""Engage JSON models (v2 and v3), shared by the server and the SDK so the two never disagree.

Input models ignore unknown fields (Engage may add response fields at any time, and integrators send extra ones);
names are camelCase on the wire. Money is ``Decimal``; datetimes must carry an offset.

Input is typed strictly (the JSON type the document names, never a silent conversion: ``0`` is not a date nor
``false``, ``true`` is not ``1``, ``"1_000"`` is not a number), every text has a maximum length and no NUL
character (PostgreSQL cannot store one, so no database may), and every date lies in the window the server works
in, ``EARLIEST``–``LATEST``. The same models read the XML files, whose values are all text: those are validated
with ``FROM_TEXT`` as context, which lets booleans be written as text.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError

from .errors import ErrorCode


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


# ------------------------------------------------------------------------------------------- input rules

EARLIEST = date(2000, 1, 1)
"""The first day a date on the wire may name (sales, validity, redemptions); earlier ones are refused."""
LATEST = date(2100, 12, 31)
"""The last day a date on the wire may name."""

NO_NUL = r"^[^\x00]*$"
"""The pattern of every input text: anything but a NUL character, which PostgreSQL cannot store."""

WEB_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f/?#][^\x00-\x1f\x7f]*$"
"""The pattern of a presentation's ``link`` and ``imageUrl``: an absolute ``http://`` or ``https://`` address with
a host, and no control character (a browser drops tabs and line breaks from an address, so they could hide what
it says). Never ``javascript:``, ``data:``, ``vbscript:`` or a relative address: tills, web shops, e-mails and the
admin UI put these into a link or an image, where another scheme can run script or a relative address would
point into whichever site shows it. Written for ECMAScript and Python alike (the OpenAPI document gives it)."""
_WEB_URL = re.compile(WEB_URL)

FROM_TEXT = {"text": True}
"""Validation context of the XML formats: every value is text there, so a boolean may be written as text."""

_DECIMAL_TEXT = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NUMBER_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number"},
            {"type": "string", "pattern": f"^{_DECIMAL_TEXT.pattern}$", "maxLength": 40},
        ]
    },
    mode="validation",
)


def Text(default: Any = ..., *, max_length: int, min_length: int | None = None, **kw: Any) -> Any:
    """A text field of an input model: at most ``max_length`` characters, no NUL character."""
    return Field(default, min_length=min_length, max_length=max_length, pattern=NO_NUL, **kw)


def is_web_url(text: str) -> bool:
    """Whether ``text`` is an address a page may link or load (`WEB_URL`): the one rule of the API, the promotion
    editor and the admin pages that show a stored link."""
    return _WEB_URL.fullmatch(text) is not None


WebUrl = Annotated[str, Field(max_length=2000, pattern=WEB_URL)]
"""A presentation's link or image: at most 2,000 characters, `WEB_URL` (refused as `InvalidUrl`)."""
_WEB_URL_TEXT = (
    "An absolute http:// or https:// address with a host (tills, web shops and e-mails link or load it); another "
    "scheme (javascript:, data:, …), a relative address or a control character → 400 `InvalidUrl`."
)


def _pattern_of(error: ErrorDetails) -> str | None:
    if error.get("type") != "string_pattern_mismatch":
        return None
    return str((error.get("ctx") or {}).get("pattern"))


def error_text(error: ErrorDetails) -> str:
    """A validation error's message, in words a client can act on."""
    pattern = _pattern_of(error)
    if pattern == NO_NUL:
        return "contains a NUL character"
    if pattern == WEB_URL:
        return (
            "must be an absolute http:// or https:// address with a host (javascript:, data:, other schemes, "
            "relative addresses and control characters are refused)"
        )
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def error_code(error: ErrorDetails) -> str | None:
    """The Engage error code a validator named for its refusal (``InvalidCreatedDate``…), if any."""
    if _pattern_of(error) == WEB_URL:
        return ErrorCode.INVALID_URL.value
    code = (error.get("ctx") or {}).get("errorCode")
    return str(code) if code else None


def _decimal_in(value: Any) -> Any:
    # A JSON number, or its text ("20.5", as files and some clients send amounts); never a boolean, and never a
    # text Python happens to read as a number ("1_000", " 5", "NaN").
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise PydanticCustomError("decimal_type", "must be a number")
    if isinstance(value, str) and (len(value) > 40 or not _DECIMAL_TEXT.fullmatch(value)):
        raise PydanticCustomError("decimal_parsing", "must be a number such as 20.5")
    return value


def _bool_in(value: Any, info: ValidationInfo) -> Any:
    # JSON says true or false; a file says it in text ("true", "1"), which pydantic reads.
    if (
        value is None
        or isinstance(value, bool)
        or (isinstance(value, str) and (info.context or {}).get("text"))
    ):
        return value
    raise PydanticCustomError("bool_type", "must be true or false")


def _temporal_in(value: Any) -> Any:
    # Dates travel as ISO 8601 text; a number would be read as seconds since 1970, which no client means.
    if isinstance(value, str | date):  # a datetime is a date
        return value
    raise PydanticCustomError("date_type", "must be an ISO 8601 date (2026-05-01) or date-time with offset")


def _window(code: ErrorCode) -> Any:
    def check(value: date) -> date:
        day = value.date() if isinstance(value, datetime) else value
        if not EARLIEST <= day <= LATEST:
            raise PydanticCustomError(
                "date_out_of_range",
                f"must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
                {"errorCode": code.value},
            )
        return value

    return AfterValidator(check)


def _bounded(code: ErrorCode) -> Any:
    # A number the server can store, sum and print: finite, below 10^16, not finer than 10^-12, 30 digits at
    # most ("1e608234" is a valid JSON number that no column holds). Each feature narrows this further.
    def check(value: Decimal) -> Decimal:
        digits = len(value.as_tuple().digits)
        if value.is_finite() and (value.is_zero() or -12 <= value.adjusted() <= 15) and digits <= 30:
            return value
        raise PydanticCustomError(
            "decimal_range",
            "must be a finite number below 10^16 with at most 12 decimals",
            {"errorCode": code.value},
        )

    return AfterValidator(check)


_AS_JSON_NUMBER = PlainSerializer(_decimal_number, return_type=float | int, when_used="json")
Money = Annotated[
    Decimal, BeforeValidator(_decimal_in), _NUMBER_SCHEMA, _bounded(ErrorCode.INVALID_AMOUNT), _AS_JSON_NUMBER
]
"""An amount of a receipt (out of range: `InvalidAmount`): a JSON number, or its text."""
Number = Annotated[
    Decimal, BeforeValidator(_decimal_in), _NUMBER_SCHEMA, _bounded(ErrorCode.INVALID_AMOUNT), _AS_JSON_NUMBER
]
"""A quantity, rate or percentage of a receipt: a JSON number (or its text)."""
PromotionAmount = Annotated[
    Decimal,
    BeforeValidator(_decimal_in),
    _NUMBER_SCHEMA,
    _bounded(ErrorCode.INVALID_PROMOTION_VALUE),
    _AS_JSON_NUMBER,
]
"""An amount of a promotion's channel (out of range: `InvalidPromotionValue`)."""
Flag = Annotated[bool, BeforeValidator(_bool_in)]
"""A boolean: JSON true/false (files: its text)."""


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
    amount: StrictInt = Field(ge=1, le=3650)


DateOrInstant = Annotated[
    date | AwareDatetime, BeforeValidator(_temporal_in), _window(ErrorCode.INVALID_VALIDITY)
]
"""A date (``2024-05-01``) or an instant with offset; instants are reduced to their date in the tenant's zone."""
ReceiptInstant = Annotated[
    AwareDatetime, BeforeValidator(_temporal_in), _window(ErrorCode.INVALID_CREATED_DATE)
]
"""When a sale happened: a date-time with offset, within the wire's window."""
RedemptionInstant = Annotated[
    AwareDatetime, BeforeValidator(_temporal_in), _window(ErrorCode.INVALID_REDEEMED_ON)
]
"""When a redemption happened: a date-time with offset, within the wire's window."""
WireDate = Annotated[date, BeforeValidator(_temporal_in), _window(ErrorCode.INVALID_VALIDITY)]
"""A calendar date (``2026-05-01``) within the wire's window."""


class PromotionValidity(WireModel):
    start_date: DateOrInstant
    end_date: DateOrInstant | None = None
    assigned_validity: AssignDateRange | None = None


class LocalValue(WireModel):
    currency: str = Field(min_length=3, max_length=3)
    amount: PromotionAmount

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("currency must be an ISO 4217 code such as SEK")
        return value.upper()


class RedemptionChannelIn(WireModel):
    type: ChannelTypeIn
    value_type: ValueTypeIn
    value: str | None = Text(
        None, max_length=450, description='Text, as Engage takes it: PERCENT "1"-"100", MONEY "20.5", a code.'
    )
    local_values: list[LocalValue] | None = Field(default=None, max_length=50)
    instruction: str | None = Text(None, max_length=512)


class PresentationIn(WireModel):
    """A promotion's presentation as created or replaced: the link and the image must be web addresses."""

    heading: str | None = Text(None, max_length=450)
    description: str | None = Text(None, max_length=4000)
    link: WebUrl | None = Field(None, description=_WEB_URL_TEXT)
    image_url: WebUrl | None = Field(None, description=_WEB_URL_TEXT)


class Presentation(WireModel):
    """A promotion's presentation as answered (and as the SDK reads it from any Engage: not checked again)."""

    heading: str | None = None
    description: str | None = None
    link: str | None = None
    image_url: str | None = None


class ReturnPolicy(StrEnum):
    NONE = "none"
    REACTIVATE_ON_RETURN = "reactivateOnReturn"


class MultichannelPromotionCreate(WireModel):
    """`MultichannelBasePromotionModel`: the body of create and (with the same shape) of update."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "20% off tees",
                    "externalId": "TEES-20",
                    "validity": {"startDate": "2026-05-01", "endDate": "2026-05-31"},
                    "presentation": {"heading": "20% off", "description": "All tees"},
                    "redemptionChannels": [
                        {"type": "POS", "valueType": "PERCENT", "value": "20"},
                        {
                            "type": "ECOM",
                            "valueType": "MONEY",
                            "value": "50",
                            "localValues": [{"currency": "EUR", "amount": 5}],
                        },
                    ],
                }
            ]
        }
    )

    name: str = Text(min_length=1, max_length=450)
    external_id: str | None = Text(None, max_length=450)
    validity: PromotionValidity
    presentation: PresentationIn | None = None
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


class StatusOk(WireModel):
    """The answer of a delete: ``{"statusCode": "OK"}``."""

    status_code: str = "OK"


# --------------------------------------------------------------------------------- assignment & fetching


class MoneyValue(WireModel):
    amount: PromotionAmount
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


GuidText = Annotated[str, Field(max_length=64, pattern=NO_NUL)]
"""A GUID as a client writes it (any case, with or without braces); parsed by the service."""
KeyText = Annotated[str, Field(max_length=255, pattern=NO_NUL)]


class AssignmentCreateV3(WireModel):
    contact_id: GuidText
    promotion_id: GuidText


class RedeemBody(WireModel):
    """Redeem request. Extension fields are optional and used for late replays and reporting."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"redemptionChannel": "POS"},
                {
                    "redemptionChannel": "POS",
                    "redeemedOn": "2026-05-02T14:03:00+02:00",
                    "storeExternalId": "471",
                    "uniqueReceiptId": "r-1",
                },
            ]
        }
    )

    redemption_channel: str | None = Text(None, max_length=16, description="POS, ECOM or OTHER (any case).")
    redeemed_on: RedemptionInstant | None = None
    store_external_id: str | None = Text(None, max_length=255)
    unique_receipt_id: str | None = Text(None, max_length=255)


class BulkAssignCreate(WireModel):
    """Extension: assign one promotion to many contacts in the background."""

    contact_ids: list[GuidText] | None = Field(default=None, max_length=100_000)
    contact_keys: list[KeyText] | None = Field(default=None, max_length=100_000)
    contact_type: str | None = Text(None, max_length=100)
    batch_id: str | None = Text(
        None,
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


class ContactOutV3(ContactOut):
    """A v3 contact answer to a create or update: the contact, and (extension) what the body carried that was not
    stored (unknown attribute names), present only when there is something to say."""

    warnings: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------------ receipts


class ExtraData(WireModel):
    name: str = Text(min_length=1, max_length=255)
    value: str | None = Text(None, max_length=4000)

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return (
            str(value) if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else value
        )


class ReceiptContact(WireModel):
    match_key: str = Text(min_length=1, max_length=255)
    match_key_type: str = Text(max_length=64)
    contact_type: str | None = Text(None, max_length=100)

    @field_validator("match_key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ReceiptDiscount(WireModel):
    value: Money
    type: str | None = Text(None, max_length=100)
    description: str | None = Text(None, max_length=500)


class ReceiptItemType(StrEnum):
    PURCHASE = "PURCHASE"
    RETURN = "RETURN"
    ADJUSTMENT = "ADJUSTMENT"


class ReceiptItem(WireModel):
    type: Annotated[ReceiptItemType, BeforeValidator(_upper)] = ReceiptItemType.PURCHASE
    sku: str | None = Text(None, max_length=255)
    quantity: Number
    gross_paid_price: Money
    tax_amount: Money | None = None
    tax_percent: Number | None = None
    article_number: str | None = Text(None, max_length=255)
    article_name: str | None = Text(None, max_length=500)
    pack_quantity: Number | None = None
    article_group: str | None = Text(None, max_length=255)
    margin_percent: Number | None = None
    awards_bonus: Flag | None = None
    extra_data: list[ExtraData] | None = Field(default=None, max_length=100)
    discounts: list[ReceiptDiscount] | None = Field(default=None, max_length=100)


class PaymentMethod(WireModel):
    type: str = Text(min_length=1, max_length=100)
    value: Money
    description: str | None = Text(None, max_length=500)
    extra_data: list[ExtraData] | None = Field(default=None, max_length=100)


class TaxDetail(WireModel):
    description: str | None = Text(None, max_length=500)
    value: Money | None = None
    percent: Number | None = None
    total_including_tax: Money | None = None
    total_excluding_tax: Money | None = None


class UsedBonusCheck(WireModel):
    check_number: str = Text(max_length=255)


class UsedPromotion(WireModel):
    promotion_id: GuidText | None = None
    coupon_id: GuidText | None = None


class Receipt(WireModel):
    """`POST /api/v2/receipts` body (Part B §7.2), plus promoflow's `originalUniqueReceiptId` for returns."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "contact": {"matchKey": "ada@example.com", "matchKeyType": "email"},
                    "uniqueReceiptId": "471-20260502-0042",
                    "receiptNumber": "42",
                    "createdDate": "2026-05-02T14:03:00+02:00",
                    "storeExternalId": "471",
                    "currency": "SEK",
                    "totalGrossPrice": 159.2,
                    "paymentMethods": [{"type": "card", "value": 159.2}],
                    "items": [
                        {
                            "type": "PURCHASE",
                            "sku": "7391234567",
                            "quantity": 1,
                            "grossPaidPrice": 159.2,
                            "articleName": "Tee",
                            "discounts": [
                                {"value": -39.8, "type": "promotion", "description": "20% off tees"}
                            ],
                        }
                    ],
                }
            ]
        }
    )

    contact: ReceiptContact
    unique_receipt_id: str = Text(min_length=1, max_length=255)
    receipt_number: str | None = Text(None, max_length=255)
    created_date: ReceiptInstant
    store_external_id: str = Text(min_length=1, max_length=255)
    # Three letters, checked by the server's receipt rules, which answer `InvalidCurrency` (docs/receipts.md).
    currency: str = Text(min_length=1, max_length=255)
    exchange_rate_to_group_currency: Number | None = None
    total_gross_price: Money
    payment_methods: list[PaymentMethod] = Field(min_length=1, max_length=100)
    items: list[ReceiptItem] = Field(min_length=1, max_length=5000)
    tax_details: list[TaxDetail] | None = Field(default=None, max_length=100)
    used_bonus_checks: list[UsedBonusCheck] | None = Field(default=None, max_length=100)
    used_promotions: list[UsedPromotion] | None = Field(default=None, max_length=100)
    extra_data: list[ExtraData] | None = Field(default=None, max_length=100)
    original_unique_receipt_id: str | None = Text(
        None, max_length=255, description="Extension: the sale this RETURN receipt returns."
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
