"""Import result files (spec A13): ``<importResult>`` with one ``<record>`` verdict per input record.

The server writes a result while it imports, so the writer streams records and puts the ``<summary>`` (counts
and file status) last. The SDK reads results back to settle its outbox; a result file is written by promoflow
itself, so its reader is strict: anything unexpected rejects the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from io import BytesIO
from typing import IO, Any

from lxml import etree
from pydantic import AwareDatetime, Field

from promoflow.wire.engage import ChannelType, WireModel
from promoflow.wire.xml._fields import NAMESPACE_PREFIX, Guid
from promoflow.wire.xml._parser import (
    Codec,
    Layout,
    RecordError,
    XmlRejected,
    XmlSource,
    read_records,
)
from promoflow.wire.xml._schema import Schema
from promoflow.wire.xml._writer import DocumentWriter, attributes

IMPORT_RESULT_NAMESPACE = NAMESPACE_PREFIX + "importResult"


class Verdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    CONFLICT_ALREADY_REDEEMED = "conflictAlreadyRedeemed"
    EXPIRED = "expired"
    NOT_FOUND = "notFound"
    INVALID = "invalid"


class FileStatus(StrEnum):
    PROCESSED = "processed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    """The same content was uploaded before: nothing applied again; records repeat the original's verdicts."""


class ResultRecord(WireModel):
    """The verdict on one input record (``index`` counts from 1 in the input's document order)."""

    index: int = Field(ge=1)
    verdict: Verdict
    key: str | None = Field(default=None, min_length=1)
    line: int | None = Field(default=None, ge=1)
    reason: str | None = Field(default=None, min_length=1)
    redeemed_on: AwareDatetime | None = None
    redemption_channel: ChannelType | None = None
    store_external_id: str | None = Field(default=None, min_length=1)
    unique_receipt_id: str | None = Field(default=None, min_length=1)
    contact_id: Guid | None = None

    @classmethod
    def invalid(cls, error: RecordError) -> ResultRecord:
        """The ``invalid`` verdict for a record the reader could not accept."""
        return cls(
            index=error.index, verdict=Verdict.INVALID, key=error.key, line=error.line, reason=error.reason
        )


class ResultSummary(WireModel):
    """The last element of a result: the file's status and the number of records per verdict."""

    file: str = Field(min_length=1)
    import_id: str | None = Field(default=None, min_length=1)
    status: FileStatus = FileStatus.PROCESSED
    reason: str | None = Field(default=None, min_length=1)
    line: int | None = Field(default=None, ge=1)
    counts: dict[Verdict, int] = Field(default_factory=lambda: dict.fromkeys(Verdict, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_RECORD_ATTRIBUTES = tuple((name, info.alias or name) for name, info in ResultRecord.model_fields.items())


def _record_attributes(record: ResultRecord) -> dict[str, str]:
    return attributes({alias: getattr(record, name) for name, alias in _RECORD_ATTRIBUTES})


def _summary_attributes(summary: ResultSummary) -> dict[str, str]:
    values: dict[str, Any] = {"status": summary.status, "reason": summary.reason, "line": summary.line}
    values["total"] = summary.total
    values.update({verdict.value: summary.counts.get(verdict, 0) for verdict in Verdict})
    return attributes(values)


class ImportResultWriter(DocumentWriter):
    """Streams ``<importResult>``: ``write()`` each verdict as it is decided; the summary is written on close.

    Call ``reject(reason)`` when the whole file is refused; records written before that stay in the file but
    the summary says ``rejected`` (and a rejected file changes nothing).
    """

    root = "importResult"

    def __init__(self, out: IO[bytes], *, file: str, import_id: str | None = None) -> None:
        super().__init__(out, attrib={"file": file, "importId": import_id})
        self.summary = ResultSummary(file=file, import_id=import_id)

    def write(self, record: ResultRecord) -> None:
        self.summary.counts[record.verdict] += 1
        self._write(("record", _record_attributes(record), ""))

    def write_values(self, values: Mapping[str, Any]) -> None:
        """Write one record from its attribute values by XML name (``index``, ``verdict``, ``redeemedOn`` …),
        without the model: for writers whose values are already valid (the server's stored verdicts), where the
        model would cost more than the writing. ``None`` values are left out."""
        self.summary.counts[Verdict(values["verdict"])] += 1
        self._write(("record", attributes(values), ""))

    def reject(self, reason: str, line: int | None = None) -> None:
        self.summary.status = FileStatus.REJECTED
        self.summary.reason = reason
        self.summary.line = line

    def _before_close(self) -> None:
        self._write(("summary", _summary_attributes(self.summary), ""))
        self.count -= 1  # the summary is no record


def write_import_result(
    file: str,
    records: Iterable[ResultRecord],
    *,
    import_id: str | None = None,
    rejected: XmlRejected | None = None,
) -> bytes:
    """A complete result document as bytes; pass ``rejected`` for a file refused as a whole."""
    out = BytesIO()
    with ImportResultWriter(out, file=file, import_id=import_id) as writer:
        for record in records:
            writer.write(record)
        if rejected is not None:
            writer.reject(rejected.reason, rejected.line)
    return out.getvalue()


# ------------------------------------------------------------------------------------------------ reading


def _convert(section: str | None, element: etree._Element) -> ResultRecord | ResultSummary:
    values: Mapping[str, str] = element.attrib
    if element.tag == "summary":
        root = element.getparent()
        assert root is not None
        counts = {verdict: int(values[verdict.value]) for verdict in Verdict}
        summary = ResultSummary.model_validate(
            {
                "file": root.get("file"),
                "importId": root.get("importId"),
                "status": values["status"],
                "reason": values.get("reason"),
                "line": values.get("line"),
                "counts": counts,
            }
        )
        if summary.total != int(values["total"]):
            raise ValueError(f"total {values['total']} is not the sum of the counts ({summary.total})")
        return summary
    return ResultRecord.model_validate(dict(values))


IMPORT_RESULT = Codec(
    layout=Layout(
        root="importResult",
        sections={None: ("record", "summary")},
        namespaces=(None, IMPORT_RESULT_NAMESPACE),
    ),
    schema=Schema("importResult"),
    convert=_convert,
)


def read_import_result(source: XmlSource) -> Iterator[ResultRecord | ResultSummary]:
    """Stream a result file: its records, then its summary last. Any fault raises ``XmlRejected``."""
    summary: ResultSummary | None = None
    for item in read_records(source, IMPORT_RESULT):
        if isinstance(item, RecordError):
            raise XmlRejected(f"result record {item.index}: {item.reason}", item.line)
        if summary is not None:
            raise XmlRejected("<summary> must be the last element of an import result", item.line)
        if isinstance(item.value, ResultSummary):
            summary = item.value
        yield item.value
    if summary is None:
        raise XmlRejected("the import result has no <summary>: it is incomplete")


def load_import_result(source: XmlSource) -> tuple[ResultSummary, list[ResultRecord]]:
    """A whole (small) result file in memory: the summary and the records."""
    records: list[ResultRecord] = []
    summary: ResultSummary | None = None
    for item in read_import_result(source):
        if isinstance(item, ResultSummary):
            summary = item
        else:
            records.append(item)
    assert summary is not None  # read_import_result raises otherwise
    return summary, records
