"""The wire's ISO 8601 text of an instant in a tenant's zone (`kit.timeutil.iso`): instants with a fraction (a
redemption's moment) are written from the text of their second, kept per zone; the text is the same as
``isoformat`` of the local time, across daylight-saving changes and in zones with odd offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from promoflow.kit.timeutil import iso

ZONES = [
    "Europe/Stockholm",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
]
# Instants around changes of offset: Stockholm's spring and autumn, New York's, Lord Howe's half-hour ones.
CHANGES = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
]


def _expected(instant: datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    return local.isoformat(timespec="seconds" if local.microsecond == 0 else "milliseconds")


def test_moments_are_written_as_isoformat_writes_them_across_offset_changes() -> None:
    for name in ZONES:
        zone = ZoneInfo(name)
        for change in CHANGES:
            for micros in range(-2_500_000, 2_500_000, 7_919):  # each second several times, and whole seconds
                instant = change + timedelta(microseconds=micros)
                assert iso(instant, zone) == _expected(instant, zone), (instant, name)
                whole = instant.replace(microsecond=0)
                assert iso(whole, zone) == _expected(whole, zone), (whole, name)


def test_zones_taking_turns_within_one_second() -> None:
    instant = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    for _ in range(3):
        for name in ZONES:
            zone = ZoneInfo(name)
            for micros in (0, 1, 999, 1000, 999_999):
                moment = instant.replace(microsecond=micros)
                assert iso(moment, zone) == _expected(moment, zone)
    assert iso(instant, ZoneInfo("Asia/Kolkata")) == "2026-06-01T17:30:00.123+05:30"


def test_an_end_with_a_fraction_beside_moments_of_other_seconds() -> None:
    """A validity end with a fraction, written beside each redemption's moment (the redeem's answer): both right,
    whichever was written last."""
    zone = ZoneInfo("Europe/Stockholm")
    end = datetime(2027, 12, 5, 10, 34, 8, 707310, tzinfo=UTC)
    moment = datetime(2026, 10, 25, 0, 59, 58, 1, tzinfo=UTC)
    for step in range(5_000):
        moment += timedelta(microseconds=997)
        assert iso(end, zone) == _expected(end, zone)
        assert iso(moment, zone) == _expected(moment, zone), (step, moment)
