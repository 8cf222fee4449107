"""Receipt import (spec A12/A13): ``<transactions xmlns="http://voyado.Schemas.ImportReceipts">``.

Each ``<transaction>`` mirrors the JSON body of ``POST /api/v2/receipts`` and is read into the very same
``Receipt`` model, so a receipt means the same thing whether it came over HTTP or FTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from io import BytesIO
from typing import Any

from lxml import etree

from promoflow.wire.engage import FROM_TEXT, ExtraData, Receipt
from promoflow.wire.xml._parser import (
    Codec,
    Layout,
    Record,
    RecordError,
    XmlSource,
    child_text,
    element_object,
    read_records,
)
from promoflow.wire.xml._schema import Schema
from promoflow.wire.xml._writer import DocumentWriter, Node, model_nodes

TRANSACTIONS_NAMESPACE = "http://voyado.Schemas.ImportReceipts"
"""Engage's namespace for receipt import files; files without a namespace are read the same way."""

# JSON list field → element of one entry. extraData is special: <item name="…">value</item>, as in Engage's
# sample.
_LISTS = {
    "items": "item",
    "discounts": "discount",
    "paymentMethods": "paymentMethod",
    "taxDetails": "taxDetail",
    "usedBonusChecks": "usedBonusCheck",
    "usedPromotions": "usedPromotion",
}


def _extra_data_entries(element: etree._Element) -> list[dict[str, Any]]:
    return [{"name": entry.get("name"), "value": entry.text} for entry in element]


def _convert(section: str | None, element: etree._Element) -> Receipt:
    return Receipt.model_validate(
        element_object(element, _LISTS, {"extraData": _extra_data_entries}), context=FROM_TEXT
    )


TRANSACTIONS = Codec(
    layout=Layout(
        root="transactions", sections={None: "transaction"}, namespaces=(TRANSACTIONS_NAMESPACE, None)
    ),
    schema=Schema("transactions", TRANSACTIONS_NAMESPACE),
    convert=_convert,
    key=lambda element: child_text(element, "uniqueReceiptId"),
)


def read_transactions(source: XmlSource) -> Iterator[Record[Receipt] | RecordError]:
    """Stream a transactions file: a ``Record`` per valid receipt, a ``RecordError`` per invalid one."""
    return read_records(source, TRANSACTIONS)


def _extra_data(alias: str, entries: list[ExtraData]) -> Node:
    return (alias, None, [("item", {"name": entry.name}, entry.value or "") for entry in entries])


class TransactionWriter(DocumentWriter):
    """Writes ``<transactions>`` in Engage's namespace, one ``<transaction>`` per receipt."""

    root = "transactions"
    namespace = TRANSACTIONS_NAMESPACE

    def write(self, receipt: Receipt) -> None:
        self._write(("transaction", None, receipt_nodes(receipt)))


def receipt_nodes(receipt: Receipt) -> list[Node]:
    return model_nodes(receipt, _LISTS, special={"extraData": _extra_data})


def write_transactions(receipts: Iterable[Receipt]) -> bytes:
    """A complete transactions document as bytes."""
    out = BytesIO()
    with TransactionWriter(out) as writer:
        for receipt in receipts:
            writer.write(receipt)
    return out.getvalue()
