"""Streaming: a large file is read in constant memory, and dispatch by kind reaches every format."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from promoflow.wire.xml import FileKind, Record, RecordError, XmlRejected, check_file, read_file
from tests.wire._samples import GUID

RECORDS = 200_000
STATM = Path("/proc/self/statm")


def resident_bytes() -> int:
    return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def big_redemption_file(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<promotionRedemptions>\n')
        for i in range(count):
            out.write(
                f"  <redemption>\n    <couponId>{GUID}</couponId>\n    <redemptionChannel>POS</redemptionChannel>\n"
                f"    <redeemedOn>2024-05-01T10:{i % 60:02d}:00+02:00</redeemedOn>\n"
                f"    <storeExternalId>store-{i % 100}</storeExternalId>\n    <uniqueReceiptId>r-{i}</uniqueReceiptId>\n"
                f"    <idempotencyKey>k-{i}</idempotencyKey>\n  </redemption>\n"
            )
        out.write("</promotionRedemptions>\n")


@pytest.mark.skipif(not STATM.exists(), reason="resident memory is read from /proc")
def test_200k_records_are_read_in_constant_memory(tmp_path: Path) -> None:
    # The file is about 70 MB; kept as a tree it would take several hundred MB of libxml2 memory, which
    # tracemalloc cannot see, so the resident size is watched as well as Python's own allocations.
    path = tmp_path / "20240501000000_1_redemptions.xml"
    big_redemption_file(path, RECORDS)
    count = 0
    baseline = peak = python_peak = 0
    try:
        for item in read_file(FileKind.REDEMPTIONS, path):
            assert isinstance(item, Record)
            count += 1
            if count == 20_000:  # after warm-up: schema compiled, pydantic validators built
                baseline = resident_bytes()
                tracemalloc.start()  # only for a stretch: it slows the reader down threefold
            elif count == 60_000:
                python_peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            if count % 10_000 == 0 and baseline:
                peak = max(peak, resident_bytes())
    finally:
        tracemalloc.stop()
    assert count == RECORDS
    assert peak - baseline < 16 * 1024 * 1024, f"resident memory grew by {(peak - baseline) / 2**20:.1f} MiB"
    assert python_peak < 2 * 1024 * 1024, f"Python allocations peaked at {python_peak / 2**20:.1f} MiB"
    assert check_file("redemptions", path) == RECORDS


def test_read_file_dispatches_by_kind() -> None:
    documents = {
        FileKind.TRANSACTIONS: b'<transactions xmlns="http://voyado.Schemas.ImportReceipts"><transaction/></transactions>',
        FileKind.CONTACTS: b"<contacts><contact/></contacts>",
        FileKind.PROMOTIONS: b"<promotions><assign><assignment/></assign></promotions>",
        FileKind.REDEMPTIONS: b"<promotionRedemptions><redemption/></promotionRedemptions>",
        FileKind.PROMOTION_EXPORT: b"<promotionExport><deleted><promotion/></deleted></promotionExport>",
    }
    for kind, data in documents.items():
        (item,) = read_file(kind, data)
        assert isinstance(item, RecordError) and item.index == 1
        assert check_file(kind, data) == 1
        other = FileKind.CONTACTS if kind is not FileKind.CONTACTS else FileKind.REDEMPTIONS
        with pytest.raises(XmlRejected, match="root element must be"):
            check_file(other, data)


def test_reading_can_stop_early_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.xml"
    big_redemption_file(path, 10)
    reader = read_file("redemptions", path)
    assert isinstance(next(reader), Record)
    reader.close()  # the generator's with-block closes the file it opened
