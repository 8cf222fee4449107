"""The one hardened, streaming XML reader behind every format.

Files arrive from integrators over FTP and can be several GB, so nothing here builds a whole tree: lxml's
``iterparse`` hands over one element at a time and every finished record is cleared and unlinked before the
next. Hostile input is refused as a whole file (``XmlRejected``) before any record is seen when possible: a
DOCTYPE of any kind (billion laughs, quadratic blow-up, external entities, external DTDs), text that is not
well-formed, a wrong root element, or a single record so large that it could exhaust memory.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeAlias, TypeVar

from lxml import etree

from promoflow.wire.engage import error_text
from promoflow.wire.xml._schema import Schema

T = TypeVar("T")

XmlSource: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]"
"""A path (``str`` is always a path, never XML text), the document's bytes, or a binary file object."""

MAX_RECORD_BYTES = 32 * 1024 * 1024
"""A single record larger than this is refused: one receipt of 5,000 lines is about 5 MB."""

_PROLOG_SCAN_BYTES = 64 * 1024
_CHUNK = 64 * 1024
# The first start tag of an element, in an ASCII-compatible encoding: '<' followed by a name start character.
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_:\x80-\xff]")
# A DOCTYPE is the only way to declare entities, so refusing it refuses every entity attack. UTF-16 spellings
# are included because the scan runs on raw bytes; libxml2's own DOCTYPE report is checked as well, in
# _Document.check_root, for a DOCTYPE the scan cannot see (after a prolog longer than the scan).
_DOCTYPE_MARKERS = tuple(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)


class XmlRejected(Exception):
    """The whole file is refused: not well-formed, a DOCTYPE or entity declaration, wrong root, or too large.

    A rejected file changes nothing; its import result carries ``reason`` at file level.
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"{reason} (line {line})" if line else reason)


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    """One record that passed the XSD and the model: ``index`` counts records from 1 in document order."""

    index: int
    line: int | None
    value: T


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record that did not; the rest of the file is still read. ``key`` is its own id when readable."""

    index: int
    line: int | None
    reason: str
    key: str | None = None


@dataclass(frozen=True)
class Layout:
    """Where the records of a format sit.

    ``sections`` maps a container's local name to the local name(s) of its records; the key ``None`` means
    records directly under the root (``<promotionRedemptions><redemption>``). Any other key is a section
    element under the root (``<promotions><assign><assignment>``). ``namespaces`` lists the accepted
    namespaces of the document, the first one being the namespace of the XSD (``None``: no namespace).
    """

    root: str
    sections: Mapping[str | None, str | tuple[str, ...]]
    namespaces: tuple[str | None, ...] = (None,)


@dataclass(frozen=True)
class Codec(Generic[T]):
    """What a format adds to the shared reader: layout, XSD, and how a valid element becomes a value."""

    layout: Layout
    schema: Schema
    convert: Callable[[str | None, etree._Element], T]
    key: Callable[[etree._Element], str | None] = field(default=lambda element: None)


# --------------------------------------------------------------------------------------- the parser factory


class _GuardedInput:
    """The file object lxml reads: refuses a DOCTYPE before libxml2 sees it, and counts the bytes read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.consumed = 0
        head = b""
        while len(head) < _PROLOG_SCAN_BYTES:
            chunk = raw.read(_PROLOG_SCAN_BYTES - len(head))
            if not chunk:
                break
            head += chunk
            if _FIRST_ELEMENT.search(head):
                break
        start = _FIRST_ELEMENT.search(head)
        prolog = head[: start.start()] if start else head
        if any(marker in prolog for marker in _DOCTYPE_MARKERS):
            raise XmlRejected("DOCTYPE and entity declarations are not allowed", _line_of(prolog))
        self._head = head

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else _CHUNK
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._raw.read(size)
        self.consumed += len(data)
        return data


def _line_of(prolog: bytes) -> int:
    for marker in _DOCTYPE_MARKERS:
        position = prolog.find(marker)
        if position >= 0:
            return prolog.count(b"\n", 0, position) + 1
    return 1


def hardened_iterparse(stream: Any) -> etree.iterparse:
    """The only way promoflow parses XML: streaming; no entities, DTD or network; libxml2's size limits on."""
    return etree.iterparse(
        stream,
        events=("end",),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
        remove_comments=True,
        remove_pis=True,
    )


@contextmanager
def open_source(source: XmlSource) -> Iterator[IO[bytes]]:
    """A binary stream over ``source``; files opened here are closed here, caller's file objects are not."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


def _syntax_error(exc: etree.XMLSyntaxError, context: etree.iterparse) -> XmlRejected:
    # The exception text of iterparse is sometimes only "no element found"; the parser's own log has the
    # cause.
    for entry in context.error_log:
        if entry.level_name == "FATAL":
            return XmlRejected(f"not well-formed: {entry.message}", entry.line or None)
    message = exc.msg or "not well-formed"
    if message.startswith("no element found"):
        return XmlRejected("not well-formed: the document is empty or has no root element")
    return XmlRejected(f"not well-formed: {message}", exc.lineno or None)


# ------------------------------------------------------------------------------------------ the record loop


def _split(tag: str) -> tuple[str | None, str]:
    if tag[:1] == "{":
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _qualified(namespace: str | None, local: str) -> str:
    return f"{{{namespace}}}{local}" if namespace else local


def _release(element: etree._Element) -> None:
    """Free a finished element and everything before it at its level: memory stays flat for any file size."""
    # libxml2 parses ahead of the events, so the text after an element may or may not be there yet: it is
    # checked now, and once more (as a previous sibling's tail) when the next element is released.
    _refuse_text(element.tail, element)
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while (previous := element.getprevious()) is not None:
            _refuse_text(previous.tail, previous)
            del parent[0]


def _refuse_text(text: str | None, where: etree._Element) -> None:
    # Text between records is not allowed by any of the XSDs (element-only content); it signals a broken
    # writer.
    if text and not text.isspace():
        raise XmlRejected(f"text {text.strip()[:40]!r} is not allowed between records", where.sourceline)


class _Document:
    """State of one pass over a file: the root, its namespace and the record count."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.root: etree._Element | None = None
        self.namespace: str | None = None
        self.index = 0
        self.flat = None in layout.sections
        self.record_tags: dict[str | None, frozenset[str]] = {}
        self.section_tags: dict[str, str] = {}

    def check_root(self, element: etree._Element) -> etree._Element:
        tree = element.getroottree()
        docinfo = tree.docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise XmlRejected("DOCTYPE and entity declarations are not allowed")
        root = tree.getroot()
        namespace, local = _split(root.tag)
        if local != self.layout.root:
            raise XmlRejected(f"root element must be <{self.layout.root}>, found <{local}>", root.sourceline)
        if namespace not in self.layout.namespaces:
            accepted = " or ".join(repr(ns) if ns else "no namespace" for ns in self.layout.namespaces)
            raise XmlRejected(
                f"root element is in namespace {namespace!r}; expected {accepted}", root.sourceline
            )
        _refuse_text(root.text, root)
        self.root, self.namespace = root, namespace
        self.record_tags = {
            section: frozenset(
                _qualified(namespace, name) for name in ((records,) if isinstance(records, str) else records)
            )
            for section, records in self.layout.sections.items()
        }
        self.section_tags = {
            _qualified(namespace, section): section for section in self.layout.sections if section is not None
        }
        return root

    def candidate(
        self, section: str | None, element: etree._Element
    ) -> tuple[int, str | None, etree._Element] | RecordError:
        self.index += 1
        if element.tag in self.record_tags[section]:
            return self.index, section, element
        return self.unexpected(element)

    def unexpected(self, element: etree._Element) -> RecordError:
        namespace, local = _split(element.tag)
        container = element.getparent()
        where = local_name(container.tag) if container is not None else ""
        if namespace != self.namespace:
            reason = f"element <{local}> in namespace {namespace!r} is not expected in <{where}>"
        else:
            reason = f"element <{local}> is not expected in <{where}>"
        return RecordError(self.index, element.sourceline, reason)


def iter_elements(
    source: XmlSource, layout: Layout, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[tuple[int, str | None, etree._Element] | RecordError]:
    """Each record element with its index and section, or a RecordError for an element that is no record.

    The element is cleared as soon as the consumer asks for the next one: convert it before that.
    """
    with open_source(source) as raw:
        stream = _GuardedInput(raw)
        context = hardened_iterparse(stream)
        document = _Document(layout)
        mark = 0
        try:
            for _, element in context:
                root = document.root
                if root is None:
                    root = document.check_root(element)
                parent = element.getparent()
                if parent is None:  # the end of the root: only the last child's tail is left to check
                    if len(element):
                        _refuse_text(element[-1].tail, element[-1])
                    continue
                if stream.consumed - mark > max_record_bytes:
                    raise XmlRejected(f"a record is larger than {max_record_bytes} bytes", element.sourceline)
                if parent is root:
                    if document.flat:
                        yield document.candidate(None, element)
                    elif element.tag in document.section_tags:
                        _refuse_text(element.text, element)
                        if len(element):
                            _refuse_text(element[-1].tail, element[-1])
                    else:
                        document.index += 1
                        yield document.unexpected(element)
                    _release(element)
                    mark = stream.consumed
                elif not document.flat and parent.getparent() is root:
                    section = document.section_tags.get(parent.tag)
                    if section is not None:
                        yield document.candidate(section, element)
                        _release(element)
                        mark = stream.consumed
        except etree.XMLSyntaxError as exc:
            raise _syntax_error(exc, context) from None


def read_records(
    source: XmlSource, codec: Codec[T], *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Record[T] | RecordError]:
    """Stream a file through ``codec``: per record the XSD, then the model; one bad record stops nothing."""
    canonical = codec.layout.namespaces[0]
    for item in iter_elements(source, codec.layout, max_record_bytes=max_record_bytes):
        if isinstance(item, RecordError):
            yield item
            continue
        index, section, element = item
        line = element.sourceline
        namespace = _split(element.tag)[0]
        if namespace != canonical:
            _retag(element, namespace, canonical)
        problems = codec.schema.problems(element)
        if problems:
            yield RecordError(index, line, problems, codec.key(element))
            continue
        try:
            value = codec.convert(section, element)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            yield RecordError(index, line, describe_error(exc), codec.key(element))
            continue
        yield Record(index, line, value)


def check_records(source: XmlSource, layout: Layout, *, max_record_bytes: int = MAX_RECORD_BYTES) -> int:
    """Read the whole file without validating records: the number of records, or XmlRejected.

    Importers that must change nothing when a file is rejected run this first: file-level faults (such as
    truncation) can only be seen at the end of a stream.
    """
    count = 0
    for _ in iter_elements(source, layout, max_record_bytes=max_record_bytes):
        count += 1
    return count


def _retag(element: etree._Element, source_ns: str | None, target_ns: str | None) -> None:
    # The XSD has one target namespace; a document using the other accepted spelling is mapped onto it so a
    # single schema validates both. Elements of foreign namespaces are left alone and fail the XSD.
    for node in element.iter():
        tag = node.tag
        if not isinstance(tag, str):
            continue
        namespace, local = _split(tag)
        if namespace == source_ns:
            node.tag = _qualified(target_ns, local)


def describe_error(exc: Exception) -> str:
    """A one-line reason for a model error: ``items.0.quantity: Input should be a valid decimal``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for error in errors()[:5]:
            location = ".".join(str(part) for part in error.get("loc", ()))
            message = error_text(error)
            parts.append(f"{location}: {message}" if location else message)
        return "; ".join(parts)
    return str(exc)


def child_text(element: etree._Element, name: str) -> str | None:
    """The stripped text of the first direct child called ``name`` (any namespace), for error keys."""
    for child in element:
        if isinstance(child.tag, str) and local_name(child.tag) == name:
            text = (child.text or "").strip()
            return text[:255] or None
    return None


def element_object(
    element: etree._Element,
    lists: Mapping[str, str],
    special: Mapping[str, Callable[[etree._Element], Any]] | None = None,
) -> dict[str, Any]:
    """The JSON object an XSD-valid record element stands for, keyed by local names.

    Elements named in ``lists`` are wrappers of list entries; elements with children are objects; leaves are
    their stripped text, and an empty leaf counts as absent (the XSD decides where empty is allowed).
    ``special`` maps a local name to a function that reads that element itself.
    """
    data: dict[str, Any] = {}
    for child in element:
        name = local_name(child.tag)
        if special and name in special:
            data[name] = special[name](child)
        elif name in lists:
            data[name] = [element_object(entry, lists, special) for entry in child]
        elif len(child):
            data[name] = element_object(child, lists, special)
        else:
            value = (child.text or "").strip()
            if value:
                data[name] = value
    return data
