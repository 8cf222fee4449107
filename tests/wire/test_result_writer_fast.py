"""The import result writer writes its XML text itself: escaping, forbidden characters, layout, validity against
the XSD, counts, and an unterminated document after a failure. Real files, read back with the strict reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from promoflow.wire.engage import ChannelType
from promoflow.wire.xml import (
    FileStatus,
    ImportResultWriter,
    ResultRecord,
    Verdict,
    XmlRejected,
    load_import_result,
    read_import_result,
)
from tests.wire._samples import GUID, WHEN
from tests.wire.test_xml_results import FILE, XSD

# Characters with a meaning in markup or that attribute-value normalisation would turn into spaces, and ones
# that need nothing special but must survive as they are (non-ASCII is written as UTF-8).
SPECIAL = ["&", "<", ">", '"', "'", "\t", "\n", "\r", "\r\n", "]]>", "&amp;", "&#10;", "é", "€", "😀", "\xa0",
           "\u2028", "\x7f", "\x85", "\ufffd"]  # fmt: skip
# Characters XML 1.0 cannot carry at all: each becomes U+FFFD.
FORBIDDEN = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f", "\ud800", "\udbff", "\udc00", "\udfff",
             "\ufffe", "\uffff"]  # fmt: skip


def write(
    path: Path, *, file: str = FILE, import_id: str | None = "imp-1", **writes: Any
) -> ImportResultWriter:
    """Write a result to ``path``: ``values`` (write_values dicts) and ``records`` (models), in that order."""
    with open(path, "wb") as out, ImportResultWriter(out, file=file, import_id=import_id) as writer:
        for values in writes.get("values", ()):
            writer.write_values(values)
        for record in writes.get("records", ()):
            writer.write(record)
        if "reject" in writes:
            writer.reject(*writes["reject"])
    return writer


def valid_document(path: Path) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    document = etree.parse(str(path), parser)
    XSD.assertValid(document)
    return document


@pytest.mark.parametrize("char", SPECIAL, ids=repr)
def test_special_characters_round_trip(tmp_path: Path, char: str) -> None:
    text = f"a{char}b"
    path = tmp_path / "result.xml"
    write(
        path,
        file=f"f{char}.xml",
        import_id=f"i{char}d",
        values=[{"index": 1, "verdict": "invalid", "reason": text, "key": text, "line": 3}],
        records=[
            ResultRecord(
                index=2,
                verdict=Verdict.CONFLICT_ALREADY_REDEEMED,
                key=text,
                redeemed_on=WHEN,
                redemption_channel=ChannelType.POS,
                store_external_id=text,
                unique_receipt_id=text,
            )
        ],
        reject=(text, 7),
    )
    document = valid_document(path)
    root = document.getroot()
    assert (root.get("file"), root.get("importId")) == (f"f{char}.xml", f"i{char}d")
    summary, (first, second) = load_import_result(path)
    assert first == ResultRecord(index=1, verdict=Verdict.INVALID, reason=text, key=text, line=3)
    assert (second.key, second.store_external_id, second.unique_receipt_id) == (text, text, text)
    assert second.redeemed_on == WHEN and second.redemption_channel is ChannelType.POS
    assert (summary.file, summary.import_id) == (f"f{char}.xml", f"i{char}d")
    assert (summary.status, summary.reason, summary.line) == (FileStatus.REJECTED, text, 7)


def test_escapes_as_character_references(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    write(path, values=[{"index": 1, "verdict": "invalid", "reason": "&<>\"\t\n\r'é"}])
    line = path.read_bytes().splitlines()[2]
    assert (
        line
        == '  <record index="1" verdict="invalid" reason="&amp;&lt;&gt;&quot;&#9;&#10;&#13;\'é"/>'.encode()
    )


@pytest.mark.parametrize("char", FORBIDDEN, ids=repr)
def test_forbidden_characters_become_replacement_characters(tmp_path: Path, char: str) -> None:
    path = tmp_path / "result.xml"
    text = f"a{char}b"
    write(
        path,
        file=f"f{char}.xml",
        values=[{"index": 1, "verdict": "invalid", "reason": text, "storeExternalId": text}],
        records=[ResultRecord.model_construct(index=2, verdict=Verdict.NOT_FOUND, key=text)],
        reject=(text, None),
    )
    valid_document(path)
    summary, (first, second) = load_import_result(path)
    assert first.reason == first.store_external_id == second.key == summary.reason == "a\ufffdb"
    assert summary.file == "f\ufffd.xml"


def test_a_surrogate_pair_in_a_str_is_two_lone_surrogates(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    write(path, values=[{"index": 1, "verdict": "invalid", "reason": "x\ud83d\ude00y"}])
    _, (record,) = load_import_result(path)
    assert record.reason == "x\ufffd\ufffdy"


def test_many_records_validate_and_read_back(tmp_path: Path) -> None:
    verdicts = list(Verdict)
    values = []
    for i in range(1, 5001):  # several flushes of the writer's buffer
        record: dict[str, Any] = {"index": i, "verdict": verdicts[i % len(verdicts)].value, "key": f"k-{i}"}
        record["line"] = i + 1 if i % 3 else None
        if i % 7 == 0:
            record.update(redeemedOn="2024-05-01T14:03:00+02:00", redemptionChannel="ECOM",
                          storeExternalId=f"store <{i}> & co", uniqueReceiptId=f"r-{i}")  # fmt: skip
        if i % 11 == 0:
            record.update(reason=f'"quoted"\n{i}', contactId=GUID)
        values.append(record)
    path = tmp_path / "result.xml"
    writer = write(path, values=values)
    assert writer.count == 5000
    document = valid_document(path)
    assert len(document.getroot()) == 5001  # the records and the summary
    summary, records = load_import_result(path)
    assert [r.index for r in records] == list(range(1, 5001))
    assert records[76].store_external_id == "store <77> & co" and records[76].redeemed_on == WHEN
    assert records[10].reason == '"quoted"\n11' and records[10].contact_id == GUID
    assert records[0].line == 2 and records[2].line is None
    assert summary.total == 5000
    assert summary.counts == {v: sum(1 for r in values if r["verdict"] == v.value) for v in Verdict}


def test_layout(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    write(path, values=[{"index": 1, "verdict": "applied", "key": "k"}, {"index": 2, "verdict": "notFound"}])
    assert path.read_text("utf-8").splitlines() == [
        "<?xml version='1.0' encoding='utf-8'?>",
        '<importResult file="20240501140300_471_redemptions.xml" importId="imp-1">',
        '  <record index="1" verdict="applied" key="k"/>',
        '  <record index="2" verdict="notFound"/>',
        '  <summary status="processed" total="2" applied="1" duplicate="0" conflictAlreadyRedeemed="0"'
        ' expired="0" notFound="1" invalid="0"/>',
        "</importResult>",
    ]


def test_empty_result(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    writer = write(path, import_id=None)
    assert writer.count == 0
    assert etree.parse(str(path)).getroot().attrib == {"file": FILE}
    summary, records = load_import_result(path)
    assert records == [] and summary.total == 0 and summary.import_id is None


@pytest.mark.parametrize("n", [2, 3000])
def test_unterminated_after_an_exception(tmp_path: Path, n: int) -> None:
    path = tmp_path / "result.xml"
    with (
        pytest.raises(RuntimeError, match="boom"),
        open(path, "wb") as out,
        ImportResultWriter(out, file=FILE) as writer,
    ):
        for i in range(1, n + 1):
            writer.write_values({"index": i, "verdict": "applied"})
        raise RuntimeError("boom")
    data = path.read_bytes()
    assert data.startswith(b"<?xml") and data.endswith(f'<record index="{n}" verdict="applied"/>'.encode())
    assert b"<summary" not in data and b"</importResult>" not in data
    with pytest.raises(XmlRejected):
        list(read_import_result(path))
    with pytest.raises(RuntimeError, match="closed"):
        writer.write_values({"index": n + 1, "verdict": "applied"})
    writer.close()  # no effect
    assert path.read_bytes() == data


def test_a_failing_record_is_not_written_or_counted(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    with open(path, "wb") as out, ImportResultWriter(out, file=FILE) as writer:
        writer.write_values({"index": 1, "verdict": "applied"})
        with pytest.raises(ValueError, match="offset"):
            writer.write(ResultRecord.model_construct(index=2, verdict=Verdict.APPLIED, redeemed_on=WHEN.replace(tzinfo=None)))  # fmt: skip
        with pytest.raises(ValueError):
            writer.write_values({"index": 2, "verdict": "great"})
        with pytest.raises(ValueError, match="attribute name"):
            writer.write_values({"index": 2, "verdict": "applied", "bad name": "x"})
        writer.write_values({"index": 2, "verdict": "applied"})
        assert writer.count == 2 and writer.summary.total == 2
    summary, records = load_import_result(path)
    assert [r.index for r in records] == [1, 2] and summary.counts[Verdict.APPLIED] == 2


def test_summary_counts(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    writer = write(
        path,
        values=[
            {"index": 1, "verdict": "applied"},
            {"index": 2, "verdict": Verdict.DUPLICATE},
            {"index": 3, "verdict": "expired", "line": 9},
            {"index": 4, "verdict": "applied", "reason": None, "key": None},
        ],
        records=[
            ResultRecord(index=5, verdict=Verdict.INVALID, reason="no"),
            ResultRecord(index=6, verdict=Verdict.CONFLICT_ALREADY_REDEEMED, key=GUID),
        ],
    )
    expected = {Verdict.APPLIED: 2, Verdict.DUPLICATE: 1, Verdict.CONFLICT_ALREADY_REDEEMED: 1,
                Verdict.EXPIRED: 1, Verdict.NOT_FOUND: 0, Verdict.INVALID: 1}  # fmt: skip
    assert writer.count == 6 and writer.summary.counts == expected
    summary, _ = load_import_result(path)
    assert summary == writer.summary
    assert summary.counts == expected and summary.total == 6 and summary.status is FileStatus.PROCESSED
    summary_element = etree.parse(str(path)).getroot()[-1]
    assert summary_element.tag == "summary" and summary_element.get("total") == "6"


def test_duplicate_status_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    with open(path, "wb") as out, ImportResultWriter(out, file=FILE) as writer:
        writer.write_values({"index": 1, "verdict": "applied"})
        writer.summary.status = FileStatus.DUPLICATE
        writer.summary.reason = "same content as import <abc> & co"
    valid_document(path)
    summary, _ = load_import_result(path)
    assert (summary.status, summary.reason) == (FileStatus.DUPLICATE, "same content as import <abc> & co")


def test_open_and_close_without_a_with(tmp_path: Path) -> None:
    path = tmp_path / "result.xml"
    with open(path, "wb") as out:
        writer = ImportResultWriter(out, file=FILE)
        with pytest.raises(RuntimeError, match="not open"):
            writer.write_values({"index": 1, "verdict": "applied"})
        writer.open()
        writer.write_values({"index": 1, "verdict": "applied"})
        writer.close()
        writer.close()  # once only
    summary, (record,) = load_import_result(path)
    assert record.index == 1 and summary.total == 1
