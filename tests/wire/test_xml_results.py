"""Import result files: streamed verdicts with the summary last, read back strictly by the SDK."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from lxml import etree

from promoflow.wire.engage import ChannelType
from promoflow.wire.xml import (
    FileStatus,
    ImportResultWriter,
    RecordError,
    ResultRecord,
    ResultSummary,
    Verdict,
    XmlRejected,
    load_import_result,
    read_import_result,
    read_redemptions,
    write_import_result,
    xsd_file,
)
from tests.wire._samples import GUID, WHEN

XSD = etree.XMLSchema(etree.parse(str(xsd_file("importResult"))))
FILE = "20240501140300_471_redemptions.xml"

RECORDS = [
    ResultRecord(index=1, verdict=Verdict.APPLIED, key=GUID),
    ResultRecord(index=2, verdict=Verdict.DUPLICATE, key=GUID),
    ResultRecord(
        index=3,
        verdict=Verdict.CONFLICT_ALREADY_REDEEMED,
        key=GUID,
        redeemed_on=WHEN,
        redemption_channel=ChannelType.ECOM,
        store_external_id="web",
        unique_receipt_id="r-9",
    ),
    ResultRecord(index=4, verdict=Verdict.EXPIRED, key=GUID, reason="expired on 2024-04-30T23:59:59+02:00"),
    ResultRecord(index=5, verdict=Verdict.NOT_FOUND, key=GUID),
    ResultRecord(
        index=6, verdict=Verdict.INVALID, line=40, reason='redeemedOn: "never" is <no> date\nat all'
    ),
    ResultRecord(index=7, verdict=Verdict.APPLIED, key="anna@example.se", contact_id=GUID),
]


def test_round_trip_with_summary_last() -> None:
    data = write_import_result(FILE, RECORDS, import_id="imp-1")
    XSD.assertValid(etree.fromstring(data))
    summary, records = load_import_result(data)
    assert records == RECORDS
    assert summary.file == FILE and summary.import_id == "imp-1"
    assert summary.status is FileStatus.PROCESSED and summary.reason is None
    assert summary.total == 7
    assert summary.counts == {
        Verdict.APPLIED: 2,
        Verdict.DUPLICATE: 1,
        Verdict.CONFLICT_ALREADY_REDEEMED: 1,
        Verdict.EXPIRED: 1,
        Verdict.NOT_FOUND: 1,
        Verdict.INVALID: 1,
    }
    assert data.rstrip().endswith(b"</importResult>")
    assert data.index(b"<summary") > data.rindex(b"<record")


def test_rejected_file() -> None:
    data = write_import_result(FILE, [], rejected=XmlRejected("not well-formed: Entity 'x' not defined", 3))
    XSD.assertValid(etree.fromstring(data))
    summary, records = load_import_result(data)
    assert records == []
    assert (summary.status, summary.reason, summary.line, summary.total) == (
        FileStatus.REJECTED,
        "not well-formed: Entity 'x' not defined",
        3,
        0,
    )


def test_reader_streams_records_then_the_summary() -> None:
    items = list(read_import_result(write_import_result(FILE, RECORDS)))
    assert items[:-1] == RECORDS
    assert isinstance(items[-1], ResultSummary)


def test_writer_streams_and_invalid_verdicts_come_from_reader_errors() -> None:
    source = b"<promotionRedemptions><redemption><couponId>x</couponId></redemption></promotionRedemptions>"
    out = io.BytesIO()
    with ImportResultWriter(out, file=FILE) as writer:
        for item in read_redemptions(source):
            assert isinstance(item, RecordError)
            writer.write(ResultRecord.invalid(item))
        assert writer.count == 1
    summary, (record,) = load_import_result(out.getvalue())
    assert record.verdict is Verdict.INVALID and record.key == "x" and record.line == 1
    assert record.reason is not None and "couponId" in record.reason
    assert summary.counts[Verdict.INVALID] == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'<importResult file="f"><record index="1" verdict="applied"/></importResult>', "no <summary>"),
        (
            b'<importResult file="f"><summary status="processed" total="0" applied="0" duplicate="0"'
            b' conflictAlreadyRedeemed="0" expired="0" notFound="0" invalid="0"/>'
            b'<record index="1" verdict="applied"/></importResult>',
            "must be the last",
        ),
        (b'<importResult file="f"><record index="0" verdict="applied"/></importResult>', "result record 1"),
        (b'<importResult file="f"><record index="1" verdict="great"/></importResult>', "verdict"),
        (
            b'<importResult file="f"><summary status="processed" total="5" applied="0" duplicate="0"'
            b' conflictAlreadyRedeemed="0" expired="0" notFound="0" invalid="0"/></importResult>',
            "not the sum",
        ),
        (
            b'<importResult><summary status="processed" total="0" applied="0" duplicate="0"'
            b' conflictAlreadyRedeemed="0" expired="0" notFound="0" invalid="0"/></importResult>',
            "file",
        ),
    ],
)
def test_reader_is_strict(data: bytes, reason: str) -> None:
    with pytest.raises(XmlRejected, match=reason):
        list(read_import_result(data))


def test_writer_validates_its_values() -> None:
    with pytest.raises(ValueError):
        ResultRecord(index=0, verdict=Verdict.APPLIED)
    with pytest.raises(ValueError, match="offset"):
        write_import_result(
            FILE,
            [
                ResultRecord.model_construct(
                    index=1, verdict=Verdict.APPLIED, redeemed_on=datetime(2024, 1, 1)
                )
            ],
        )
