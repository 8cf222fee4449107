"""FTP folders and file names of the file transfer (spec A13, Part B §9.2).

Names follow Engage's convention ``YYYYMMDDHHmmss_<seq|storeId>_<type>.xml``; the middle part is only needed
when several senders may upload in the same second, so a name without it is valid too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType


class FileKind(StrEnum):
    """The ``<type>`` part of a file name."""

    TRANSACTIONS = "transactions"
    CONTACTS = "contacts"
    PROMOTIONS = "promotions"
    REDEMPTIONS = "redemptions"
    PROMOTION_EXPORT = "promotionexport"


INTEGRATION_DIR = "/integration"
TRANSACTION_IMPORT_DIR = "/integration/transactionImport"
CONTACT_IMPORT_DIR = "/integration/contactImport"
PROMOTION_IMPORT_DIR = "/integration/promotionImport"
REDEMPTION_IMPORT_DIR = "/integration/promotionRedemptionImport"
PROMOTION_EXPORT_DIR = "/integration/promotionExport"
IMPORT_RESULTS_DIR = "/integration/importResults"
PROCESSED_DIR = "/integration/processed"

IMPORT_DIRS = MappingProxyType(
    {
        FileKind.TRANSACTIONS: TRANSACTION_IMPORT_DIR,
        FileKind.CONTACTS: CONTACT_IMPORT_DIR,
        FileKind.PROMOTIONS: PROMOTION_IMPORT_DIR,
        FileKind.REDEMPTIONS: REDEMPTION_IMPORT_DIR,
    }
)
"""The folder (under the tenant's FTP root) each kind of import file is uploaded to."""

RESULT_SUFFIX = ".result.xml"

# The sender part becomes part of a path on the server: letters, digits, '-', '_' and '.' only, no leading
# dot.
_SENDER = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}")
_NAME = re.compile(
    r"(?P<stamp>\d{14})(?:_(?P<sender>[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}))?_(?P<kind>[A-Za-z]+)\.(?i:xml)"
)
_KINDS = {kind.value: kind for kind in FileKind}


class InvalidFileName(ValueError):
    """A file name that does not follow ``YYYYMMDDHHmmss_<seq|storeId>_<type>.xml``."""


@dataclass(frozen=True, slots=True)
class FileName:
    """A parsed file name. ``timestamp`` is naive: the name does not say which zone the sender used."""

    kind: FileKind
    timestamp: datetime
    sender: str | None


def file_name(kind: FileKind | str, when: datetime, seq_or_store: str = "") -> str:
    """``YYYYMMDDHHmmss_<seq|storeId>_<type>.xml``, stamped with the wall-clock time of ``when`` as given."""
    kind = FileKind(kind)
    stamp = when.strftime("%Y%m%d%H%M%S")
    if not seq_or_store:
        return f"{stamp}_{kind.value}.xml"
    if not _SENDER.fullmatch(seq_or_store):
        raise InvalidFileName(
            f"{seq_or_store!r}: a sequence number or store id has 1-64 letters, digits, '-', '_' or '.'"
        )
    return f"{stamp}_{seq_or_store}_{kind.value}.xml"


def parse_file_name(name: str) -> FileName:
    """The kind, timestamp and sender of a file name, or ``InvalidFileName``. Type and extension: any case."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise InvalidFileName(f"{name!r} is not named YYYYMMDDHHmmss_<seq|storeId>_<type>.xml")
    kind = _KINDS.get(match["kind"].lower())
    if kind is None:
        known = ", ".join(_KINDS)
        raise InvalidFileName(f"{name!r}: unknown type {match['kind']!r} (one of {known})")
    try:
        timestamp = datetime.strptime(match["stamp"], "%Y%m%d%H%M%S")
    except ValueError:
        raise InvalidFileName(f"{name!r}: {match['stamp']} is not a valid YYYYMMDDHHmmss timestamp") from None
    return FileName(kind=kind, timestamp=timestamp, sender=match["sender"])


_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_RESULT_NAME = re.compile(rf"(?:(?P<file>.+)\.)?(?P<id>{_GUID})" + re.escape(RESULT_SUFFIX))


def _path_safe(name: str) -> bool:
    """Whether an uploaded file's name can be part of a result file's name (it was refused, maybe for itself)."""
    return (
        0 < len(name) <= 200
        and not name.startswith(".")
        and name.isprintable()
        and not set(name) & set("/\\")
    )


def result_file_name(name: str, import_id: uuid.UUID | str | None = None) -> str:
    """The name of the import result of one upload: ``<file name>.<import id>.result.xml`` (every import has its
    own, however often a name is uploaded), or ``<import id>.result.xml`` when the upload's name cannot be part
    of a file name (an upload refused for its name). Without ``import_id``: ``<file name>.result.xml``, the name
    promoflow wrote before every import had its own; only for reading results of old servers."""
    if import_id is None:
        return name + RESULT_SUFFIX
    guid = str(uuid.UUID(str(import_id)))
    return f"{name}.{guid}{RESULT_SUFFIX}" if _path_safe(name) else f"{guid}{RESULT_SUFFIX}"


def result_files_for(name: str, listing: Iterable[str]) -> list[str]:
    """The result files (among the names of an ``importResults`` listing) of the uploads named ``name``: one per
    import of that name, sorted, plus the old ``<name>.result.xml`` if present. Which upload each belongs to is
    its ``importId`` (the 226 reply named it)."""
    legacy = result_file_name(name)
    found = []
    for entry in listing:
        match = _RESULT_NAME.fullmatch(entry)
        if (match is not None and match["file"] == name) or entry == legacy:
            found.append(entry)
    return sorted(found)
