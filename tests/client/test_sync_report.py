"""What a sync pass says it did (``SyncReport.summary``), and the one way instants are written in reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from promoflow.client import SyncReport
from promoflow.client._settle import format_instant, uniform_instants
from promoflow.client.sync import _describe_conflict
from promoflow.wire.engage import ChannelType
from promoflow.wire.xml import ResultRecord, Verdict


@pytest.mark.parametrize(
    ("report", "said"),
    [
        (
            SyncReport(api_online=False, queued=3, undelivered=3, ftp_configured=False),
            "API down: 3 queued, waiting for the API; FTP not configured: nothing uploaded; "
            "0 done, 0 need attention, 3 undelivered",
        ),
        (
            SyncReport(
                api_online=False, queued=3, ftp_online=True, uploaded=3, awaiting_results=3, undelivered=3
            ),
            "API down: 3 queued for FTP; FTP up: 3 uploaded, 0 result file(s) read; "
            "0 done, 0 need attention, 3 undelivered (3 awaiting import results)",
        ),
        (
            SyncReport(api_online=True, settled_online=2, done=2, ftp_online=None),
            "API up: 2 settled online; FTP not needed: nothing to upload; 2 done, 0 need attention, 0 undelivered",
        ),
        (
            SyncReport(api_configured=False, ftp_online=False, undelivered=1),
            "API not configured; FTP down: nothing uploaded; 0 done, 0 need attention, 1 undelivered",
        ),
        (
            SyncReport(ftp_online=True, uploaded=2, already_uploaded=1, results_read=1, done=2),
            "API not asked: nothing to send online; FTP up: 2 uploaded (1 were there already), "
            "1 result file(s) read; 2 done, 0 need attention, 0 undelivered",
        ),
        (SyncReport(skipped=True), "another sync pass was running: nothing done"),
    ],
)
def test_the_summary_names_what_happened(report: SyncReport, said: str) -> None:
    assert report.summary() == said
    assert report.to_json()["summary"] == said


def test_instants_in_reasons_read_alike() -> None:
    stockholm = timezone(timedelta(hours=1))
    assert (
        format_instant(datetime(2026, 3, 10, 14, 3, 7, 123000, tzinfo=stockholm))
        == "2026-03-10T14:03:07+01:00"
    )
    assert uniform_instants(
        "the promotion was already redeemed at 2026-03-10T14:03:07.123+01:00 via POS; expired 2026-03-11T00:00Z"
    ) == (
        "the promotion was already redeemed at 2026-03-10T14:03:07+01:00 via POS; expired 2026-03-11T00:00:00+00:00"
    )
    assert uniform_instants(None) is None and uniform_instants("no time here") == "no time here"


def test_a_conflict_from_a_result_file_is_said_once_with_the_same_instant_format() -> None:
    record = ResultRecord(
        index=1,
        verdict=Verdict.CONFLICT_ALREADY_REDEEMED,
        reason="the promotion was already redeemed at 2026-03-10T14:03:07.123+01:00 via ECOM in store W-1",
        redeemed_on=datetime(2026, 3, 10, 13, 3, 7, 123000, tzinfo=UTC).astimezone(
            timezone(timedelta(hours=1))
        ),
        redemption_channel=ChannelType.ECOM,
        store_external_id="W-1",
        unique_receipt_id="R-9",
    )
    assert (
        _describe_conflict(record)
        == "already redeemed at 2026-03-10T14:03:07+01:00 via ECOM in store W-1 (receipt R-9)"
    )
    bare = ResultRecord(
        index=1, verdict=Verdict.CONFLICT_ALREADY_REDEEMED, reason="taken at 2026-03-10T13:03:07Z"
    )
    assert _describe_conflict(bare) == "taken at 2026-03-10T13:03:07+00:00"
