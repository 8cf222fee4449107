"""Promotion import (Part B §9.3, spec A13): ``<promotions>`` of ``<createOrUpdate>`` and ``<assign>``.

Records keep their document order across sections: the importer applies them in that order, so an assignment
may name a promotion created earlier in the same file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from io import BytesIO

from lxml import etree
from pydantic import Field, field_validator, model_validator

from promoflow.wire.engage import FROM_TEXT, ChannelTypeIn, ValueType, ValueTypeIn, WireDate, WireModel
from promoflow.wire.xml._fields import NAMESPACE_PREFIX, Guid
from promoflow.wire.xml._parser import (
    Codec,
    Layout,
    Record,
    RecordError,
    XmlSource,
    child_text,
    element_object,
    local_name,
    read_records,
)
from promoflow.wire.xml._schema import Schema
from promoflow.wire.xml._writer import DocumentWriter, model_nodes

PROMOTIONS_NAMESPACE = NAMESPACE_PREFIX + "promotions"

_LISTS = {"redemptionChannels": "redemptionChannel"}
_FILE_VALUE_TYPES = frozenset({ValueType.EXTERNALOFFER, ValueType.PERCENT, ValueType.MONEY, ValueType.MANUAL})


class ImportChannel(WireModel):
    """A redemption channel of an imported promotion; ``value`` is read by ``valueType`` as in the API."""

    type: ChannelTypeIn
    value_type: ValueTypeIn
    value: str | None = Field(default=None, min_length=1, max_length=450)
    instruction: str | None = Field(default=None, min_length=1, max_length=512)

    @field_validator("value_type")
    @classmethod
    def _file_value_type(cls, value: ValueType) -> ValueType:
        if value not in _FILE_VALUE_TYPES:
            raise ValueError("valueType must be EXTERNALOFFER, PERCENT, MONEY or MANUAL")
        return value


class ImportPresentation(WireModel):
    heading: str | None = Field(default=None, min_length=1, max_length=450)
    description: str | None = Field(default=None, min_length=1, max_length=4000)


class PromotionUpsert(WireModel):
    """A ``<createOrUpdate><promotion>``: create it, or update the promotion with this external id."""

    promotion_name: str = Field(min_length=1, max_length=450)
    external_promotion_id: str = Field(min_length=1, max_length=450)
    published: bool = True
    valid_from_date: WireDate | None = None
    valid_to_date: WireDate | None = None
    presentation: ImportPresentation | None = None
    redemption_channels: list[ImportChannel] | None = Field(default=None, max_length=10)

    @model_validator(mode="after")
    def _dates(self) -> PromotionUpsert:
        if self.valid_from_date and self.valid_to_date and self.valid_to_date < self.valid_from_date:
            raise ValueError("validToDate is before validFromDate")
        return self


class PromotionAssignment(WireModel):
    """An ``<assign><assignment>``: the promotion ``external_promotion_id`` for one contact."""

    external_promotion_id: str = Field(min_length=1, max_length=450)
    external_promotion_code_id: str | None = Field(default=None, min_length=1, max_length=450)
    contact_id: Guid | None = None
    external_contact_id: str | None = Field(default=None, min_length=1, max_length=255)
    valid_from_date: WireDate | None = None

    @model_validator(mode="after")
    def _contact(self) -> PromotionAssignment:
        if self.contact_id is None and self.external_contact_id is None:
            raise ValueError("an assignment needs a contactId or an externalContactId")
        return self


PromotionImportItem = PromotionUpsert | PromotionAssignment


def _convert(section: str | None, element: etree._Element) -> PromotionImportItem:
    data = element_object(element, _LISTS)
    if section == "assign":
        return PromotionAssignment.model_validate(data, context=FROM_TEXT)
    return PromotionUpsert.model_validate(data, context=FROM_TEXT)


def _key(element: etree._Element) -> str | None:
    if local_name(element.tag) == "assignment":
        return child_text(element, "externalPromotionCodeId") or child_text(element, "externalPromotionId")
    return child_text(element, "externalPromotionId")


PROMOTIONS = Codec(
    layout=Layout(
        root="promotions",
        sections={"createOrUpdate": "promotion", "assign": "assignment"},
        namespaces=(None, PROMOTIONS_NAMESPACE),
    ),
    schema=Schema("promotions"),
    convert=_convert,
    key=_key,
)


def read_promotions(source: XmlSource) -> Iterator[Record[PromotionImportItem] | RecordError]:
    """Stream a promotion import file in document order: upserts and assignments, or per-record errors."""
    return read_records(source, PROMOTIONS)


class PromotionImportWriter(DocumentWriter):
    """Writes ``<promotions>``; consecutive items of one kind share a section."""

    root = "promotions"

    def write(self, item: PromotionImportItem) -> None:
        if isinstance(item, PromotionAssignment):
            self._enter_section("assign")
            self._write(("assignment", None, model_nodes(item, _LISTS)))
        else:
            self._enter_section("createOrUpdate")
            self._write(("promotion", None, model_nodes(item, _LISTS)))


def write_promotions(items: Iterable[PromotionImportItem]) -> bytes:
    """A complete promotion import document as bytes."""
    out = BytesIO()
    with PromotionImportWriter(out) as writer:
        for item in items:
            writer.write(item)
    return out.getvalue()
