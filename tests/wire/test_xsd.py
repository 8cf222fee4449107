"""The XSDs are the contract: they compile, and validating record by record (as the streaming readers do)
agrees with validating the whole document, on valid records and on randomly broken ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from promoflow.wire.xml import (
    XSD_FILES,
    RecordError,
    read_redemptions,
    read_transactions,
    write_redemptions,
    write_transactions,
    xsd_file,
)
from promoflow.wire.xml._redemptions import REDEMPTIONS
from promoflow.wire.xml._transactions import TRANSACTIONS
from tests.wire._samples import GUID, receipts, redemptions

JUNK = [
    "",
    " ",
    "x",
    "-1",
    "1.5",
    "1e3",
    "2024-13-01",
    "2024-05-01T10:00:00",
    "2024-05-01T10:00:00+02:00",
    "pos",
    "PURCHASE",
    "true",
    "maybe",
    GUID,
    GUID.upper().replace("-", ""),
    "{" + GUID + "}",
    "x" * 600,
]


@pytest.mark.parametrize("name", sorted(XSD_FILES))
def test_every_xsd_compiles_and_is_packaged(name: str) -> None:
    path = xsd_file(name)
    assert path.is_file() and path.name.endswith(".xsd")
    etree.XMLSchema(etree.fromstring(path.read_bytes()))


def mutate(record: etree._Element, data: st.DataObject) -> None:
    """One random change somewhere in the record: text, removal, duplication, an unknown or a renamed element."""
    action = data.draw(st.sampled_from(["text", "remove", "duplicate", "unknown", "rename", "attribute"]))
    # The record element itself is only changed inside: removing or renaming it is a layout matter, not the XSD's.
    nodes = list(record.iter()) if action in ("text", "unknown", "attribute") else list(record.iter())[1:]
    target = data.draw(st.sampled_from(nodes))
    namespace = etree.QName(record).namespace
    qualify = (lambda name: f"{{{namespace}}}{name}") if namespace else (lambda name: name)
    parent = target.getparent()
    if action == "text" and not len(target):
        target.text = data.draw(st.sampled_from(JUNK))
    elif action == "remove":
        assert parent is not None
        parent.remove(target)
    elif action == "duplicate":
        assert parent is not None
        parent.append(copy.deepcopy(target))
    elif action == "unknown":
        etree.SubElement(target, qualify(data.draw(st.sampled_from(["extra", "value", "item", "couponId"]))))
    elif action == "rename":
        target.tag = qualify(data.draw(st.sampled_from(["type", "value", "sku", "redeemedOn", "contactId"])))
    elif action == "attribute":
        target.set(data.draw(st.sampled_from(["name", "x"])), "v")


def check_agreement(document: bytes, xsd_name: str, codec: Any, reader: Any, data: st.DataObject) -> None:
    xsd = etree.XMLSchema(etree.fromstring(xsd_file(xsd_name).read_bytes()))
    root = etree.fromstring(document)
    mutate(root[0], data)
    whole = xsd.validate(root)
    per_record = codec.schema.problems(copy.deepcopy(root[0])) is None
    event(f"whole document valid: {whole}")
    assert whole == per_record, xsd.error_log
    (item,) = reader(etree.tostring(root))
    if not whole:  # the model may add rules to a valid record, never accept an invalid one
        assert isinstance(item, RecordError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=redemptions, data=st.data())
def test_redemption_record_validation_agrees_with_the_document(item: Any, data: st.DataObject) -> None:
    check_agreement(write_redemptions([item]), "redemptions", REDEMPTIONS, read_redemptions, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=receipts, data=st.data())
def test_transaction_record_validation_agrees_with_the_document(item: Any, data: st.DataObject) -> None:
    check_agreement(write_transactions([item]), "transactions", TRANSACTIONS, read_transactions, data)
