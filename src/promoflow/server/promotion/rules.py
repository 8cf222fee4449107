"""Pure promotion rules: status from dates, validity of an assignment, channel sets, channel values. (When an
assignment is redeemable is `redemption.py`; how values are typed on read is `presenter.py`.)"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ...kit.timeutil import add_period, end_of_day, local_date, start_of_day
from ...wire.engage import ChannelType, PromotionStatus, ValueType
from .errors import InvalidPromotionValueError, NotAValidRedemptionChannelError

CHANNEL_BITS = {ChannelType.POS: 1, ChannelType.ECOM: 2, ChannelType.OTHER: 4}


def parse_channel(value: Any, *, default: ChannelType | None = None) -> ChannelType:
    """POS / ECOM / OTHER, case-insensitive; anything else is Engage's `NotAValidRedemptionChannel`."""
    if (value is None or value == "") and default is not None:
        return default
    if isinstance(value, str):
        try:
            return ChannelType(value.strip().upper())
        except ValueError:
            pass
    raise NotAValidRedemptionChannelError(
        f"{value!r} is not a valid redemption channel; use POS, ECOM or OTHER"
    )


def channel_mask(channels: list[dict[str, Any]]) -> int:
    mask = 0
    for ch in channels:
        mask |= CHANNEL_BITS[ChannelType(ch["type"])]
    return mask


def status_of(row: Any, now: datetime, tz: ZoneInfo) -> PromotionStatus:
    """Derived at read time from the stored facts, so no scheduler is needed for correctness."""
    if row.activated_at is None:
        return PromotionStatus.DRAFT
    if row.deactivated_at is not None and row.deactivated_at <= now:
        return PromotionStatus.ENDED
    if row.end_date is not None and now > end_of_day(row.end_date, tz):
        return PromotionStatus.ENDED
    if now < start_of_day(row.start_date, tz):
        return PromotionStatus.SCHEDULED
    return PromotionStatus.ACTIVE


def assignment_window(
    start: date, end: date | None, unit: str | None, amount: int | None, assigned_at: datetime, tz: ZoneInfo
) -> tuple[datetime, datetime | None]:
    """From max(promotion start, assignment time) to the earlier of the promotion's end (23:59:59 local) and the
    end of the day ``assignedValidity`` after the assignment day."""
    valid_from = max(start_of_day(start, tz), assigned_at)
    candidates = []
    if end is not None:
        candidates.append(end_of_day(end, tz))
    if unit and amount:
        candidates.append(end_of_day(add_period(local_date(assigned_at, tz), unit, amount), tz))
    return valid_from, (min(candidates) if candidates else None)


MAX_AMOUNT = Decimal(10) ** 14  # what NUMERIC(18, 4) holds


def check_amount(amount: Decimal, where: str) -> Decimal:
    """A money amount the wire and the database can carry: finite, below 10^14, at most 4 decimals."""
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT or exponent < -4:  # type: ignore[operator]
        raise InvalidPromotionValueError(f"{where}: an amount must be below 10^14 with at most 4 decimals")  # fmt: skip
    return amount


def check_local_value(amount: Decimal, where: str) -> Decimal:
    """A MONEY channel's amount in another currency: positive, like the channel's own value."""
    if amount.is_finite() and amount <= 0:
        raise InvalidPromotionValueError(f"{where}: amount must be a positive amount")
    return check_amount(amount, where)


# The exact text of a value: no sign, exponent, underscore, space or leading zero ("050" is not 50).
_PERCENT_TEXT = re.compile(r"100|[1-9][0-9]?")
_MONEY_TEXT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,4})?")


def validate_channel_value(value_type: ValueType, value: str | None, where: str) -> str | None:
    if value_type is ValueType.PERCENT:
        text = (value or "").strip()
        if not _PERCENT_TEXT.fullmatch(text):
            raise InvalidPromotionValueError(
                f'{where}: PERCENT value must be a whole number 1-100, such as "20"'
            )
        return text
    if value_type is ValueType.MONEY:
        text = (value or "").strip()
        if not _MONEY_TEXT.fullmatch(text) or Decimal(text) <= 0:
            raise InvalidPromotionValueError(
                f'{where}: MONEY value must be a positive amount with at most 4 decimals, such as "20.5"'
            )
        return str(check_amount(Decimal(text), where))
    if value_type is ValueType.EXTERNALOFFER and not (value or "").strip():
        raise InvalidPromotionValueError(f"{where}: EXTERNALOFFER needs the code of the shop's rule")
    return value


def json_number(text: str) -> int | float:
    """A stored decimal (text) as the JSON number the wire carries."""
    d = Decimal(text)
    return int(d) if d == d.to_integral_value() else float(d)
