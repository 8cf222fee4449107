"""File names and folders of the file transfer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promoflow.wire.xml import (
    IMPORT_DIRS,
    IMPORT_RESULTS_DIR,
    PROCESSED_DIR,
    PROMOTION_EXPORT_DIR,
    REDEMPTION_IMPORT_DIR,
    TRANSACTION_IMPORT_DIR,
    FileKind,
    FileName,
    InvalidFileName,
    file_name,
    parse_file_name,
    result_file_name,
)


def test_engage_example_name() -> None:
    assert file_name(FileKind.TRANSACTIONS, datetime(2022, 8, 8, 13, 47, 29), "471") == (
        "20220808134729_471_transactions.xml"
    )
    assert parse_file_name("20220808134729_471_transactions.xml") == FileName(
        FileKind.TRANSACTIONS, datetime(2022, 8, 8, 13, 47, 29), "471"
    )


@pytest.mark.parametrize("kind", list(FileKind))
def test_round_trip_for_every_kind(kind: FileKind) -> None:
    when = datetime(2024, 5, 1, 14, 3, 7, 999, tzinfo=UTC)
    name = file_name(kind.value, when, "store-12")
    parsed = parse_file_name(name)
    assert (parsed.kind, parsed.timestamp, parsed.sender) == (
        kind,
        datetime(2024, 5, 1, 14, 3, 7),
        "store-12",
    )


def test_sender_part_is_optional_and_case_of_type_is_free() -> None:
    assert file_name("contacts", datetime(2024, 5, 1), "") == "20240501000000_contacts.xml"
    assert parse_file_name("20240501000000_Contacts.XML").kind is FileKind.CONTACTS
    assert parse_file_name("20240501000000_store_7_redemptions.xml").sender == "store_7"


@pytest.mark.parametrize(
    "name",
    [
        "20240501000000_1_transactions.json",
        "2024050100000_1_transactions.xml",
        "20241301000000_1_transactions.xml",
        "20240501246000_1_transactions.xml",
        "20240501000000_1_receipts.xml",
        "20240501000000_../x_contacts.xml",
        "dir/20240501000000_1_contacts.xml",
        "20240501000000_1_contacts.xml.result.xml",
        "20240501000000_1 _contacts.xml",
    ],
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidFileName):
        parse_file_name(name)


@pytest.mark.parametrize("sender", ["../x", "a/b", "a b", ".hidden", "x" * 65])
def test_bad_sender_parts_are_refused(sender: str) -> None:
    with pytest.raises(InvalidFileName):
        file_name("redemptions", datetime(2024, 5, 1), sender)


def test_folders() -> None:
    assert TRANSACTION_IMPORT_DIR == "/integration/transactionImport"
    assert REDEMPTION_IMPORT_DIR == "/integration/promotionRedemptionImport"
    assert (PROMOTION_EXPORT_DIR, IMPORT_RESULTS_DIR, PROCESSED_DIR) == (
        "/integration/promotionExport",
        "/integration/importResults",
        "/integration/processed",
    )
    assert dict(IMPORT_DIRS) == {
        FileKind.TRANSACTIONS: "/integration/transactionImport",
        FileKind.CONTACTS: "/integration/contactImport",
        FileKind.PROMOTIONS: "/integration/promotionImport",
        FileKind.REDEMPTIONS: "/integration/promotionRedemptionImport",
    }
    assert result_file_name("20240501000000_1_contacts.xml") == "20240501000000_1_contacts.xml.result.xml"


def test_every_import_has_its_own_result_name() -> None:
    from promoflow.wire.xml import result_files_for

    name = "20240501000000_1_contacts.xml"
    a, b = "6f9619ff-8b86-d011-b42d-00cf4fc964ff", "0B5C41A5-3A51-4F0C-9F50-2A4E0F1B7C11"
    assert result_file_name(name, a) == f"{name}.{a}.result.xml"
    assert result_file_name(name, b) == f"{name}.{b.lower()}.result.xml"  # canonical GUID
    # a name that cannot be part of a file name: the import id alone
    for bad in ("..20240501000000_1_contacts.xml", "a/b.xml", "x\x00y", "", "x" * 201):
        assert result_file_name(bad, a) == f"{a}.result.xml"
    listing = [
        result_file_name(name, b),
        result_file_name(name, a),
        result_file_name("2" + name, a),  # another name
        result_file_name(name),  # an old server's
        f"{a}.result.xml",  # an upload refused for its name
        "notes.txt",
    ]
    assert result_files_for(name, listing) == sorted(
        [result_file_name(name, a), result_file_name(name, b), result_file_name(name)]
    )
    assert result_files_for("other.xml", listing) == []
