"""Receipt (transaction) files: the XML mirror of the JSON receipt, read into the same Receipt model."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from promoflow.wire.engage import Receipt, dump
from promoflow.wire.xml import (
    TRANSACTIONS_NAMESPACE,
    Record,
    RecordError,
    XmlRejected,
    read_transactions,
    write_transactions,
    xsd_file,
)
from tests.wire._samples import GUID, receipt, receipts

XSD = etree.XMLSchema(etree.parse(str(xsd_file("transactions"))))

# Engage's published example, with the parts its page shows (extraData as <item name="…">).
ENGAGE_SAMPLE = b"""<?xml version="1.0" encoding="utf-8"?>
<transactions xmlns="http://voyado.Schemas.ImportReceipts">
  <transaction>
    <contact>
      <matchKey>90154424</matchKey>
      <matchKeyType>memberNumber</matchKeyType>
      <contactType>Member</contactType>
    </contact>
    <uniqueReceiptId>14534304434293</uniqueReceiptId>
    <receiptNumber>87684684684</receiptNumber>
    <createdDate>2019-07-23T10:14:00+02:00</createdDate>
    <storeExternalId>471</storeExternalId>
    <currency>SEK</currency>
    <exchangeRateToGroupCurrency>1</exchangeRateToGroupCurrency>
    <totalGrossPrice>199.50</totalGrossPrice>
    <paymentMethods>
      <paymentMethod>
        <type>bonuscheck</type>
        <description>25kr bonuscheck</description>
        <value>25</value>
        <extraData><item name="checkNumber">123</item></extraData>
      </paymentMethod>
      <paymentMethod>
        <type>card</type>
        <value>174.50</value>
        <extraData>
          <item name="cardNumber">489456*</item>
          <item name="cardIssuer">ICA Banken</item>
        </extraData>
      </paymentMethod>
    </paymentMethods>
    <items>
      <item>
        <type>PURCHASE</type>
        <sku>7391234567</sku>
        <quantity>1</quantity>
        <grossPaidPrice>199.50</grossPaidPrice>
        <taxAmount>39.90</taxAmount>
        <taxPercent>25</taxPercent>
        <articleNumber>A-1</articleNumber>
        <articleName>Stickad tr\xc3\xb6ja V-neck</articleName>
        <discounts>
          <discount>
            <value>-200.00</value>
            <type>325</type>
            <description>50% rabatt nedsatt vara</description>
          </discount>
        </discounts>
      </item>
    </items>
    <usedPromotions>
      <usedPromotion><couponId>6f9619ff-8b86-d011-b42d-00cf4fc964ff</couponId></usedPromotion>
    </usedPromotions>
  </transaction>
</transactions>
"""


@settings(max_examples=100, deadline=None)
@given(items=st.lists(receipts, min_size=1, max_size=3))
def test_round_trip(items: list[Receipt]) -> None:
    data = write_transactions(items)
    XSD.assertValid(etree.fromstring(data))
    read = list(read_transactions(data))
    assert all(isinstance(item, Record) for item in read), read
    assert [item.value for item in read if isinstance(item, Record)] == items


def test_engage_sample_reads_like_the_json_receipt() -> None:
    XSD.assertValid(etree.fromstring(ENGAGE_SAMPLE))
    (item,) = read_transactions(ENGAGE_SAMPLE)
    assert isinstance(item, Record)
    body = dump(item.value)
    assert body["contact"] == {
        "matchKey": "90154424",
        "matchKeyType": "memberNumber",
        "contactType": "Member",
    }
    assert body["paymentMethods"][1]["extraData"] == [
        {"name": "cardNumber", "value": "489456*"},
        {"name": "cardIssuer", "value": "ICA Banken"},
    ]
    assert body["items"][0]["discounts"] == [
        {"value": -200, "type": "325", "description": "50% rabatt nedsatt vara"}
    ]
    assert body["items"][0]["articleName"] == "Stickad tröja V-neck"
    assert body["usedPromotions"] == [{"promotionId": None, "couponId": GUID}]
    assert item.value.total_gross_price == Decimal("199.50")


def test_writer_uses_engages_namespace_once() -> None:
    data = write_transactions([receipt()])
    assert data.count(b"xmlns=") == 1
    assert f'<transactions xmlns="{TRANSACTIONS_NAMESPACE}">'.encode() in data
    XSD.assertValid(etree.fromstring(data))


def test_documents_without_namespace_are_read_the_same() -> None:
    plain = ENGAGE_SAMPLE.replace(b' xmlns="http://voyado.Schemas.ImportReceipts"', b"")
    assert [r.value for r in read_transactions(plain)] == [r.value for r in read_transactions(ENGAGE_SAMPLE)]


def test_mixed_namespaces_are_a_per_record_error() -> None:
    data = ENGAGE_SAMPLE.replace(b"<receiptNumber>", b'<receiptNumber xmlns="">').replace(
        b"</receiptNumber>", b"</receiptNumber>"
    )
    (item,) = read_transactions(data)
    assert isinstance(item, RecordError) and "receiptNumber" in item.reason


def test_empty_optional_elements_count_as_absent() -> None:
    data = ENGAGE_SAMPLE.replace(b"<receiptNumber>87684684684</receiptNumber>", b"<receiptNumber/>").replace(
        b"<taxAmount>39.90</taxAmount>", b"<taxAmount></taxAmount>"
    )
    (item,) = read_transactions(data)
    assert isinstance(item, Record)
    assert item.value.receipt_number is None
    assert item.value.items[0].tax_amount is None


def test_children_may_come_in_any_order() -> None:
    data = ENGAGE_SAMPLE.replace(b"<currency>SEK</currency>", b"").replace(
        b"<uniqueReceiptId>", b"<currency>sek</currency><uniqueReceiptId>"
    )
    (item,) = read_transactions(data)
    assert isinstance(item, Record) and item.value.currency == "sek"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"<uniqueReceiptId>14534304434293</uniqueReceiptId>", b"", "uniqueReceiptId"),
        (b"2019-07-23T10:14:00+02:00", b"2019-07-23T10:14:00", "createdDate"),
        (
            b"<totalGrossPrice>199.50</totalGrossPrice>",
            b"<totalGrossPrice>199,50</totalGrossPrice>",
            "totalGrossPrice",
        ),
        (b"<type>PURCHASE</type>", b"<type>SALE</type>", "type"),
        (b"<currency>SEK</currency>", b"<currency>KRONOR</currency>", "currency"),
        (b'<item name="cardIssuer">', b"<item>", "name"),
        (b"<sku>", b"<colour>red</colour><sku>", "colour"),
    ],
)
def test_xsd_faults_are_per_record(old: bytes, new: bytes, reason: str) -> None:
    bad = ENGAGE_SAMPLE.replace(old, new, 1)
    assert bad != ENGAGE_SAMPLE
    body = bad.split(b"<transaction>", 1)[1].rsplit(b"</transaction>", 1)[0]
    good = ENGAGE_SAMPLE.split(b"<transaction>", 1)[1].rsplit(b"</transaction>", 1)[0]
    data = ENGAGE_SAMPLE.replace(
        b"<transaction>" + good + b"</transaction>",
        b"<transaction>" + good + b"</transaction><transaction>" + body + b"</transaction>",
    )
    first, second = read_transactions(data)
    assert isinstance(first, Record)
    assert isinstance(second, RecordError) and second.index == 2
    assert reason in second.reason
    assert second.key == (None if b"uniqueReceiptId" in old else "14534304434293")


def test_model_faults_are_per_record() -> None:
    # Three spaces pass the XSD's minLength but not the model, which strips them: the model has the last word.
    data = ENGAGE_SAMPLE.replace(b"<matchKey>90154424</matchKey>", b"<matchKey>   </matchKey>")
    (item,) = read_transactions(data)
    assert isinstance(item, RecordError)
    assert item.reason == "contact.matchKey: Field required"
    assert item.key == "14534304434293"


def test_receipt_with_5000_lines_is_read_and_5001_is_not() -> None:
    lines = receipt().items * 5000
    (item,) = read_transactions(write_transactions([receipt(items=[dump(line) for line in lines])]))
    assert isinstance(item, Record) and len(item.value.items) == 5000
    data = write_transactions([receipt(items=[dump(line) for line in lines])]).replace(
        b"<items>", b"<items><item><quantity>1</quantity><grossPaidPrice>1</grossPaidPrice></item>", 1
    )
    (error,) = read_transactions(data)
    assert isinstance(error, RecordError) and "item" in error.reason


def test_wrong_root_is_rejected() -> None:
    with pytest.raises(XmlRejected, match="<transactions>"):
        list(read_transactions(b'<receipts xmlns="http://voyado.Schemas.ImportReceipts"/>'))
