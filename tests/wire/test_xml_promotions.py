"""Promotion import files: createOrUpdate and assign sections, in document order."""

from __future__ import annotations

import io
from datetime import date

import pytest
from lxml import etree

from promoflow.wire.engage import ChannelType, ValueType
from promoflow.wire.xml import (
    PromotionAssignment,
    PromotionImportWriter,
    PromotionUpsert,
    Record,
    RecordError,
    XmlRejected,
    read_promotions,
    write_promotions,
    xsd_file,
)
from tests.wire._samples import GUID

XSD = etree.XMLSchema(etree.parse(str(xsd_file("promotions"))))

SAMPLE = f"""<?xml version="1.0" encoding="utf-8"?>
<promotions>
  <createOrUpdate>
    <promotion>
      <promotionName>20% off tees</promotionName>
      <externalPromotionId>TEES-20</externalPromotionId>
      <published>true</published>
      <validFromDate>2024-05-01</validFromDate>
      <validToDate>2024-05-31</validToDate>
      <presentation><heading>20% off</heading><description>All tees</description></presentation>
      <redemptionChannels>
        <redemptionChannel><type>POS</type><valueType>PERCENT</valueType><value>20</value>
          <instruction>Scan the code</instruction></redemptionChannel>
        <redemptionChannel><type>ecom</type><valueType>externalOffer</valueType><value>TEES20</value></redemptionChannel>
      </redemptionChannels>
    </promotion>
  </createOrUpdate>
  <assign>
    <assignment>
      <externalPromotionId>TEES-20</externalPromotionId>
      <externalPromotionCodeId>TEES-20-0001</externalPromotionCodeId>
      <contactId>{GUID}</contactId>
    </assignment>
    <assignment>
      <externalPromotionId>TEES-20</externalPromotionId>
      <externalContactId>90154424</externalContactId>
      <validFromDate>2024-05-10</validFromDate>
    </assignment>
  </assign>
  <createOrUpdate>
    <promotion><promotionName>Later</promotionName><externalPromotionId>LATER</externalPromotionId></promotion>
  </createOrUpdate>
</promotions>
""".encode()


def test_sample_in_document_order() -> None:
    XSD.assertValid(etree.fromstring(SAMPLE))
    items = list(read_promotions(SAMPLE))
    assert [item.index for item in items] == [1, 2, 3, 4]
    upsert, first, second, later = (item.value for item in items if isinstance(item, Record))
    assert isinstance(upsert, PromotionUpsert)
    assert upsert.valid_to_date == date(2024, 5, 31)
    assert upsert.redemption_channels is not None
    assert [(c.type, c.value_type) for c in upsert.redemption_channels] == [
        (ChannelType.POS, ValueType.PERCENT),
        (ChannelType.ECOM, ValueType.EXTERNALOFFER),
    ]
    assert isinstance(first, PromotionAssignment) and first.contact_id == GUID
    assert isinstance(second, PromotionAssignment) and second.external_contact_id == "90154424"
    assert (
        isinstance(later, PromotionUpsert) and later.published is True and later.redemption_channels is None
    )


def test_round_trip_keeps_sections_and_order() -> None:
    items = [item.value for item in read_promotions(SAMPLE) if isinstance(item, Record)]
    data = write_promotions(items)
    XSD.assertValid(etree.fromstring(data))
    assert [item.value for item in read_promotions(data) if isinstance(item, Record)] == items
    assert data.count(b"<createOrUpdate>") == 2 and data.count(b"<assign>") == 1


@pytest.mark.parametrize(
    ("section", "body", "reason"),
    [
        (
            "assign",
            "<externalPromotionId>P</externalPromotionId>",
            "needs a contactId or an externalContactId",
        ),
        ("assign", f"<contactId>{GUID}</contactId>", "externalPromotionId"),
        ("createOrUpdate", "<promotionName>N</promotionName>", "externalPromotionId"),
        (
            "createOrUpdate",
            "<promotionName>N</promotionName><externalPromotionId>P</externalPromotionId>"
            "<validFromDate>2024-05-31</validFromDate><validToDate>2024-05-01</validToDate>",
            "validToDate is before validFromDate",
        ),
        (
            "createOrUpdate",
            "<promotionName>N</promotionName><externalPromotionId>P</externalPromotionId>"
            "<validFromDate>2024-05-31+02:00</validFromDate>",
            "validFromDate",
        ),
        (
            "createOrUpdate",
            "<promotionName>N</promotionName><externalPromotionId>P</externalPromotionId><redemptionChannels>"
            "<redemptionChannel><type>POS</type><valueType>SWIPE</valueType></redemptionChannel></redemptionChannels>",
            "valueType",
        ),
        (
            "createOrUpdate",
            "<promotionName>N</promotionName><externalPromotionId>" + "x" * 451 + "</externalPromotionId>",
            "externalPromotionId",
        ),
    ],
)
def test_bad_records_are_per_record(section: str, body: str, reason: str) -> None:
    tag = "assignment" if section == "assign" else "promotion"
    data = f"<promotions><{section}><{tag}>{body}</{tag}></{section}></promotions>".encode()
    (error,) = read_promotions(data)
    assert isinstance(error, RecordError) and reason in error.reason, error


def test_records_in_the_wrong_section_and_unknown_sections() -> None:
    data = (
        b"<promotions><assign><promotion><promotionName>N</promotionName></promotion></assign>"
        b"<delete><assignment/></delete>"
        b"<assign><assignment><externalPromotionId>P</externalPromotionId><externalContactId>1</externalContactId>"
        b"</assignment></assign></promotions>"
    )
    wrong, unknown, good = read_promotions(data)
    assert (
        isinstance(wrong, RecordError) and wrong.reason == "element <promotion> is not expected in <assign>"
    )
    assert (
        isinstance(unknown, RecordError)
        and unknown.reason == "element <delete> is not expected in <promotions>"
    )
    assert isinstance(good, Record) and good.index == 3


def test_error_keys() -> None:
    data = (
        b"<promotions><assign><assignment><externalPromotionId>P</externalPromotionId>"
        b"<externalPromotionCodeId>CODE-1</externalPromotionCodeId></assignment></assign>"
        b"<createOrUpdate><promotion><externalPromotionId>P</externalPromotionId></promotion></createOrUpdate>"
        b"</promotions>"
    )
    assignment, promotion = read_promotions(data)
    assert isinstance(assignment, RecordError) and assignment.key == "CODE-1"
    assert isinstance(promotion, RecordError) and promotion.key == "P"


def test_text_inside_a_section_is_rejected() -> None:
    with pytest.raises(XmlRejected, match="text 'x'"):
        list(read_promotions(b"<promotions><assign>x</assign></promotions>"))


def test_writer_switches_sections() -> None:
    out = io.BytesIO()
    with PromotionImportWriter(out) as writer:
        writer.write(PromotionUpsert(promotion_name="A", external_promotion_id="A"))
        writer.write(PromotionAssignment(external_promotion_id="A", contact_id=GUID))
        writer.write(PromotionAssignment(external_promotion_id="A", external_contact_id="7"))
    data = out.getvalue()
    XSD.assertValid(etree.fromstring(data))
    assert data.count(b"<assign>") == 1


def test_a_section_in_a_foreign_namespace_is_not_a_section() -> None:
    data = (
        b'<promotions><x:assign xmlns:x="urn:other"><assignment><externalPromotionId>P</externalPromotionId>'
        b"<externalContactId>1</externalContactId></assignment></x:assign></promotions>"
    )
    (error,) = read_promotions(data)
    assert isinstance(error, RecordError)
    assert error.reason == "element <assign> in namespace 'urn:other' is not expected in <promotions>"
