"""Pure receipt rules: what makes a receipt valid (totals within rounding), its kind and discount, the match key
in canonical form, and when a return gives back every line that carried a promotion's discount.

Tolerances (decided here; Engage documents none):
- items: the signed line amounts (``grossPaidPrice``; a RETURN line counts as ``-|grossPaidPrice|``, as Engage
  sends returns with a positive price and a negative quantity) must add up to ``totalGrossPrice`` within 0.01 per
  line, at most 1.00 — each line may have been rounded to the cent on its own;
- payments: ``paymentMethods[].value`` must add up to ``totalGrossPrice`` within 0.50 — cash payments are rounded
  to whole units in several markets (e.g. Swedish öresavrundning) without a rounding line on the receipt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ...wire.engage import Receipt, ReceiptItem, ReceiptItemType
from ..contact.errors import InvalidContactIdError
from ..contact.service import any_key, normalize_email, normalize_key, normalize_phone, normalize_ssn
from ..tenant.service import TenantContext
from .errors import (
    InvalidAmountError,
    InvalidCreatedDateError,
    InvalidCurrencyError,
    InvalidMatchKeyTypeError,
    InvalidOriginalReceiptError,
    PaymentTotalMismatchError,
    ReceiptTotalMismatchError,
)

LINE_TOLERANCE_PER_ITEM = Decimal("0.01")
LINE_TOLERANCE_MAX = Decimal("1.00")
PAYMENT_TOLERANCE = Decimal("0.50")
# NUMERIC(18, 4) holds 14 integer digits; anything near that is a broken POS, not a sale.
MAX_AMOUNT = Decimal("1e12")
# A POS clock a little ahead of ours is not a sale from the future.
CLOCK_SKEW = timedelta(minutes=5)

PURCHASE, RETURN, EXCHANGE = "PURCHASE", "RETURN", "EXCHANGE"

# matchKeyType (any case) → the canonical key type; Engage's SDK enum adds MemberNumberWithCardNumberAsFallback.
KEY_TYPES = {
    "contactid": "contactId",
    "email": "email",
    "mobilephone": "mobilePhone",
    "socialsecuritynumber": "socialSecurityNumber",
    "membernumber": "memberNumber",
    "externalid": "externalId",
    "membernumberwithcardnumberasfallback": "memberNumber",
}
_NORMALIZE = {
    "email": normalize_email,
    "mobilePhone": normalize_phone,
    "socialSecurityNumber": normalize_ssn,
    "memberNumber": normalize_key,
    "externalId": normalize_key,
}


def canonical_key(key_type: str, value: str, ctx: TenantContext) -> tuple[str, str]:
    """(canonical matchKeyType, normalised matchKey); 400 `InvalidMatchKeyType` or the key's own format error.
    ``any`` (an extension: a till that identified its customer with `any` while offline) is read by Engage's `any`
    rule for the tenant (`contact.service.any_key`) as the key type it names."""
    if key_type.strip().lower() == "any":
        return any_key(ctx, value)
    kt = KEY_TYPES.get(key_type.strip().lower())
    if kt is None:
        allowed = "contactId, email, mobilePhone, memberNumber, externalId, socialSecurityNumber, any"
        raise InvalidMatchKeyTypeError(f"contact.matchKeyType {key_type!r} is not one of {allowed}")
    if kt == "contactId":
        from ...kit.guid import parse_guid

        guid = parse_guid(value)
        if guid is None:
            raise InvalidContactIdError(f"contact.matchKey {value!r} is not a contact id (GUID)")
        return kt, str(guid)
    return kt, _NORMALIZE[kt](value)


def line_amount(item: ReceiptItem) -> Decimal:
    return -abs(item.gross_paid_price) if item.type is ReceiptItemType.RETURN else item.gross_paid_price


def line_discount(item: ReceiptItem) -> Decimal:
    """The discount given on a line, positive for a sale, negative for a return (discount values are sent as
    negative amounts, e.g. -200.00; either sign is taken as the size of the discount)."""
    size = sum((abs(d.value) for d in item.discounts or ()), Decimal(0))
    return -size if item.type is ReceiptItemType.RETURN else size


@dataclass(frozen=True)
class Checked:
    kind: str
    total: Decimal
    discount: Decimal
    offset_minutes: int


def check_receipt(receipt: Receipt, now: datetime) -> Checked:
    """Everything about a receipt that needs no database; raises a specific 400 before anything is stored."""
    currency = receipt.currency
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise InvalidCurrencyError(f"currency {receipt.currency!r} is not an ISO 4217 code such as SEK")
    if receipt.created_date > now + CLOCK_SKEW:
        raise InvalidCreatedDateError("createdDate is in the future")
    if receipt.original_unique_receipt_id is not None and (
        receipt.original_unique_receipt_id == receipt.unique_receipt_id
    ):
        raise InvalidOriginalReceiptError("originalUniqueReceiptId names this receipt itself")
    amounts: list[tuple[str, Decimal]] = [("totalGrossPrice", receipt.total_gross_price)]
    for i, item in enumerate(receipt.items):
        amounts.append((f"items[{i}].grossPaidPrice", item.gross_paid_price))
        amounts += [(f"items[{i}].discounts[{j}].value", d.value) for j, d in enumerate(item.discounts or ())]
    amounts += [(f"paymentMethods[{i}].value", p.value) for i, p in enumerate(receipt.payment_methods)]
    for where, amount in amounts:
        if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
            raise InvalidAmountError(f"{where}: {amount} is not a valid amount")
    total = receipt.total_gross_price
    lines = sum((line_amount(item) for item in receipt.items), Decimal(0))
    tolerance = min(LINE_TOLERANCE_PER_ITEM * len(receipt.items), LINE_TOLERANCE_MAX)
    if abs(lines - total) > tolerance:
        raise ReceiptTotalMismatchError(
            f"the items add up to {lines} but totalGrossPrice is {total} (allowed difference {tolerance}; "
            "RETURN lines count as negative)"
        )
    paid = sum((p.value for p in receipt.payment_methods), Decimal(0))
    if abs(paid - total) > PAYMENT_TOLERANCE:
        raise PaymentTotalMismatchError(
            f"the paymentMethods add up to {paid} but totalGrossPrice is {total} "
            f"(allowed difference {PAYMENT_TOLERANCE})"
        )
    types = {item.type for item in receipt.items}
    if ReceiptItemType.RETURN in types:
        kind = EXCHANGE if ReceiptItemType.PURCHASE in types else RETURN
    else:
        kind = PURCHASE
    offset = receipt.created_date.utcoffset() or timedelta(0)
    discount = sum((line_discount(item) for item in receipt.items), Decimal(0))
    return Checked(kind, total, discount, int(offset.total_seconds() // 60))


# ------------------------------------------------------------------------------------------------ returns


def _article(item: dict[str, Any]) -> str:
    return str(item.get("sku") or item.get("articleNumber") or item.get("articleName") or "")


def _qty(item: dict[str, Any]) -> Decimal:
    return abs(Decimal(str(item.get("quantity", 0))))


def fully_returned(original_items: list[dict[str, Any]], returns: Iterable[list[dict[str, Any]]]) -> bool:
    """Do the RETURN lines of ``returns`` (all returns of one sale, as stored) give back every line of the sale that
    carried a discount? Lines are matched by sku (else articleNumber, else articleName) and quantity. When no line
    of the sale names a discount, the promotion is taken to apply to the whole sale: every line must come back."""
    sold = [i for i in original_items if str(i.get("type", PURCHASE)).upper() != RETURN]
    carried = [i for i in sold if any(Decimal(str(d.get("value", 0))) != 0 for d in i.get("discounts") or ())]
    needed: defaultdict[str, Decimal] = defaultdict(Decimal)
    for item in carried or sold:
        needed[_article(item)] += _qty(item)
    back: defaultdict[str, Decimal] = defaultdict(Decimal)
    for items in returns:
        for item in items:
            if str(item.get("type", "")).upper() == RETURN:
                back[_article(item)] += _qty(item)
    return bool(needed) and all(back[k] >= q for k, q in needed.items())
