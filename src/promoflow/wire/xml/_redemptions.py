"""Redemption import, promoflow's own format (spec A13): ``<promotionRedemptions>`` of ``<redemption>``.

This is the hot format: a store's outbox may replay a million redemptions at once, and the SDK writes one
redemption per file. Each record is validated by the XSD itself (about 4 µs) and then by the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from io import BytesIO

from lxml import etree
from pydantic import Field

from promoflow.wire.engage import FROM_TEXT, ChannelType, ChannelTypeIn, RedemptionInstant, WireModel
from promoflow.wire.xml._fields import NAMESPACE_PREFIX, Guid
from promoflow.wire.xml._parser import (
    Codec,
    Layout,
    Record,
    RecordError,
    XmlSource,
    child_text,
    read_records,
)
from promoflow.wire.xml._schema import Schema
from promoflow.wire.xml._writer import DocumentWriter, model_nodes

REDEMPTIONS_NAMESPACE = NAMESPACE_PREFIX + "redemptions"


class Redemption(WireModel):
    """One redeemed assignment, as an integrator reports it after the sale."""

    coupon_id: Guid
    contact_id: Guid | None = None
    redemption_channel: ChannelTypeIn = ChannelType.OTHER
    redeemed_on: RedemptionInstant
    store_external_id: str | None = Field(default=None, min_length=1, max_length=255)
    unique_receipt_id: str | None = Field(default=None, min_length=1, max_length=255)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)


def _convert(section: str | None, element: etree._Element) -> Redemption:
    # The XSD has already checked the structure: every child is a leaf with a known name, and the reader has
    # mapped a namespaced document onto the XSD's (empty) namespace, so tags are plain local names.
    return Redemption.model_validate({child.tag: child.text for child in element}, context=FROM_TEXT)


REDEMPTIONS = Codec(
    layout=Layout(
        root="promotionRedemptions", sections={None: "redemption"}, namespaces=(None, REDEMPTIONS_NAMESPACE)
    ),
    schema=Schema("redemptions"),
    convert=_convert,
    key=lambda element: child_text(element, "couponId"),
)


def read_redemptions(source: XmlSource) -> Iterator[Record[Redemption] | RecordError]:
    """Stream a redemption file: a ``Record`` per valid ``<redemption>``, a ``RecordError`` per bad one."""
    return read_records(source, REDEMPTIONS)


class RedemptionWriter(DocumentWriter):
    """Writes ``<promotionRedemptions>`` one ``<redemption>`` at a time."""

    root = "promotionRedemptions"

    def write(self, redemption: Redemption) -> None:
        self._write(("redemption", None, model_nodes(redemption, {})))


def write_redemptions(redemptions: Iterable[Redemption]) -> bytes:
    """A complete redemption document as bytes (the SDK outbox writes one redemption per file)."""
    out = BytesIO()
    with RedemptionWriter(out) as writer:
        for redemption in redemptions:
            writer.write(redemption)
    return out.getvalue()
