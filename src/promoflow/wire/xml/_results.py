"""Import result files (spec A13): ``<importResult>`` with one ``<record>`` verdict per input record.

The server writes a result while it imports, so the writer streams records and puts the ``<summary>`` (counts
and file status) last. The SDK reads results back to settle its outbox; a result file is written by promoflow
itself, so its reader is strict: anything unexpected rejects the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from enum import Enum, StrEnum
from io import BytesIO
from types import TracebackType
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
from promoflow.wire.xml._writer import DocumentWriter, text

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
_VERDICTS: dict[str, Verdict] = {verdict.value: verdict for verdict in Verdict}
"""Verdicts by value: quicker than ``Verdict(value)`` for the plain strings ``write_values`` gets."""

# The result writer writes its text itself (no lxml): a record is one line of attributes, and building an lxml
# element per record cost about 13 µs of the importer's time per record. Everything an attribute value needs
# escaped: the markup characters, whitespace that attribute-value normalisation would turn into spaces, and
# every character XML 1.0 cannot carry at all (C0 controls, lone surrogates, U+FFFE/U+FFFF), which becomes
# U+FFFD instead of a broken document.
_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_REPLACEMENT = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\t": "&#9;",
    "\n": "&#10;",
    "\r": "&#13;",
}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
_DECLARATION = "<?xml version='1.0' encoding='utf-8'?>\n"
_FLUSH_RECORDS = 1024
"""Records collected as text before they are encoded and written to the stream at once."""


def _replace(match: re.Match[str]) -> str:
    return _REPLACEMENT.get(match.group(), "\ufffd")


def _escape(value: str) -> str:
    """``value`` as attribute-value text between double quotes."""
    return _SPECIAL.sub(_replace, value) if _SPECIAL.search(value) else value


def _xml_chars(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot carry replaced by U+FFFD (and nothing escaped)."""
    return _NOT_XML.sub("\ufffd", value)


def _other_text(value: Any) -> str:
    """The escaped XSD lexical form of a value that is not a plain ``str`` or ``int`` (enums, datetimes, …):
    ``text()`` of the other writers, but forbidden characters in strings become U+FFFD instead of an error."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        return _escape(str.__str__(value))
    return _escape(text(value))


_CHECKED_NAMES: set[str] = {alias for _, alias in _RECORD_ATTRIBUTES}


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(f"invalid attribute name {name!r}")
    _CHECKED_NAMES.add(name)


def _element(name: str, values: Iterable[tuple[str, Any]], end: str = "/>") -> str:
    """``<name a="…" …`` + ``end``, leaving out ``None`` values. The writer's hot path: the common cases
    (``str`` needing no escaping, ``int``) are handled inline."""
    names = _CHECKED_NAMES
    parts = ["<", name]
    for attr, value in values:
        if value is None:
            continue
        if attr not in names:
            _check_name(attr)
        cls = type(value)
        if cls is str:
            # Most values need no escaping; these checks are cheaper than the regex. isprintable() is False
            # for every control character, surrogate and U+FFFE/U+FFFF (and for some harmless characters,
            # such as non-ASCII spaces, which the regex then leaves as they are).
            if not (
                value.isprintable()
                and "&" not in value
                and "<" not in value
                and ">" not in value
                and '"' not in value
            ):
                value = _escape(value)
        elif cls is int:
            value = str(value)
        else:
            value = _other_text(value)
        parts.append(f' {attr}="{value}"')
    parts.append(end)
    return "".join(parts)


def _summary_attributes(summary: ResultSummary) -> dict[str, Any]:
    values: dict[str, Any] = {"status": summary.status, "reason": summary.reason, "line": summary.line}
    values["total"] = summary.total
    values.update({verdict.value: summary.counts.get(verdict, 0) for verdict in Verdict})
    return values


class ImportResultWriter(DocumentWriter):
    """Streams ``<importResult>``: ``write()`` each verdict as it is decided; the summary is written on close.

    Call ``reject(reason)`` when the whole file is refused; records written before that stay in the file but
    the summary says ``rejected`` (and a rejected file changes nothing).

    Unlike the other writers it writes its text itself rather than through lxml (records are flat attribute
    lists, and the importer writes one per input record): values are escaped here, and characters XML 1.0
    cannot carry become U+FFFD. Text is collected and written to ``out`` every ``_FLUSH_RECORDS`` records and
    on close. After an exception inside ``with`` the records so far are written but no closing tags.
    """

    root = "importResult"

    def __init__(self, out: IO[bytes], *, file: str, import_id: str | None = None) -> None:
        super().__init__(out)
        self._start = _element(self.root, (("file", file), ("importId", import_id)), ">")
        self._buffer: list[str] | None = None
        # The summary holds the names as a reader gets them back (and pydantic refuses lone surrogates, which a
        # file name decoded with surrogateescape can hold).
        self.summary = ResultSummary(
            file=_xml_chars(file), import_id=None if import_id is None else _xml_chars(import_id)
        )

    def open(self) -> None:
        if self._buffer is not None or self._closed:
            raise RuntimeError("the import result writer was opened already")
        self._buffer = [_DECLARATION, self._start]

    def write(self, record: ResultRecord) -> None:
        line = _element("record", [(alias, getattr(record, name)) for name, alias in _RECORD_ATTRIBUTES])
        self._add(line, record.verdict)

    def write_values(self, values: Mapping[str, Any]) -> None:
        """Write one record from its attribute values by XML name (``index``, ``verdict``, ``redeemedOn`` …),
        without the model: for writers whose values are already valid (the server's stored verdicts), where the
        model would cost more than the writing. ``None`` values are left out."""
        raw = values["verdict"]
        verdict = _VERDICTS.get(raw) if isinstance(raw, str) else None
        if verdict is None:
            verdict = Verdict(raw)  # ValueError for anything else
        self._add(_element("record", values.items()), verdict)

    def _add(self, line: str, verdict: Verdict) -> None:
        buffer = self._buffer
        if buffer is None:
            raise RuntimeError("the import result writer is " + ("closed" if self._closed else "not open"))
        buffer.append("\n  ")
        buffer.append(line)
        self.summary.counts[verdict] += 1
        self.count += 1
        if len(buffer) >= 2 * _FLUSH_RECORDS:
            self._flush()

    def _flush(self) -> None:
        buffer = self._buffer
        if buffer:
            # Every value was escaped, so the text holds no lone surrogates and encodes.
            data = "".join(buffer).encode("utf-8")
            buffer.clear()
            self._out.write(data)

    def reject(self, reason: str, line: int | None = None) -> None:
        self.summary.status = FileStatus.REJECTED
        self.summary.reason = reason
        self.summary.line = line

    def close(self) -> None:
        """Write the summary and the closing tag: the document is complete."""
        if self._closed:
            return
        buffer = self._buffer
        if buffer is None:
            raise RuntimeError("the import result writer is not open")
        buffer.append("\n  ")
        buffer.append(_element("summary", _summary_attributes(self.summary).items()))
        buffer.append(f"\n</{self.root}>")
        self._flush()
        self._buffer = None
        self._closed = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # Leave the document unterminated: the records written so far, no summary and no closing tags. A
        # stream that fails again here must not hide the exception that got us here.
        self._closed = True
        with suppress(Exception):
            self._flush()
        self._buffer = None


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
