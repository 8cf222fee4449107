"""Dispatch by file kind, for the server's importer: it learns the kind from the folder and file name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from promoflow.wire.xml._contacts import CONTACTS
from promoflow.wire.xml._export import PROMOTION_EXPORT
from promoflow.wire.xml._names import FileKind
from promoflow.wire.xml._parser import (
    MAX_RECORD_BYTES,
    Codec,
    Record,
    RecordError,
    XmlSource,
    check_records,
    read_records,
)
from promoflow.wire.xml._promotions import PROMOTIONS
from promoflow.wire.xml._redemptions import REDEMPTIONS
from promoflow.wire.xml._transactions import TRANSACTIONS

CODECS: dict[FileKind, Codec[Any]] = {
    FileKind.TRANSACTIONS: TRANSACTIONS,
    FileKind.CONTACTS: CONTACTS,
    FileKind.PROMOTIONS: PROMOTIONS,
    FileKind.REDEMPTIONS: REDEMPTIONS,
    FileKind.PROMOTION_EXPORT: PROMOTION_EXPORT,
}


def read_file(
    kind: FileKind | str, source: XmlSource, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Record[Any] | RecordError]:
    """Stream any record file by kind: the value type is the one of ``read_<kind>``."""
    return read_records(source, CODECS[FileKind(kind)], max_record_bytes=max_record_bytes)


def check_file(kind: FileKind | str, source: XmlSource, *, max_record_bytes: int = MAX_RECORD_BYTES) -> int:
    """Read a whole file for file-level faults only; the number of records, or ``XmlRejected``.

    A stream can turn out to be truncated or broken at its very end, after records were read. An importer that
    must change nothing for a rejected file runs this first (about 3 s per million redemptions), or applies
    the records in one transaction that it rolls back on ``XmlRejected``.
    """
    return check_records(source, CODECS[FileKind(kind)].layout, max_record_bytes=max_record_bytes)
