"""Redemption files: round trips, per-record errors, namespaces and the SDK's one-redemption documents."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from promoflow.wire.engage import ChannelType
from promoflow.wire.xml import (
    REDEMPTIONS_NAMESPACE,
    Record,
    RecordError,
    Redemption,
    RedemptionWriter,
    read_redemptions,
    write_redemptions,
    xsd_file,
)
from tests.wire._samples import GUID, WHEN, redemption, redemptions

XSD = etree.XMLSchema(etree.parse(str(xsd_file("redemptions"))))


def document(*records: str, root: str = "<promotionRedemptions>") -> bytes:
    end = "</" + root[1:].split()[0].rstrip(">") + ">"
    return (root + "".join(records) + end).encode()


def record(**fields: str) -> str:
    values = {"couponId": GUID, "redeemedOn": "2024-05-01T14:03:00+02:00", **fields}
    return (
        "<redemption>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in values.items() if v is not None)
        + "</redemption>"
    )


@settings(max_examples=150, deadline=None)
@given(items=st.lists(redemptions, max_size=5))
def test_round_trip(items: list[Redemption]) -> None:
    data = write_redemptions(items)
    XSD.assertValid(etree.fromstring(data))
    read = list(read_redemptions(data))
    assert all(isinstance(item, Record) for item in read), read
    assert [item.value for item in read if isinstance(item, Record)] == items
    assert [item.index for item in read] == list(range(1, len(items) + 1))


def test_one_redemption_document_is_complete_and_valid() -> None:
    data = write_redemptions([redemption()])
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<promotionRedemptions>")
    XSD.assertValid(etree.fromstring(data))
    (item,) = read_redemptions(data)
    assert isinstance(item, Record)
    assert item.value == redemption()
    assert item.line == 3


def test_writer_streams_to_a_file_object_and_counts() -> None:
    out = io.BytesIO()
    with RedemptionWriter(out) as writer:
        writer.write(redemption(unique_receipt_id="a"))
        writer.write(redemption(unique_receipt_id="b"))
        assert writer.count == 2
    assert [r.value.unique_receipt_id for r in read_redemptions(out.getvalue()) if isinstance(r, Record)] == [
        "a",
        "b",
    ]


def test_reader_takes_paths_file_objects_and_bytes(tmp_path: Path) -> None:
    data = write_redemptions([redemption()])
    path = tmp_path / "20240501140300_1_redemptions.xml"
    path.write_bytes(data)
    for source in (data, str(path), path, io.BytesIO(data)):
        assert [item.value for item in read_redemptions(source) if isinstance(item, Record)] == [redemption()]


def test_defaults_and_normalisation() -> None:
    data = document(
        "<redemption><couponId> {6F9619FF-8B86-D011-B42D-00CF4FC964FF} </couponId>"
        "<redeemedOn>2024-05-01T12:03:00Z</redeemedOn><redemptionChannel>ecom</redemptionChannel></redemption>",
        "<redemption><redeemedOn>2024-05-01T12:03:00Z</redeemedOn>"
        "<couponId>6F9619FF8B86D011B42D00CF4FC964FF</couponId></redemption>",
    )
    first, second = (item.value for item in read_redemptions(data) if isinstance(item, Record))
    assert first.coupon_id == GUID == second.coupon_id
    assert first.redemption_channel is ChannelType.ECOM
    assert second.redemption_channel is ChannelType.OTHER  # missing means OTHER, as for the JSON redeem
    assert first.redeemed_on == datetime(2024, 5, 1, 12, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"couponId": "nope"}, "couponId"),
        ({"couponId": None}, "Missing child element"),
        ({"redeemedOn": "2024-05-01T14:03:00"}, "redeemedOn"),  # no offset
        ({"redeemedOn": "yesterday"}, "redeemedOn"),
        ({"redemptionChannel": "SHOP"}, "redemptionChannel"),
        ({"storeExternalId": ""}, "storeExternalId"),
        ({"storeExternalId": "x" * 256}, "storeExternalId"),
        ({"idempotencyKey": "k", "unknown": "x"}, "unknown"),
        ({"contactId": "123"}, "contactId"),
    ],
)
def test_a_bad_record_is_reported_and_the_others_are_read(fields: dict[str, str], reason: str) -> None:
    data = document(record(uniqueReceiptId="before"), record(**fields), record(uniqueReceiptId="after"))
    before, bad, after = read_redemptions(data)
    assert isinstance(before, Record) and isinstance(after, Record)
    assert isinstance(bad, RecordError)
    assert bad.index == 2
    assert reason in bad.reason
    assert (before.index, after.index) == (1, 3)


def test_model_rules_beyond_the_xsd_are_per_record_errors() -> None:
    # xs:dateTime accepts a year the model cannot hold: the model decides, for that record only.
    data = document(record(redeemedOn="10000-01-01T00:00:00Z"), record())
    bad, good = read_redemptions(data)
    assert isinstance(bad, RecordError) and "redeemedOn" in bad.reason
    assert isinstance(good, Record)


def test_error_carries_the_coupon_id_as_key_and_the_line() -> None:
    data = b"<promotionRedemptions>\n" + record(redeemedOn="never").encode() + b"\n</promotionRedemptions>"
    (error,) = read_redemptions(data)
    assert isinstance(error, RecordError)
    assert (error.key, error.line) == (GUID, 2)


def test_unexpected_elements_between_records_are_invalid_records() -> None:
    data = document(record(), "<redemptoin><couponId>x</couponId></redemptoin>", record())
    first, typo, last = read_redemptions(data)
    assert isinstance(typo, RecordError)
    assert typo.reason == "element <redemptoin> is not expected in <promotionRedemptions>"
    assert isinstance(first, Record) and isinstance(last, Record) and last.index == 3


def test_namespaced_documents_are_read_the_same() -> None:
    plain = write_redemptions([redemption()])
    namespaced = plain.replace(
        b"<promotionRedemptions>", f'<promotionRedemptions xmlns="{REDEMPTIONS_NAMESPACE}">'.encode()
    )
    prefixed = plain.replace(b"<", b"<r:").replace(b"<r:/", b"</r:").replace(b"<r:?", b"<?")
    prefixed = prefixed.replace(
        b"<r:promotionRedemptions>", f'<r:promotionRedemptions xmlns:r="{REDEMPTIONS_NAMESPACE}">'.encode(), 1
    )
    for data in (namespaced, prefixed):
        assert [item.value for item in read_redemptions(data) if isinstance(item, Record)] == [redemption()]


def test_a_record_in_a_foreign_namespace_is_invalid() -> None:
    data = document(record(), f'<redemption xmlns="urn:other">{record()[12:]}')
    good, foreign = read_redemptions(data)
    assert isinstance(good, Record)
    assert isinstance(foreign, RecordError) and "urn:other" in foreign.reason


def test_comments_and_processing_instructions_are_ignored() -> None:
    data = document("<!-- store 471 -->", record().replace("<couponId>", "<?pi x?><couponId><!-- c -->"))
    (item,) = read_redemptions(data)
    assert isinstance(item, Record)


def test_writer_refuses_what_xml_cannot_carry() -> None:
    with pytest.raises(ValueError, match="XML"):
        write_redemptions([redemption(store_external_id="a\x01b")])
    with pytest.raises(ValueError, match="cannot be written"):
        write_redemptions([redemption(unique_receipt_id="a\ufffeb")])


def test_offsets_xsd_cannot_express_are_written_in_utc() -> None:
    odd = timezone(timedelta(hours=1, seconds=30))
    data = write_redemptions([redemption(redeemed_on=WHEN.astimezone(odd))])
    XSD.assertValid(etree.fromstring(data))
    (item,) = read_redemptions(data)
    assert isinstance(item, Record) and item.value.redeemed_on == WHEN
    assert item.value.redeemed_on.utcoffset() == timedelta(0)


def test_carriage_returns_and_markup_characters_survive() -> None:
    value = 'a\r\nb <c> & "d"'
    (item,) = read_redemptions(write_redemptions([redemption(unique_receipt_id=value)]))
    assert isinstance(item, Record) and item.value.unique_receipt_id == value


def test_empty_file_of_records() -> None:
    data = write_redemptions([])
    XSD.assertValid(etree.fromstring(data))
    assert list(read_redemptions(data)) == []


def test_a_failed_writer_leaves_an_incomplete_document() -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError), RedemptionWriter(out) as writer:
        writer.write(redemption())
        writer.write(redemption(store_external_id="bad\x00"))
    assert b"</promotionRedemptions>" not in out.getvalue()  # no reader will take it for a complete file


@pytest.mark.parametrize("encoding", ["UTF-16", "ISO-8859-1"])
def test_other_encodings_are_read(encoding: str) -> None:
    text = write_redemptions([redemption(store_external_id="Östra")]).decode()
    data = text.replace("encoding='utf-8'", f"encoding='{encoding}'").encode(encoding)
    (item,) = read_redemptions(data)
    assert isinstance(item, Record) and item.value.store_external_id == "Östra"
