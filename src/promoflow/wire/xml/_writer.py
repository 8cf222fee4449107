"""Streaming XML writing shared by every format: one record at a time onto a binary file object.

The SDK and the server own durability (temp file, fsync, rename); a writer only writes bytes. Records are
written through ``lxml.etree.xmlfile`` so memory stays constant however many records a file holds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from types import TracebackType
from typing import IO, Any, ClassVar, Self, TypeAlias
from uuid import UUID

from lxml import etree
from pydantic import BaseModel

Node: TypeAlias = "tuple[str, Mapping[str, str] | None, str | Sequence[Node]]"
"""An element to write: local name, attributes, and either its text or its child elements."""

# Characters XML 1.0 cannot carry at all; lxml refuses control characters itself but not U+FFFE/U+FFFF or
# lone surrogates, which would produce a file no parser accepts.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_INDENT = tuple("\n" + "  " * depth for depth in range(16))
_MAX_OFFSET = timedelta(hours=14)


def text(value: Any) -> str:
    """The XSD lexical form of a value: xs:boolean, xs:decimal without exponent, xs:dateTime with offset."""
    if type(value) is str:  # the common case first: writers spend most of their time here
        if _NOT_XML.search(value):
            return text_checked(value)
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        return text_checked(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be written as xs:decimal")
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return text(Decimal(repr(value)))
    if isinstance(value, datetime):
        return datetime_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to XML")


def text_checked(value: str) -> str:
    bad = _NOT_XML.search(value)
    if bad:
        raise ValueError(f"character {bad.group()!r} cannot be written to XML")
    return value


def datetime_text(value: datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("datetimes on the wire need an offset (ISO 8601 with offset)")
    # xs:dateTime offsets are whole minutes within ±14:00; anything else is written as the same instant in
    # UTC.
    if offset % timedelta(minutes=1) or abs(offset) > _MAX_OFFSET:
        value = value.astimezone(UTC)
    if not 1 <= value.year <= 9999:
        raise ValueError(f"year {value.year} cannot be written")
    timespec = "seconds" if value.microsecond == 0 else "microseconds"
    return value.isoformat(timespec=timespec)


def model_nodes(
    model: BaseModel,
    lists: Mapping[str, str],
    special: Mapping[str, Any] | None = None,
    skip: Iterable[str] = (),
) -> list[Node]:
    """Child elements of ``model`` in field order, named by alias; ``None`` fields are left out.

    ``lists`` names the item element of each list field (``items`` → ``item``); ``special`` maps an alias to a
    function that builds that field's nodes itself.
    """
    nodes: list[Node] = []
    skipped = set(skip)
    for name, alias in _aliases(type(model)):
        value = getattr(model, name)
        if value is None or alias in skipped:
            continue
        if special and alias in special:
            nodes.append(special[alias](alias, value))
        elif isinstance(value, BaseModel):
            nodes.append((alias, None, model_nodes(value, lists, special)))
        elif isinstance(value, list):
            item_name = lists[alias]
            children: list[Node] = []
            for item in value:
                if isinstance(item, BaseModel):
                    children.append((item_name, None, model_nodes(item, lists, special)))
                else:
                    children.append((item_name, None, text(item)))
            nodes.append((alias, None, children))
        else:
            nodes.append((alias, None, text(value)))
    return nodes


@functools.cache
def _aliases(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    return tuple((name, info.alias or name) for name, info in model.model_fields.items())


def attributes(values: Mapping[str, Any]) -> dict[str, str]:
    """XML attributes from ``values``, leaving out ``None``."""
    return {name: text(value) for name, value in values.items() if value is not None}


class DocumentWriter:
    """Base of the streaming writers: root element, optional sections, records written as they come.

    Use as a context manager; the closing tags are written on a clean exit only, so a failed write leaves an
    incomplete document that no reader accepts.
    """

    root: ClassVar[str]
    namespace: ClassVar[str | None] = None

    def __init__(self, out: IO[bytes], *, attrib: Mapping[str, Any] | None = None) -> None:
        self._out = out
        self._attrib = attributes(attrib or {})
        self._stack = ExitStack()
        self._xf: Any = None
        self._section: tuple[str, AbstractContextManager[Any]] | None = None
        self._closed = False
        self.count = 0
        """Records written so far."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            self._stack.pop_all()  # leave the document unterminated; do not write end tags after a failure

    def open(self) -> None:
        xf = self._stack.enter_context(etree.xmlfile(self._out, encoding="utf-8"))
        xf.write_declaration()
        nsmap = {None: self.namespace} if self.namespace else None
        self._stack.enter_context(xf.element(self._q(self.root), self._attrib, nsmap=nsmap))
        self._xf = xf

    def close(self) -> None:
        """Close the open section and the root: the document is complete."""
        if self._closed:
            return
        self._before_close()
        self._leave_section()
        self._xf.write("\n")
        self._closed = True
        self._stack.close()

    def _before_close(self) -> None:
        """Hook for writers with a trailer (the import result's summary)."""

    def _q(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}" if self.namespace else name

    def _enter_section(self, name: str) -> None:
        if self._section is not None and self._section[0] == name:
            return
        self._leave_section()
        self._xf.write(_INDENT[1])
        context = self._xf.element(self._q(name))
        context.__enter__()
        self._section = (name, context)

    def _leave_section(self) -> None:
        if self._section is not None:
            self._xf.write(_INDENT[1])
            self._section[1].__exit__(None, None, None)
            self._section = None

    def _write(self, node: Node) -> None:
        depth = 2 if self._section is not None else 1
        self._xf.write(_INDENT[depth])
        if self.namespace:
            self._emit(node, depth)
        else:
            # Building the record as a small tree and writing it at once is twice as fast as nested
            # xf.element() contexts; with a namespace it would repeat the xmlns declaration on every record.
            self._xf.write(_build(node, depth))
        self.count += 1

    def _emit(self, node: Node, depth: int) -> None:
        name, attrib, content = node
        xf = self._xf
        with xf.element(self._q(name), attrib or {}):
            if isinstance(content, str):
                if content:
                    xf.write(content)
            elif content:
                inner = _INDENT[depth + 1]
                for child in content:
                    xf.write(inner)
                    self._emit(child, depth + 1)
                xf.write(_INDENT[depth])


def _build(node: Node, depth: int) -> etree._Element:
    name, attrib, content = node
    element = etree.Element(name, attrib) if attrib else etree.Element(name)
    if isinstance(content, str):
        if content:
            element.text = content
    elif content:
        inner = _INDENT[depth + 1]
        element.text = inner
        child = element
        for child_node in content:
            child = _build(child_node, depth + 1)
            child.tail = inner
            element.append(child)
        child.tail = _INDENT[depth]
    return element
