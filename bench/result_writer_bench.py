"""Import result writer: µs per record written, the text writer against the lxml approach it replaced.

Writes 200,000 ``<record>`` verdicts to a file (no fsync) the way the server's importer does
(``ImportResultWriter.write_values`` with its stored values: index, verdict, key, line; every tenth record a
conflict with its details), and in the same run the previous approach: each record's attributes converted
with ``attributes()``, an ``etree.Element("record", attrib)`` built and written through ``etree.xmlfile``.
Also ``write()`` with ready ``ResultRecord`` models. Best of three runs each.

    python bench/result_writer_bench.py [--records 200000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from promoflow.wire.xml import ImportResultWriter, ResultRecord, load_import_result  # noqa: E402
from promoflow.wire.xml._writer import attributes  # noqa: E402

FILE = "20240501140300_471_redemptions.xml"


def stored_values(n: int) -> list[dict[str, Any]]:
    """The server's ``_values(...)`` dicts: what ``write_values`` gets from the import's stored verdicts."""
    rows: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        values: dict[str, Any] = {
            "index": i,
            "verdict": "applied",
            "key": str(uuid.uuid4()),
            "line": i + 2,
            "reason": None,
        }
        if i % 10 == 0:
            values["verdict"] = "conflictAlreadyRedeemed"
            values.update(
                redeemedOn="2024-05-01T14:03:00+02:00",
                redemptionChannel="POS",
                storeExternalId="store-17 & co",
                uniqueReceiptId=f"r-{i}",
            )
        rows.append(values)
    return rows


def new_values(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "wb") as out, ImportResultWriter(out, file=FILE, import_id="imp-1") as writer:
        for values in rows:
            writer.write_values(values)


def new_models(path: Path, records: list[ResultRecord]) -> None:
    with open(path, "wb") as out, ImportResultWriter(out, file=FILE, import_id="imp-1") as writer:
        for record in records:
            writer.write(record)


def old_lxml(path: Path, rows: list[dict[str, Any]]) -> None:
    """The replaced code path of ``write_values``: text conversion, one lxml element per record, xmlfile."""
    with open(path, "wb") as out, etree.xmlfile(out, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element("importResult", {"file": FILE, "importId": "imp-1"}):
            for values in rows:
                xf.write("\n  ")
                xf.write(etree.Element("record", attributes(values)))
            xf.write("\n")


def best(label: str, n: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    us = min(times) / n * 1e6
    print(f"{label:<58} {us:6.2f} µs/record")
    return us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    n = parser.parse_args().records
    rows = stored_values(n)
    records = [ResultRecord.model_validate(values) for values in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.xml"
        print(f"{n:,} records")
        old = best("old: attributes() + etree.Element + etree.xmlfile", n, lambda: old_lxml(path, rows))
        size_old = path.stat().st_size
        new = best("new: ImportResultWriter.write_values (text)", n, lambda: new_values(path, rows))
        size_new = path.stat().st_size
        best("new: ImportResultWriter.write (ResultRecord models)", n, lambda: new_models(path, records))
        summary, read = load_import_result(path)  # the last file, read back and validated record by record
        assert summary.total == len(read) == n
        print(f"speed-up write_values: {old / new:.1f}x; file {size_new:,} bytes (lxml: {size_old:,})")


if __name__ == "__main__":
    main()
