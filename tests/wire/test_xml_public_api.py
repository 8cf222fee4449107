"""The public surface of promoflow.wire.xml is deliberate: pinned here."""

from __future__ import annotations

import promoflow.wire.xml as xml

EXPECTED = {
    # errors and records
    "XmlRejected",
    "Record",
    "RecordError",
    "XmlSource",
    "MAX_RECORD_BYTES",
    # dispatch by kind
    "read_file",
    "check_file",
    # transactions
    "TRANSACTIONS_NAMESPACE",
    "read_transactions",
    "write_transactions",
    "TransactionWriter",
    # contacts
    "CONTACTS_NAMESPACE",
    "ContactRecord",
    "ContactPreferences",
    "read_contacts",
    "write_contacts",
    "ContactWriter",
    # promotion import
    "PROMOTIONS_NAMESPACE",
    "PromotionUpsert",
    "PromotionAssignment",
    "PromotionImportItem",
    "ImportChannel",
    "ImportPresentation",
    "read_promotions",
    "write_promotions",
    "PromotionImportWriter",
    # redemptions
    "REDEMPTIONS_NAMESPACE",
    "Redemption",
    "read_redemptions",
    "write_redemptions",
    "RedemptionWriter",
    # import results
    "IMPORT_RESULT_NAMESPACE",
    "Verdict",
    "FileStatus",
    "ResultRecord",
    "ResultSummary",
    "ImportResultWriter",
    "read_import_result",
    "load_import_result",
    "write_import_result",
    # promotion export
    "PROMOTION_EXPORT_NAMESPACE",
    "ExportChange",
    "ExportChannel",
    "ExportedPromotion",
    "StoreType",
    "read_promotion_export",
    "write_promotion_export",
    "PromotionExportWriter",
    # names and folders
    "FileKind",
    "FileName",
    "InvalidFileName",
    "file_name",
    "parse_file_name",
    "result_file_name",
    "result_files_for",
    "RESULT_SUFFIX",
    "INTEGRATION_DIR",
    "TRANSACTION_IMPORT_DIR",
    "CONTACT_IMPORT_DIR",
    "PROMOTION_IMPORT_DIR",
    "REDEMPTION_IMPORT_DIR",
    "PROMOTION_EXPORT_DIR",
    "IMPORT_RESULTS_DIR",
    "PROCESSED_DIR",
    "IMPORT_DIRS",
    # the XSDs
    "XSD_FILES",
    "xsd_file",
}


def test_public_surface_is_pinned() -> None:
    assert set(xml.__all__) == EXPECTED
    assert len(xml.__all__) == len(EXPECTED)


def test_every_public_name_exists() -> None:
    for name in xml.__all__:
        assert getattr(xml, name) is not None, name
