"""Promotion export (spec A14, Part B §9.3): assignments assigned, redeemed and deleted since the last export.

``<promotionExport>`` holds ``<assigned>``, ``<redeemed>`` and ``<deleted>`` sections of ``<promotion>``
elements. The server streams them straight from the database; integrators read them with the same per-record
tolerance as the imports, so one odd record never hides the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from io import BytesIO
from typing import IO

from lxml import etree
from pydantic import AwareDatetime, Field

from promoflow.wire.engage import ChannelType, ValueType, WireModel
from promoflow.wire.xml._fields import NAMESPACE_PREFIX, Guid
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
from promoflow.wire.xml._writer import DocumentWriter, model_nodes

PROMOTION_EXPORT_NAMESPACE = NAMESPACE_PREFIX + "promotionExport"

_LISTS = {"redemptionChannels": "redemptionChannel"}


class ExportChange(StrEnum):
    ASSIGNED = "assigned"
    REDEEMED = "redeemed"
    DELETED = "deleted"


class StoreType(StrEnum):
    RETAIL = "RETAIL"
    ECOM = "ECOM"


class ExportChannel(WireModel):
    type: ChannelType
    value_type: ValueType
    value: str | None = Field(default=None, min_length=1, max_length=4000)
    instruction: str | None = Field(default=None, min_length=1, max_length=4000)


_Text = Field(default=None, min_length=1, max_length=4000)


class ExportedPromotion(WireModel):
    """One assignment in an export; ``change`` is the section it is listed in."""

    change: ExportChange
    contact_id: Guid
    contact_key: str | None = _Text
    contact_type: str | None = _Text
    coupon_id: Guid
    promotion_id: Guid
    external_promotion_id: str | None = _Text
    external_promotion_code_id: str | None = _Text
    name: str | None = _Text
    heading: str | None = _Text
    description: str | None = _Text
    valid_from_date: AwareDatetime | None = None
    expire_date_time: AwareDatetime | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    redemption_channels: list[ExportChannel] | None = None
    assigned_date_time: AwareDatetime | None = None
    redeemed_date_time: AwareDatetime | None = None
    redeemed_channel: ChannelType | None = None
    store_id: str | None = _Text
    store_type: StoreType | None = None
    unique_receipt_id: str | None = _Text
    deleted_date_time: AwareDatetime | None = None


def _convert(section: str | None, element: etree._Element) -> ExportedPromotion:
    data = element_object(element, _LISTS)
    data["change"] = section
    return ExportedPromotion.model_validate(data)


PROMOTION_EXPORT = Codec(
    layout=Layout(
        root="promotionExport",
        sections={change.value: "promotion" for change in ExportChange},
        namespaces=(None, PROMOTION_EXPORT_NAMESPACE),
    ),
    schema=Schema("promotionExport"),
    convert=_convert,
    key=lambda element: child_text(element, "couponId"),
)


def read_promotion_export(source: XmlSource) -> Iterator[Record[ExportedPromotion] | RecordError]:
    """Stream an export file: a ``Record`` per valid ``<promotion>`` (its ``change`` set from its section)."""
    return read_records(source, PROMOTION_EXPORT)


class PromotionExportWriter(DocumentWriter):
    """Streams ``<promotionExport>``; consecutive promotions with the same ``change`` share a section."""

    root = "promotionExport"

    def __init__(
        self,
        out: IO[bytes],
        *,
        export_id: str | None = None,
        created_on: datetime | None = None,
        from_date_time: datetime | None = None,
        to_date_time: datetime | None = None,
    ) -> None:
        super().__init__(
            out,
            attrib={
                "exportId": export_id,
                "createdOn": created_on,
                "fromDateTime": from_date_time,
                "toDateTime": to_date_time,
            },
        )

    def write(self, promotion: ExportedPromotion) -> None:
        self._enter_section(promotion.change.value)
        self._write(("promotion", None, model_nodes(promotion, _LISTS, skip=("change",))))


def write_promotion_export(
    promotions: Iterable[ExportedPromotion],
    *,
    export_id: str | None = None,
    created_on: datetime | None = None,
    from_date_time: datetime | None = None,
    to_date_time: datetime | None = None,
) -> bytes:
    """A complete export document as bytes."""
    out = BytesIO()
    with PromotionExportWriter(
        out,
        export_id=export_id,
        created_on=created_on,
        from_date_time=from_date_time,
        to_date_time=to_date_time,
    ) as writer:
        for promotion in promotions:
            writer.write(promotion)
    return out.getvalue()
