"""pricing: promotions applied to a basket with exact Decimal money."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promoflow.client import (
    ApplicationStatus,
    Basket,
    BasketLine,
    PricedBasket,
    apply_promotions,
)
from promoflow.client.pricing import spread
from promoflow.wire.engage import ApiPromotion, ReceiptItemType

D = Decimal


def promo(
    value_type: str,
    value: Any = None,
    *,
    pid: str = "a-1",
    channel: str = "POS",
    local_values: list[dict[str, Any]] | None = None,
    instruction: str | None = None,
    redeemed: bool = False,
    name: str | None = None,
) -> ApiPromotion:
    return ApiPromotion.model_validate(
        {
            "id": pid,
            "promotionId": "template-" + pid,
            "name": name or f"{value_type} {value}",
            "redeemed": redeemed,
            "redemptionChannels": [
                {
                    "type": channel,
                    "valueType": value_type,
                    "value": value,
                    "localValues": local_values,
                    "instruction": instruction,
                }
            ],
        }
    )


def basket(*prices: str, currency: str = "SEK") -> Basket:
    return Basket([BasketLine(f"sku-{i}", D(1), D(price)) for i, price in enumerate(prices)], currency)


def paid(priced: PricedBasket) -> list[Decimal]:
    return [line.gross_paid_price for line in priced.lines]


# --------------------------------------------------------------------------------------------- value types


def test_percent_is_spread_pro_rata() -> None:
    priced = apply_promotions(basket("100.00", "300.00"), [promo("PERCENT", 25)], "POS")
    assert paid(priced) == [D("75.00"), D("225.00")]
    (application,) = priced.promotions
    assert application.applied and application.amount == D("100.00")
    assert [d.value for d in priced.lines[0].discounts] == [D("-25.00")]
    assert priced.lines[0].discounts[0].type == "PERCENT"
    assert priced.lines[0].discounts[0].description == "PERCENT 25"


def test_percent_total_is_rounded_once_and_the_remainder_goes_to_the_largest_line() -> None:
    priced = apply_promotions(basket("10.00", "10.00", "10.00"), [promo("PERCENT", "33.33")], "POS")
    # 33.33 % of 30.00 = 9.999 -> 10.00 in total; 3.33 each and the cent left over on the first largest line.
    assert priced.promotions[0].amount == D("10.00")
    assert [line.total_discount for line in priced.lines] == [D("3.34"), D("3.33"), D("3.33")]


def test_money_in_the_basket_currency() -> None:
    money = promo("MONEY", {"amount": 50, "currency": "SEK"})
    priced = apply_promotions(basket("100.00", "100.00"), [money], "pos")
    assert paid(priced) == [D("75.00"), D("75.00")]


def test_money_from_local_values() -> None:
    money = promo(
        "MONEY", {"amount": 50, "currency": "SEK"}, local_values=[{"currency": "EUR", "amount": 4.5}]
    )
    priced = apply_promotions(basket("20.00", currency="eur"), [money], "POS")
    assert priced.promotions[0].amount == D("4.50")
    assert paid(priced) == [D("15.50")]


def test_money_without_an_amount_in_the_basket_currency() -> None:
    money = promo("MONEY", {"amount": 50, "currency": "SEK"}, local_values=[{"currency": "NOK", "amount": 5}])
    priced = apply_promotions(basket("20.00", currency="EUR"), [money], "POS")
    application = priced.promotions[0]
    assert application.status is ApplicationStatus.NOT_APPLIED
    assert application.reason == "no amount in EUR"
    assert paid(priced) == [D("20.00")]


def test_money_larger_than_the_basket_is_capped() -> None:
    priced = apply_promotions(
        basket("30.00", "10.00"), [promo("MONEY", {"amount": 100, "currency": "SEK"})], "POS"
    )
    application = priced.promotions[0]
    assert application.capped and application.amount == D("40.00")
    assert application.reason == "capped at the amount left on its lines"
    assert paid(priced) == [D("0.00"), D("0.00")]


def test_external_offer_asks_the_shop() -> None:
    calls: list[tuple[str, Basket]] = []

    def shop_rule(code: str, shopping: Basket) -> Decimal | None:
        calls.append((code, shopping))
        return D("12.5") if code == "SHOES10" else None

    shopping = basket("100.00")
    priced = apply_promotions(
        shopping,
        [promo("EXTERNALOFFER", "SHOES10", pid="x"), promo("EXTERNALOFFER", "NOPE", pid="y")],
        "POS",
        external_offers=shop_rule,
    )
    assert calls == [("SHOES10", shopping), ("NOPE", shopping)]
    first, second = priced.promotions
    assert first.applied and first.amount == D("12.50")
    assert second.status is ApplicationStatus.NOT_APPLIED
    assert second.reason == "the shop's rule 'NOPE' gave no discount"


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (None, "no handler for external offers"),
        (lambda code, b: 1.5, "the shop's rule gave 1.5"),
    ],
)
def test_external_offer_not_applied(handler: Any, reason: str) -> None:
    priced = apply_promotions(basket("10.00"), [promo("EXTERNALOFFER", "X")], "POS", external_offers=handler)
    assert priced.promotions[0].reason == reason


def test_manual_gives_the_cashier_an_instruction() -> None:
    manual = promo("MANUAL", "free coffee", instruction="Hand over one coffee")
    priced = apply_promotions(basket("10.00"), [manual], "POS")
    application = priced.promotions[0]
    assert application.status is ApplicationStatus.MANUAL
    assert application.amount == D(0)
    assert priced.instructions == ["Hand over one coffee"]
    assert paid(priced) == [D("10.00")]
    assert [u.coupon_id for u in priced.used_promotions()] == ["a-1"]
    assert priced.used_promotions(include_manual=False) == []


@pytest.mark.parametrize(
    ("promotion", "reason"),
    [
        (promo("PERCENT", 10, channel="ECOM"), "not valid for channel POS"),
        (promo("PERCENT", 10, redeemed=True), "already redeemed"),
        (promo("SWIPE", "x"), "value type SWIPE is not applied to prices"),
        (promo("PERCENT", 0), "not a usable percentage: 0"),
        (promo("PERCENT", 150), "not a usable percentage: 150"),
        (promo("PERCENT", "lots"), "not a usable percentage: 'lots'"),
        (promo("MONEY", {"amount": "0.001", "currency": "SEK"}), "the discount rounds to zero"),
    ],
)
def test_not_applied_with_a_reason(promotion: ApiPromotion, reason: str) -> None:
    priced = apply_promotions(basket("10.00"), [promotion], "POS")
    assert priced.promotions[0].status is ApplicationStatus.NOT_APPLIED
    assert priced.promotions[0].reason == reason
    assert paid(priced) == [D("10.00")]


def test_the_same_assignment_twice_is_applied_once() -> None:
    priced = apply_promotions(basket("10.00"), [promo("PERCENT", 10), promo("PERCENT", 10)], "POS")
    assert [a.status for a in priced.promotions] == [ApplicationStatus.APPLIED, ApplicationStatus.NOT_APPLIED]
    assert priced.promotions[1].reason == "the same assignment is listed twice"


# ------------------------------------------------------------------------------------------ order, rounding


def test_percent_comes_before_money_whatever_the_given_order() -> None:
    money = promo("MONEY", {"amount": 10, "currency": "SEK"}, pid="m")
    percent = promo("PERCENT", 20, pid="p")
    priced = apply_promotions(basket("100.00"), [money, percent], "POS")
    assert paid(priced) == [D("70.00")]
    assert [a.amount for a in priced.promotions] == [D("10.00"), D("20.00")]  # reported in the given order
    assert [d.assignment_id for d in priced.lines[0].discounts] == ["p", "m"]  # applied percent first


def test_percentages_compound() -> None:
    priced = apply_promotions(
        basket("100.00"), [promo("PERCENT", 10, pid="a"), promo("PERCENT", 10, pid="b")], "POS"
    )
    assert paid(priced) == [D("81.00")]


def test_whole_krona_rounding() -> None:
    shopping = Basket([BasketLine("a", D("0.345"), D("99.90")), BasketLine("b", D(2), D("19.95"))], "SEK")
    priced = apply_promotions(shopping, [promo("PERCENT", 15)], "POS", rounding=D(1))
    # 34.4655 -> 34 and 39.90 -> 40; 15 % of 74 = 11.1 -> 11.
    assert [line.gross_price for line in priced.lines] == [D(34), D(40)]
    assert priced.promotions[0].amount == D(11)
    assert priced.total_paid == D(63)


def test_five_ore_rounding() -> None:
    priced = apply_promotions(basket("10.00", "20.00"), [promo("PERCENT", 7)], "POS", rounding=D("0.05"))
    assert priced.promotions[0].amount == D("2.10")
    for line in priced.lines:
        assert (line.gross_paid_price / D("0.05")) % 1 == 0


def test_eligible_lines_only() -> None:
    shopping = basket("100.00", "50.00")
    priced = apply_promotions(
        shopping, [promo("PERCENT", 50)], "POS", eligible=lambda promotion, line: line.sku == "sku-1"
    )
    assert paid(priced) == [D("100.00"), D("25.00")]


def test_return_lines_take_no_discount() -> None:
    shopping = Basket([BasketLine("a", D(1), D("40.00")), BasketLine("b", D(-1), D("10.00"))], "SEK")
    priced = apply_promotions(shopping, [promo("MONEY", {"amount": 100, "currency": "SEK"})], "POS")
    assert paid(priced) == [D("0.00"), D("-10.00")]


def test_spread_never_overfills_a_small_line() -> None:
    # 100 lines of one unit and 40 units to spread: every share rounds to 0, the remainder must spill over.
    shares = spread(40, [1] * 100)
    assert sum(shares) == 40 and max(shares) == 1


def test_spread_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        spread(5, [1, 2])
    with pytest.raises(ValueError):
        spread(-1, [1])


# --------------------------------------------------------------------------------------------- validation


def test_input_validation() -> None:
    with pytest.raises(TypeError):
        BasketLine("a", D(1), 9.99)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Basket([], "kronor")
    with pytest.raises(ValueError):
        apply_promotions(basket("1.00"), [], "POS", currency="EUR")
    with pytest.raises(ValueError):
        apply_promotions(basket("1.00"), [], "POS", rounding=D(0))
    assert BasketLine("a", 2, "1.50").unit_price == D("1.50")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- receipt output


def test_receipt_items_and_used_promotions() -> None:
    shopping = Basket(
        [BasketLine("A1", D(2), D("62.50"), article_number="100", article_name="Tee", tax_percent=D(25))],
        "SEK",
    )
    priced = apply_promotions(
        shopping, [promo("PERCENT", 20, pid="asg-1", name="20% tees")], "POS", currency="SEK"
    )
    (item,) = priced.receipt_items()
    assert item.type is ReceiptItemType.PURCHASE
    assert (item.sku, item.quantity, item.gross_paid_price) == ("A1", D(2), D("100.00"))
    assert item.tax_amount == D("20.00")
    assert (item.article_number, item.article_name, item.tax_percent) == ("100", "Tee", D(25))
    assert item.discounts is not None
    assert [(d.value, d.type, d.description) for d in item.discounts] == [
        (D("-25.00"), "PERCENT", "20% tees")
    ]
    assert [u.coupon_id for u in priced.used_promotions()] == ["asg-1"]
    assert (priced.total_gross, priced.total_discount, priced.total_paid) == (
        D("125.00"),
        D("25.00"),
        D("100.00"),
    )
    untouched = apply_promotions(shopping, [], "POS").receipt_items()[0]
    assert untouched.discounts is None


# --------------------------------------------------------------------------------------------- properties

_price = st.decimals(min_value=0, max_value=5000, places=2)
_quantity = st.one_of(
    st.integers(min_value=1, max_value=5).map(Decimal), st.decimals(min_value="0.001", max_value=3, places=3)
)
_lines = st.lists(st.tuples(_quantity, _price), min_size=1, max_size=8)
_offer = st.one_of(
    st.tuples(st.just("PERCENT"), st.integers(min_value=1, max_value=100)),
    st.tuples(st.just("MONEY"), st.decimals(min_value=0, max_value=3000, places=2)),
    st.tuples(st.just("EXTERNALOFFER"), st.decimals(min_value=0, max_value=3000, places=3)),
    st.tuples(st.just("MANUAL"), st.just("see cashier")),
)
_rounding = st.sampled_from([D("0.01"), D("0.05"), D("0.1"), D(1)])


def _units(value: Decimal, step: Decimal) -> bool:
    return (value / step) % 1 == 0


@settings(max_examples=300, deadline=None)
@given(lines=_lines, offers=st.lists(_offer, max_size=5), rounding=_rounding)
def test_discounts_add_up_exactly(
    lines: list[tuple[Decimal, Decimal]], offers: list[tuple[str, Any]], rounding: Decimal
) -> None:
    shopping = Basket([BasketLine(f"s{i}", q, p) for i, (q, p) in enumerate(lines)], "SEK")
    promotions = []
    external: dict[str, Decimal] = {}
    for index, (value_type, value) in enumerate(offers):
        pid = f"p{index}"
        if value_type == "MONEY":
            promotions.append(promo("MONEY", {"amount": str(value), "currency": "SEK"}, pid=pid))
        elif value_type == "EXTERNALOFFER":
            external[f"code{index}"] = value
            promotions.append(promo("EXTERNALOFFER", f"code{index}", pid=pid))
        else:
            promotions.append(promo(value_type, value, pid=pid))

    priced = apply_promotions(
        shopping, promotions, "POS", rounding=rounding, external_offers=lambda code, b: external[code]
    )

    for line in priced.lines:
        assert line.gross_paid_price >= 0
        assert _units(line.gross_price, rounding) and _units(line.gross_paid_price, rounding)
        assert line.gross_paid_price == line.gross_price + sum((d.value for d in line.discounts), D(0))
        for discount in line.discounts:
            assert discount.value < 0 and _units(discount.value, rounding)
    for application in priced.promotions:
        given_on_lines = -sum(
            (
                d.value
                for line in priced.lines
                for d in line.discounts
                if d.assignment_id == application.assignment_id
            ),
            D(0),
        )
        assert given_on_lines == application.amount
        assert _units(application.amount, rounding)
        if application.status is ApplicationStatus.NOT_APPLIED:
            assert application.amount == 0 and application.reason
        if application.status is ApplicationStatus.MANUAL:
            assert application.amount == 0
    assert priced.total_paid == priced.total_gross - priced.total_discount
    assert len(priced.receipt_items()) == len(lines)


@settings(max_examples=200, deadline=None)
@given(lines=_lines, percent=st.integers(min_value=1, max_value=100))
def test_a_single_percentage_is_exact(lines: list[tuple[Decimal, Decimal]], percent: int) -> None:
    shopping = Basket([BasketLine(f"s{i}", q, p) for i, (q, p) in enumerate(lines)], "SEK")
    priced = apply_promotions(shopping, [promo("PERCENT", percent)], "POS")
    expected = (priced.total_gross * percent / 100).quantize(D("0.01"), rounding="ROUND_HALF_UP")
    if priced.total_gross > 0:
        assert priced.promotions[0].amount == expected
        # Pro rata: no line's share is off its ideal by more than the number of lines (in cents).
        for line in priced.lines:
            ideal = priced.promotions[0].amount * line.gross_price / priced.total_gross
            assert abs(line.total_discount - ideal) <= D("0.01") * len(lines)


@given(
    amounts=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30),
    fraction=st.fractions(min_value=0, max_value=1),
)
def test_spread_is_exact_and_bounded(amounts: list[int], fraction: Any) -> None:
    total = int(sum(amounts) * fraction)
    shares = spread(total, amounts)
    assert sum(shares) == total
    assert all(0 <= share <= amount for share, amount in zip(shares, amounts, strict=True))
