"""Apply a contact's Engage promotions to a basket, with exact ``Decimal`` money.

:func:`apply_promotions` takes a :class:`Basket` and the promotions from ``list_promotions`` and returns a
:class:`PricedBasket`: what each line costs after discounts, the line discounts in the shape Engage receipts
want (``discounts[]`` with negative values, ``grossPaidPrice`` after all discounts, ENGAGE-SPEC Part B §7.3),
what each promotion gave or why it gave nothing, and helpers for the receipt's ``items`` and
``usedPromotions``.

**Value types.** ``PERCENT``: that percentage off the eligible lines. ``MONEY``: a fixed amount in the basket
currency, taken from ``value`` when its currency matches, else from the ``localValues`` entry in the basket
currency, else not applied. ``EXTERNALOFFER``: the value is a code for the shop's own price rule; the
``external_offers`` callback gets the code and the basket and returns the discount amount (or None: not
applied). ``MANUAL``: no price change; the channel's instruction is passed on for the cashier. ``SWIPE``
and unknown types are not applied. A promotion without a channel of the checkout's type, one already
redeemed, or a second copy of one assignment is not applied; each not-applied promotion carries its reason.

**Order.** All PERCENT promotions first, then EXTERNALOFFER, then MONEY; within a type, in the order given.
Each works on what is left after the ones before it, so two 10 % promotions take 19 %, and a fixed amount is
taken after the percentages (the usual retail rule; it also keeps the outcome independent of the order in
which the server lists promotions of different types).

**Rounding.** All amounts are whole multiples of ``rounding`` (default ``0.01``; ``1`` or ``0.05`` work too),
rounded half-up. A line's price is ``quantity * unit_price``, rounded. A promotion's total is rounded once
(for PERCENT: the percentage of the eligible amount left), then capped at the amount left on its eligible
lines, so no line goes below zero. The total is spread over the eligible lines pro rata to the amount left on
each: every share is rounded half-up, and the difference between the sum of the shares and the total is put
on the largest line (the first one on a tie); if that line cannot take all of it without going below zero (or
above its amount), the rest goes to the next largest line, and so on. The shares therefore add up to the
promotion's total exactly. Lines whose price is zero or negative (returns) take no discount.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from promoflow.wire.engage import (
    ApiPromotion,
    ApiPromotionChannel,
    MoneyValue,
    ReceiptDiscount,
    ReceiptItem,
    ReceiptItemType,
    UsedPromotion,
    ValueType,
)

__all__ = [
    "ApplicationStatus",
    "Basket",
    "BasketLine",
    "EligibleLines",
    "ExternalOffers",
    "LineDiscount",
    "PricedBasket",
    "PricedLine",
    "PromotionApplication",
    "apply_promotions",
]

ExternalOffers = Callable[[str, "Basket"], Decimal | int | None]
"""``(code, basket) -> discount amount or None``: the shop's own rule behind an EXTERNALOFFER code."""

EligibleLines = Callable[[ApiPromotion, "BasketLine"], bool]
"""``(promotion, line) -> bool``: whether a promotion may discount a line (default: every line)."""

_ORDER = (ValueType.PERCENT, ValueType.EXTERNALOFFER, ValueType.MONEY)


def _decimal(value: Decimal | int | str, name: str) -> Decimal:
    if isinstance(value, float | bool):
        # Floats cannot hold most prices exactly; refusing them here keeps every sum exact.
        raise TypeError(f"{name} must be a Decimal, int or str, not {type(value).__name__}")
    try:
        result = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{name} is not a number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"{name} must be finite")
    return result


@dataclass(frozen=True, slots=True)
class BasketLine:
    """One line of the basket; ``unit_price`` is gross (VAT included), in the basket currency."""

    sku: str
    quantity: Decimal
    unit_price: Decimal
    article_number: str | None = None
    article_name: str | None = None
    tax_percent: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", _decimal(self.quantity, "quantity"))
        object.__setattr__(self, "unit_price", _decimal(self.unit_price, "unit_price"))
        if self.tax_percent is not None:
            object.__setattr__(self, "tax_percent", _decimal(self.tax_percent, "tax_percent"))


@dataclass(frozen=True, slots=True)
class Basket:
    """The lines of one sale and its currency (ISO 4217, upper-cased)."""

    lines: tuple[BasketLine, ...]
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        currency = self.currency.strip().upper()
        if len(currency) != 3 or not currency.isalpha():
            raise ValueError(f"currency must be an ISO 4217 code such as SEK, got {self.currency!r}")
        object.__setattr__(self, "currency", currency)


@dataclass(frozen=True, slots=True)
class LineDiscount:
    """One promotion's discount on one line, as Engage receipts list it (``value`` is negative)."""

    value: Decimal
    type: str | None
    description: str | None
    assignment_id: str

    def to_wire(self) -> ReceiptDiscount:
        return ReceiptDiscount(value=self.value, type=self.type, description=self.description)


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A basket line after the promotions, with the discounts that brought it there."""

    line: BasketLine
    gross_price: Decimal
    """``quantity * unit_price``, rounded."""
    gross_paid_price: Decimal
    """What the customer pays for the line after every discount (Engage's ``grossPaidPrice``)."""
    discounts: tuple[LineDiscount, ...] = ()

    @property
    def total_discount(self) -> Decimal:
        return self.gross_price - self.gross_paid_price

    def to_receipt_item(
        self, item_type: ReceiptItemType = ReceiptItemType.PURCHASE, rounding: Decimal = Decimal("0.01")
    ) -> ReceiptItem:
        tax_amount = None
        if self.line.tax_percent is not None:
            tax = self.gross_paid_price * self.line.tax_percent / (100 + self.line.tax_percent)
            tax_amount = _round(tax, rounding)
        return ReceiptItem(
            type=item_type,
            sku=self.line.sku,
            quantity=self.line.quantity,
            gross_paid_price=self.gross_paid_price,
            tax_amount=tax_amount,
            tax_percent=self.line.tax_percent,
            article_number=self.line.article_number,
            article_name=self.line.article_name,
            discounts=[discount.to_wire() for discount in self.discounts] or None,
        )


class ApplicationStatus(StrEnum):
    """What a promotion did: gave a discount, asks the cashier for something, or nothing (see ``reason``)."""

    APPLIED = "applied"
    MANUAL = "manual"
    """No price change; the cashier follows ``instruction``."""
    NOT_APPLIED = "not_applied"


@dataclass(frozen=True, slots=True)
class PromotionApplication:
    """What one promotion did to the basket."""

    promotion: ApiPromotion
    status: ApplicationStatus
    amount: Decimal
    """The discount it gave (positive; zero unless applied). Equals the sum of its line discounts."""
    value_type: ValueType | None = None
    reason: str | None = None
    """Why it was not applied, or why it gave less than its face value."""
    instruction: str | None = None
    capped: bool = False

    @property
    def applied(self) -> bool:
        return self.status is ApplicationStatus.APPLIED

    @property
    def assignment_id(self) -> str:
        return self.promotion.id


@dataclass(frozen=True, slots=True)
class PricedBasket:
    """The result of :func:`apply_promotions`: priced lines, what each promotion did, receipt helpers."""

    basket: Basket
    rounding: Decimal
    lines: tuple[PricedLine, ...]
    promotions: tuple[PromotionApplication, ...]
    """In the order the promotions were given."""

    @property
    def currency(self) -> str:
        return self.basket.currency

    @property
    def total_gross(self) -> Decimal:
        return sum((line.gross_price for line in self.lines), Decimal(0))

    @property
    def total_paid(self) -> Decimal:
        return sum((line.gross_paid_price for line in self.lines), Decimal(0))

    @property
    def total_discount(self) -> Decimal:
        return sum((application.amount for application in self.promotions), Decimal(0))

    @property
    def applied(self) -> list[PromotionApplication]:
        return [application for application in self.promotions if application.applied]

    @property
    def instructions(self) -> list[str]:
        """The cashier instructions of MANUAL promotions."""
        return [
            application.instruction
            for application in self.promotions
            if application.status is ApplicationStatus.MANUAL and application.instruction
        ]

    def receipt_items(self, item_type: ReceiptItemType = ReceiptItemType.PURCHASE) -> list[ReceiptItem]:
        return [line.to_receipt_item(item_type, self.rounding) for line in self.lines]

    def used_promotions(self, *, include_manual: bool = True) -> list[UsedPromotion]:
        """``usedPromotions`` for the receipt: the assignment id of every promotion used, as ``couponId``.

        ``couponId`` is the per-contact instance id in Engage's own export; promoflow resolves it to the
        assignment. MANUAL promotions count as used unless ``include_manual=False`` (a cashier may skip one).
        """
        wanted = {ApplicationStatus.APPLIED} | ({ApplicationStatus.MANUAL} if include_manual else set())
        return [
            UsedPromotion(coupon_id=application.assignment_id)
            for application in self.promotions
            if application.status in wanted
        ]


# ------------------------------------------------------------------------------------------------- arithmetic


def _round(value: Decimal, step: Decimal) -> Decimal:
    return _from_units(_to_units(value, step), step)


def _to_units(value: Decimal, step: Decimal) -> int:
    return int((value / step).to_integral_value(rounding=ROUND_HALF_UP))


def _from_units(units: int, step: Decimal) -> Decimal:
    return Decimal(units) * step


def _half_up_div(numerator: int, denominator: int) -> int:
    """round(numerator / denominator) with halves away from zero, for non-negative integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def spread(total: int, amounts: Sequence[int]) -> list[int]:
    """Split ``total`` units over ``amounts`` pro rata (module docstring); exact, never above an amount.

    ``amounts`` must be non-negative and add up to at least ``total``.
    """
    if total < 0 or any(amount < 0 for amount in amounts):
        raise ValueError("spread works on non-negative amounts")
    base = sum(amounts)
    if total > base:
        raise ValueError("cannot spread more than the amounts hold")
    if total == 0:
        return [0] * len(amounts)
    shares = [min(amount, _half_up_div(total * amount, base)) for amount in amounts]
    difference = total - sum(shares)
    largest_first = sorted(range(len(amounts)), key=lambda index: (-amounts[index], index))
    for index in largest_first:
        if difference == 0:
            break
        if difference > 0:
            step = min(difference, amounts[index] - shares[index])
        else:
            step = -min(-difference, shares[index])
        shares[index] += step
        difference -= step
    return shares


# ------------------------------------------------------------------------------------------------ application


def _channel_for(promotion: ApiPromotion, channel: str) -> ApiPromotionChannel | None:
    for candidate in promotion.redemption_channels:
        if candidate.type.value == channel:
            return candidate
    return None


def _percent(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        return None
    try:
        percent = Decimal(value).normalize() if isinstance(value, int | Decimal) else Decimal(value.strip())
    except InvalidOperation:
        return None
    if not percent.is_finite() or percent <= 0 or percent > 100:
        return None
    return percent


def _money_amount(channel: ApiPromotionChannel, currency: str) -> Decimal | None:
    value = channel.value
    if isinstance(value, MoneyValue) and value.currency.strip().upper() == currency:
        return value.amount
    for local in channel.local_values or ():
        if local.currency == currency:
            return local.amount
    return None


@dataclass
class _Work:
    """Mutable state while applying: units left per line and the discounts given so far."""

    step: Decimal
    left: list[int]
    discounts: list[list[LineDiscount]] = field(default_factory=list)


def apply_promotions(
    basket: Basket,
    promotions: Iterable[ApiPromotion],
    channel: str,
    currency: str | None = None,
    rounding: Decimal = Decimal("0.01"),
    external_offers: ExternalOffers | None = None,
    *,
    eligible: EligibleLines | None = None,
) -> PricedBasket:
    """Price ``basket`` with ``promotions`` at a checkout of type ``channel`` (POS/ECOM/OTHER).

    ``currency`` defaults to the basket's and must equal it when given. ``eligible`` narrows the lines a
    promotion may discount (Engage promotions carry no product rules; EXTERNALOFFER rules live in the shop).
    """
    step = _decimal(rounding, "rounding")
    if step <= 0:
        raise ValueError("rounding must be positive")
    if currency is not None and currency.strip().upper() != basket.currency:
        raise ValueError(f"currency {currency!r} differs from the basket's {basket.currency}")
    channel_type = str(channel).strip().upper()
    promotions = list(promotions)

    gross_units = [_to_units(line.quantity * line.unit_price, step) for line in basket.lines]
    work = _Work(step=step, left=list(gross_units), discounts=[[] for _ in basket.lines])
    results: list[PromotionApplication | None] = [None] * len(promotions)
    pending: dict[ValueType, list[tuple[int, ApiPromotion, ApiPromotionChannel]]] = {
        value_type: [] for value_type in _ORDER
    }

    seen: set[str] = set()
    for position, promotion in enumerate(promotions):
        found = _channel_for(promotion, channel_type)
        key = promotion.id.strip().lower()
        reason = _not_applicable(promotion, found, channel_type, duplicate=key in seen, pending=pending)
        seen.add(key)
        if reason is not None:
            results[position] = PromotionApplication(
                promotion,
                ApplicationStatus.NOT_APPLIED,
                Decimal(0),
                found.value_type if found is not None else None,
                reason,
                found.instruction if found is not None else None,
            )
        elif found is not None and found.value_type is ValueType.MANUAL:
            results[position] = PromotionApplication(
                promotion, ApplicationStatus.MANUAL, Decimal(0), ValueType.MANUAL, None, found.instruction
            )
        elif found is not None:
            pending[found.value_type].append((position, promotion, found))

    for value_type in _ORDER:
        for position, promotion, found in pending[value_type]:
            results[position] = _apply_one(
                work, basket, promotion, found, external_offers, eligible or (lambda _p, _l: True)
            )

    lines = tuple(
        PricedLine(
            line=line,
            gross_price=_from_units(gross_units[index], step),
            gross_paid_price=_from_units(work.left[index], step),
            discounts=tuple(work.discounts[index]),
        )
        for index, line in enumerate(basket.lines)
    )
    applications = tuple(result for result in results if result is not None)
    return PricedBasket(basket=basket, rounding=step, lines=lines, promotions=applications)


def _not_applicable(
    promotion: ApiPromotion,
    found: ApiPromotionChannel | None,
    channel_type: str,
    *,
    duplicate: bool,
    pending: Mapping[ValueType, object],
) -> str | None:
    """Why a promotion cannot take part at all, or None."""
    if duplicate:
        return "the same assignment is listed twice"
    if promotion.redeemed:
        return "already redeemed"
    if found is None:
        return f"not valid for channel {channel_type}"
    if found.value_type is not ValueType.MANUAL and found.value_type not in pending:
        return f"value type {found.value_type.value} is not applied to prices"
    return None


def _apply_one(
    work: _Work,
    basket: Basket,
    promotion: ApiPromotion,
    found: ApiPromotionChannel,
    external_offers: ExternalOffers | None,
    eligible: EligibleLines,
) -> PromotionApplication:
    value_type = found.value_type

    def result(
        status: ApplicationStatus, units: int = 0, reason: str | None = None, capped: bool = False
    ) -> PromotionApplication:
        return PromotionApplication(
            promotion,
            status,
            _from_units(units, work.step),
            value_type,
            reason,
            found.instruction,
            capped,
        )

    indexes = [
        index for index, line in enumerate(basket.lines) if work.left[index] > 0 and eligible(promotion, line)
    ]
    available = sum(work.left[index] for index in indexes)
    if available == 0:
        return result(ApplicationStatus.NOT_APPLIED, reason="nothing left to discount on its lines")

    if value_type is ValueType.PERCENT:
        percent = _percent(found.value)
        if percent is None:
            return result(ApplicationStatus.NOT_APPLIED, reason=f"not a usable percentage: {found.value!r}")
        wanted = int((Decimal(available) * percent / 100).to_integral_value(rounding=ROUND_HALF_UP))
    elif value_type is ValueType.MONEY:
        amount = _money_amount(found, basket.currency)
        if amount is None:
            return result(ApplicationStatus.NOT_APPLIED, reason=f"no amount in {basket.currency}")
        wanted = _to_units(amount, work.step)
    else:  # EXTERNALOFFER
        code = found.value if isinstance(found.value, str) else None
        if not code:
            return result(ApplicationStatus.NOT_APPLIED, reason="external offer without a code")
        if external_offers is None:
            return result(ApplicationStatus.NOT_APPLIED, reason="no handler for external offers")
        offered = external_offers(code, basket)
        if offered is None:
            return result(ApplicationStatus.NOT_APPLIED, reason=f"the shop's rule {code!r} gave no discount")
        if isinstance(offered, float | bool) or not isinstance(offered, int | Decimal):
            return result(ApplicationStatus.NOT_APPLIED, reason=f"the shop's rule gave {offered!r}")
        wanted = _to_units(Decimal(offered), work.step)

    if wanted <= 0:
        return result(ApplicationStatus.NOT_APPLIED, reason="the discount rounds to zero")
    capped = wanted > available
    units = min(wanted, available)
    shares = spread(units, [work.left[index] for index in indexes])
    kind = value_type.value
    for index, share in zip(indexes, shares, strict=True):
        if share == 0:
            continue
        work.left[index] -= share
        work.discounts[index].append(
            LineDiscount(
                value=-_from_units(share, work.step),
                type=kind,
                description=promotion.name,
                assignment_id=promotion.id,
            )
        )
    reason = "capped at the amount left on its lines" if capped else None
    return result(ApplicationStatus.APPLIED, units, reason, capped)
