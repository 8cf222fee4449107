"""Response models of the imports API (extension); the wire package has no model for these."""

from __future__ import annotations

from ...wire.engage import Page, WireModel


class ImportRecordOut(WireModel):
    """The verdict on one record of an imported file (as in its result file)."""

    index: int
    verdict: str
    line: int | None = None
    key: str | None = None
    reason: str | None = None
    redeemed_on: str | None = None
    redemption_channel: str | None = None
    store_external_id: str | None = None
    unique_receipt_id: str | None = None
    contact_id: str | None = None


class ImportOut(WireModel):
    """An uploaded file and what became of it."""

    id: str
    file_name: str
    folder: str
    kind: str | None = None
    status: str
    size_bytes: int | None = None
    duplicate_of: str | None = None
    reason: str | None = None
    records_total: int | None = None
    records_done: int | None = None
    counts: dict[str, int] | None = None
    result_file: str | None = None
    received_on: str
    started_on: str | None = None
    finished_on: str | None = None


class ImportDetailOut(ImportOut):
    records: Page[ImportRecordOut]


ImportPage = Page[ImportOut]

__all__ = ["ImportDetailOut", "ImportOut", "ImportPage", "ImportRecordOut"]
