"""Date and time rules of the wire: ISO 8601 with offset, dates evaluated in a tenant's time zone."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

# Days a filter typed by hand may name, kept where every zone has a start and an end of them as an instant (year
# 1 at +14:00 has none): the same rows match.
FIRST_FILTER_DAY, LAST_FILTER_DAY = date(1900, 1, 1), date(9998, 12, 31)


def filter_day(text: str | None) -> date | None:
    """A date a person typed into a filter (ISO 8601), within `FIRST_FILTER_DAY`…`LAST_FILTER_DAY`; None when
    it is no date."""
    try:
        given = date.fromisoformat(text.strip()) if text and text.strip() else None
    except ValueError:
        return None
    return None if given is None else min(max(given, FIRST_FILTER_DAY), LAST_FILTER_DAY)


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """00:00:00 local time of ``day``, as a UTC instant."""
    return datetime.combine(day, time(0, 0, 0), tzinfo=tz).astimezone(UTC)


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """23:59:59 local time of ``day`` (Engage's end-of-validity rule), as a UTC instant."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=tz).astimezone(UTC)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def add_period(day: date, unit: str, amount: int) -> date:
    if unit == "Months":
        return add_months(day, amount)
    return day + timedelta(days=amount)


# The text of recent (UTC instant, zone) pairs: a contact's promotions end at the same few instants (a validity's
# last second), and converting and formatting one costs ~3 µs — a fetch shows several. (Only instants in UTC are
# keys: two datetimes of another zone compare equal across a DST fold.)
_ISO: dict[tuple[datetime, tzinfo], str] = {}
# The second last written of each zone, for instants with a fraction (each redeem's moment is another, not worth a
# place in ``_ISO``): the local date and time to the second, and the offset — both the same for the whole second,
# as offsets change on whole seconds.
_SECOND: dict[tzinfo, tuple[tuple[int, ...], str, str]] = {}


def iso(instant: datetime | None, tz: tzinfo | None = None) -> str | None:
    """ISO 8601 with offset, in ``tz`` when given (wire output), seconds precision unless sub-second."""
    if instant is None:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    if tz is None or instant.tzinfo is not UTC:
        return _iso(instant if tz is None else instant.astimezone(tz))
    text = _ISO.get((instant, tz))
    if text is not None:
        return text
    micro = instant.microsecond
    stamp = (instant.second, instant.minute, instant.hour, instant.day, instant.month, instant.year)
    second = _SECOND.get(tz)
    if micro and second is not None and second[0] == stamp:
        # Another moment of the same second (a redemption's): the milliseconds go between its date and offset.
        return f"{second[1]}.{micro // 1000:03d}{second[2]}"
    local = _iso(instant.replace(microsecond=0).astimezone(tz))  # "YYYY-MM-DDTHH:MM:SS" and the offset
    _SECOND[tz] = (stamp, local[:19], local[19:])
    text = f"{local[:19]}.{micro // 1000:03d}{local[19:]}" if micro else local
    if len(_ISO) >= 4096:
        _ISO.clear()
    _ISO[(instant, tz)] = text
    return text


def _iso(instant: datetime) -> str:
    return instant.isoformat(timespec="seconds" if instant.microsecond == 0 else "milliseconds")
