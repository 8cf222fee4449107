"""The XSDs shipped in ``promoflow/wire/xsd``: loading them, and validating one record at a time.

A multi-GB file cannot be validated in one go while streaming, so each XSD declares its record elements
globally and each record element is validated on its own (lxml validates a sub-element as if it were a
document root). Per-record validation of a redemption costs about 4 µs, so the XSD itself stays the checker.
"""

from __future__ import annotations

import threading
from importlib import resources
from importlib.abc import Traversable

from lxml import etree

_MAX_MESSAGES = 5
_MAX_REASON = 1000

XSD_FILES: dict[str, str] = {
    "transactions": "transactions.xsd",
    "contacts": "contacts.xsd",
    "promotions": "promotions.xsd",
    "redemptions": "redemptions.xsd",
    "importResult": "import-result.xsd",
    "promotionExport": "promotion-export.xsd",
}
"""Format name → XSD file name in ``promoflow/wire/xsd``."""


def xsd_file(name: str) -> Traversable:
    """The packaged XSD of format ``name`` (a key of ``XSD_FILES``), e.g. to publish it to integrators."""
    return resources.files("promoflow.wire").joinpath("xsd", XSD_FILES[name])


class Schema:
    """One compiled XSD plus the namespace its element names use in messages."""

    def __init__(self, name: str, namespace: str | None = None) -> None:
        self.name = name
        self.namespace = namespace
        self._local = threading.local()

    @property
    def xsd(self) -> etree.XMLSchema:
        # Compiled on first use (importing promoflow.wire.xml stays cheap for the SDK), once per thread
        # because a compiled schema keeps its error log on the object and so must not be shared by concurrent
        # importers.
        xsd: etree.XMLSchema | None = getattr(self._local, "xsd", None)
        if xsd is None:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            document = etree.fromstring(xsd_file(self.name).read_bytes(), parser)
            xsd = self._local.xsd = etree.XMLSchema(document)
        return xsd

    def problems(self, element: etree._Element) -> str | None:
        """None if ``element`` is valid against its global declaration, else the XSD messages on one line."""
        xsd = self.xsd
        if xsd.validate(element):
            return None
        messages = []
        for entry in list(xsd.error_log)[:_MAX_MESSAGES]:
            message = entry.message
            if self.namespace:
                message = message.replace(f"{{{self.namespace}}}", "")
            messages.append(message)
        reason = "; ".join(messages) or "does not match the XSD"
        return reason[:_MAX_REASON]
