"""File-transfer benchmark (issue 5 "Speed"): redemption and transaction files end to end, against the floor.

On a fresh PostgreSQL database it seeds the assignments and contacts, starts the real servers as processes
(`promoflow ftp` and, per file, a fresh `promoflow worker`), uploads each file over FTP and waits for its
result file. Reported per file: records/s end to end (upload start → result file in importResults), the import
alone (the import's started/finished times), the worker's RSS: idle (after start-up) and peak (VmHWM), and the
CPU time per record of the worker and of the PostgreSQL backends connected to the bench's database (from /proc:
figures that hold on a shared machine, where wall-clock rates do not).
Files: a small redemption file (--compare, to show memory does not grow with size), the large redemption file
(--redemptions), and a transactions file (--receipts receipts with 5 items each).

The floor, in the same run and database: the same redemption rows loaded with COPY into a temporary table and
applied with one set-based UPDATE … FROM (plus the INSERT of their redemption rows); the same receipts COPYed
into the receipt table.

    python bench/transfer_bench.py                                   # 1,000,000 redemptions, 100,000 receipts
    python bench/transfer_bench.py --redemptions 200000 --receipts 20000 --compare 20000

``--sqlite`` runs the same on the embedded default (a SQLite file; default sizes 100,000 redemptions and 10,000
receipts). SQLite has no COPY: its floor inserts the rows into a temporary table with one prepared statement
(``executemany``) and applies them with one ``UPDATE … FROM`` and one ``INSERT … SELECT``.

    python bench/transfer_bench.py --sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import ftplib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from promoflow.server.config import Settings  # noqa: E402
from promoflow.server.db import make_sync_engine  # noqa: E402
from promoflow.server.migrate import upgrade  # noqa: E402
from promoflow.server.models import assignment, contact, file_import, promotion  # noqa: E402
from promoflow.server.tenant_setup import create_tenant  # noqa: E402
from promoflow.wire.engage import Receipt  # noqa: E402
from promoflow.wire.xml import (  # noqa: E402
    IMPORT_RESULTS_DIR,
    REDEMPTION_IMPORT_DIR,
    TRANSACTION_IMPORT_DIR,
    Redemption,
    RedemptionWriter,
    TransactionWriter,
    result_file_name,
)

START = datetime(2020, 1, 1, tzinfo=UTC)


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (from /proc), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        total += (
            int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        )  # self + waited-for children
    return total / tick


def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the bench's database (the worker's, the FTP
    server's). Only those: on a shared machine, every postgres process's CPU counts other people's work too."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )]  # fmt: skip
    return {pid: cpu_seconds([pid]) for pid in pids}


def backend_cpu_since(url: str, start: dict[int, float]) -> float:
    """CPU seconds the database's backends spent since ``start`` (a backend that ended meanwhile takes its CPU time
    with it; one that began counts from its start)."""
    return sum(cpu - start.get(pid, 0.0) for pid, cpu in backend_cpu(url).items())


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Proc:
    """A promoflow process whose stdout is read for a line."""

    def __init__(self, args: list[str], env: dict[str, str], wait_for: str, timeout: float = 60) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promoflow.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("process ended:\n" + "".join(self.lines))
            self.lines.append(line)
            if re.search(wait_for, line):
                self.match = re.search(wait_for, line)
                break
        else:
            raise RuntimeError("no start line")
        # Keep draining its output so it never blocks on a full pipe.
        import threading

        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ------------------------------------------------------------------------------------------------ seeding


def seed(url: str, tenant_id: uuid.UUID, counts: dict[str, int], contacts: int) -> dict[str, Any]:
    """Contacts, one active promotion (POS/ECOM/OTHER), and disjoint sets of assignments, with COPY."""
    now = datetime.now(UTC)
    promotion_id = uuid.uuid4()
    contact_ids = [uuid.uuid4() for _ in range(contacts)]
    sets: dict[str, list[uuid.UUID]] = {}
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            with cur.copy(
                "COPY contact (id, tenant_id, contact_type, attributes, preferences, key_value, email, approved,"
                " created_at, updated_at) FROM STDIN"
            ) as copy:
                for i, cid in enumerate(contact_ids):
                    email = f"bench{i}@example.com"
                    copy.write_row((cid, tenant_id, "Member", json.dumps({"email": email}), "{}", email, email, True,
                                    now, now))  # fmt: skip
            channels = [
                {"type": t, "valueType": "PERCENT", "value": "10", "localValues": None, "instruction": None}
                for t in ("POS", "ECOM", "OTHER")
            ]
            cur.execute(
                "INSERT INTO promotion (id, tenant_id, name, start_date, channels, channel_mask, return_policy,"
                " activated_at, created_at, updated_at) VALUES (%s, %s, 'bench', '2020-01-01', %s, 7, 'none',"
                " %s, %s, %s)",
                (promotion_id, tenant_id, json.dumps(channels), now, now, now),
            )
            for name, n in counts.items():
                ids = [uuid.uuid4() for _ in range(n)]
                sets[name] = ids
                with cur.copy(
                    "COPY assignment (id, tenant_id, promotion_id, contact_id, valid_from, source, created_at,"
                    " redemption_count, reactivation_count) FROM STDIN"
                ) as copy:
                    for i, aid in enumerate(ids):
                        copy.write_row((aid, tenant_id, promotion_id, contact_ids[i % contacts], START, "bench",
                                        now, 0, 0))  # fmt: skip
        conn.commit()
        conn.execute("ANALYZE assignment")
        conn.execute("ANALYZE contact")
        conn.commit()
    return {"promotion": promotion_id, "sets": sets, "contacts": contacts}


def seed_sqlite(url: str, tenant_id: uuid.UUID, counts: dict[str, int], contacts: int) -> dict[str, Any]:
    """`seed` for a SQLite file: the same rows, with executemany through SQLAlchemy (its encoding of uuids and
    datetimes)."""
    now = datetime.now(UTC)
    promotion_id = uuid.uuid4()
    contact_ids = [uuid.uuid4() for _ in range(contacts)]
    sets: dict[str, list[uuid.UUID]] = {}
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(contact), [
                {"id": cid, "tenant_id": tenant_id, "contact_type": "Member", "attributes": {"email": f"bench{i}@example.com"},
                 "preferences": {}, "key_value": f"bench{i}@example.com", "email": f"bench{i}@example.com",
                 "approved": True, "created_at": now, "updated_at": now}
                for i, cid in enumerate(contact_ids)
            ])  # fmt: skip
            channels = [
                {"type": t, "valueType": "PERCENT", "value": "10", "localValues": None, "instruction": None}
                for t in ("POS", "ECOM", "OTHER")
            ]
            conn.execute(insert(promotion).values(
                id=promotion_id, tenant_id=tenant_id, name="bench", start_date=START.date(), channels=channels,
                channel_mask=7, return_policy="none", activated_at=now, created_at=now, updated_at=now))  # fmt: skip
            for name, n in counts.items():
                ids = sets[name] = [uuid.uuid4() for _ in range(n)]
                for k in range(0, n, 50_000):
                    conn.execute(insert(assignment), [
                        {"id": aid, "tenant_id": tenant_id, "promotion_id": promotion_id,
                         "contact_id": contact_ids[(k + i) % contacts], "valid_from": START, "source": "bench",
                         "created_at": now, "redemption_count": 0, "reactivation_count": 0}
                        for i, aid in enumerate(ids[k : k + 50_000])
                    ])  # fmt: skip
        # No ANALYZE (unlike `seed`, whose PostgreSQL would run autovacuum's): promoflow never runs it on SQLite, so
        # the embedded default is measured as it runs, without statistics.
    finally:
        engine.dispose()
    return {"promotion": promotion_id, "sets": sets, "contacts": contacts}


# ------------------------------------------------------------------------------------------------- files


def redemption_rows(ids: list[uuid.UUID], at: datetime) -> Any:
    for i, aid in enumerate(ids):
        yield {
            "coupon": str(aid),
            "channel": "POS",
            "at": at,
            "store": f"S{i % 200}",
            "receipt": f"R-{i}",
            "key": f"k-{aid.hex}",
        }


def write_redemption_file(path: Path, ids: list[uuid.UUID], at: datetime) -> None:
    with open(path, "wb") as out, RedemptionWriter(out) as writer:
        for r in redemption_rows(ids, at):
            writer.write(
                Redemption(coupon_id=r["coupon"], redemption_channel=r["channel"], redeemed_on=r["at"],
                           store_external_id=r["store"], unique_receipt_id=r["receipt"], idempotency_key=r["key"])
            )  # fmt: skip


def receipt_body(i: int, contacts: int, at: datetime) -> dict[str, Any]:
    items = [
        {"type": "PURCHASE", "sku": f"SKU-{k}", "quantity": 1, "grossPaidPrice": 20.0, "taxAmount": 4.0,
         "taxPercent": 25, "articleNumber": f"A-{k}", "articleName": f"Article {k}"}
        for k in range(5)
    ]  # fmt: skip
    return {
        "contact": {"matchKey": f"bench{i % contacts}@example.com", "matchKeyType": "email"},
        "uniqueReceiptId": f"BENCH-{i}",
        "receiptNumber": str(i),
        "createdDate": at.isoformat(),
        "storeExternalId": f"S{i % 50}",
        "currency": "SEK",
        "totalGrossPrice": 100.0,
        "paymentMethods": [{"type": "card", "value": 100.0}],
        "items": items,
    }


def write_transactions_file(path: Path, n: int, contacts: int, at: datetime) -> None:
    with open(path, "wb") as out, TransactionWriter(out) as writer:
        for i in range(n):
            writer.write(Receipt.model_validate(receipt_body(i, contacts, at)))


# ------------------------------------------------------------------------------------------- end to end


def result_of(data_dir: Path, tenant: dict[str, Any], name: str, reply: str) -> Path:
    """Where the result of the upload answered ``reply`` (``226 … queued as import <id> …``) will appear."""
    match = re.search(r"queued as import ([0-9a-f-]{36})", reply)
    assert match is not None, reply
    results = data_dir / "ftp" / tenant["tenantId"] / IMPORT_RESULTS_DIR.strip("/")
    return results / result_file_name(name, match[1])


def run_file(url: str, data_dir: Path, ftp_port: int, tenant: dict[str, Any], folder: str, path: Path,
             records: int, batch: int, poll: float) -> dict[str, Any]:  # fmt: skip
    env = {
        "PROMOFLOW_DATABASE_URL": url,
        "PROMOFLOW_DATA_DIR": str(data_dir),
        "PROMOFLOW_IMPORT_BATCH_SIZE": str(batch),
        "PROMOFLOW_WORKER_POLL_SECONDS": str(poll),
        "PROMOFLOW_EXPORT_INTERVAL_SECONDS": "0",
        "PROMOFLOW_LOG_LEVEL": "warning",
    }
    worker = Proc(["worker"], env, r"promoflow worker \S+ running")
    try:
        time.sleep(1.0)  # let start-up allocations settle before reading the idle size
        idle = rss_kb(worker.pid, "VmRSS")
        t0 = time.monotonic()
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", ftp_port, timeout=600)
        ftp.login(tenant["ftpUser"], tenant["ftpPassword"])
        with open(path, "rb") as f:
            reply = ftp.storbinary(f"STOR {folder}/{path.name}", f, blocksize=1 << 20)
        ftp.quit()
        uploaded = time.monotonic() - t0
        assert reply.startswith("226"), reply
        result = result_of(data_dir, tenant, path.name, reply)
        peak = idle
        pg = not url.startswith("sqlite")
        pg_cpu0, worker_cpu0 = backend_cpu(url) if pg else {}, cpu_seconds([worker.pid])
        deadline = time.monotonic() + 3600
        while not result.exists():  # bounded poll of observable state; RSS sampled on the way
            if worker.proc.poll() is not None:
                raise RuntimeError("worker died:\n" + "".join(worker.lines[-30:]))
            if time.monotonic() > deadline:
                raise TimeoutError(path.name)
            peak = max(peak, rss_kb(worker.pid, "VmRSS"))
            time.sleep(0.05)
        total = time.monotonic() - t0
        hwm = rss_kb(worker.pid, "VmHWM")
        worker_cpu = cpu_seconds([worker.pid]) - worker_cpu0
        pg_cpu = backend_cpu_since(url, pg_cpu0) if pg else 0.0  # the worker keeps its connections
    finally:
        worker.stop()
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            status, counts, started, finished = conn.execute(
                select(file_import.c.status, file_import.c.counts, file_import.c.started_at, file_import.c.finished_at)
                .where(file_import.c.file_name == path.name)
            ).one()  # fmt: skip
    finally:
        engine.dispose()
    return {
        "file": path.name,
        "records": records,
        "bytes": path.stat().st_size,
        "status": status,
        "counts": counts,
        "upload_s": uploaded,
        "end_to_end_s": total,
        "import_s": (finished - started).total_seconds(),
        "rate": records / total,
        "idle_mb": idle / 1024,
        "peak_mb": max(peak, hwm) / 1024,
        "worker_cpu_us": 1e6 * worker_cpu / records,
        "pg_cpu_us": 1e6 * pg_cpu / records,
    }


# --------------------------------------------------------------------------------------------------- floor


FLOOR_CPU: dict[str, float] = {}


def floor_redemptions(url: str, tenant_id: uuid.UUID, ids: list[uuid.UUID], at: datetime) -> float:
    """COPY the rows into a temp table, one set-based UPDATE (the same conditions), one INSERT of redemptions."""
    t0 = time.monotonic()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        backend = conn.info.backend_pid
        cur.execute(
            "CREATE TEMP TABLE r_in (coupon uuid, at timestamptz, ch text, store text, receipt text, ikey text)"
        )
        with cur.copy("COPY r_in FROM STDIN") as copy:
            for r in redemption_rows(ids, at):
                copy.write_row((r["coupon"], r["at"], r["channel"], r["store"], r["receipt"], r["key"]))
        cur.execute(
            """
            WITH won AS (
              UPDATE assignment a SET redeemed_at = r.at, redeemed_channel = r.ch, redeemed_store = r.store,
                     redeemed_receipt_id = r.receipt, redeemed_via = 'file', redemption_count = a.redemption_count + 1
              FROM r_in r
              WHERE a.id = r.coupon AND a.tenant_id = %(t)s AND a.redeemed_at IS NULL AND a.deleted_at IS NULL
                AND a.valid_from <= r.at AND (a.valid_to IS NULL OR a.valid_to >= r.at)
              RETURNING a.id, a.redemption_count, r.at, r.ch, r.store, r.receipt, r.ikey)
            INSERT INTO redemption (id, tenant_id, assignment_id, seq, redeemed_at, channel, store_external_id,
                                    unique_receipt_id, via, idempotency_key, created_at)
            SELECT gen_random_uuid(), %(t)s, id, redemption_count, at, ch, store, receipt, 'file', ikey, now()
            FROM won
            """,
            {"t": tenant_id},
        )
        applied = cur.rowcount
        conn.commit()
        FLOOR_CPU["pg_us"] = 1e6 * cpu_seconds([backend]) / len(ids)
    assert applied == len(ids), applied
    return time.monotonic() - t0


def floor_redemptions_sqlite(url: str, tenant_id: uuid.UUID, ids: list[uuid.UUID], at: datetime) -> float:
    """SQLite has no COPY: the rows into a temp table with one prepared statement (executemany), then one
    UPDATE … FROM (the same conditions) and one INSERT … SELECT of the redemption rows, in one transaction. Values
    as SQLAlchemy stores them on SQLite: uuids as 32 hex digits, datetimes as naive UTC text."""
    ts = at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    t0 = time.monotonic()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TEMP TABLE r_in (coupon TEXT PRIMARY KEY, at TEXT, ch TEXT, store TEXT, receipt TEXT,"
                     " ikey TEXT)")  # fmt: skip
        conn.executemany(
            "INSERT INTO r_in VALUES (?, ?, ?, ?, ?, ?)",
            ((uuid.UUID(r["coupon"]).hex, ts, r["channel"], r["store"], r["receipt"], r["key"])
             for r in redemption_rows(ids, at)),
        )  # fmt: skip
        t = tenant_id.hex
        applied = conn.execute(
            """
            UPDATE assignment SET redeemed_at = r.at, redeemed_channel = r.ch, redeemed_store = r.store,
                   redeemed_receipt_id = r.receipt, redeemed_via = 'file', redemption_count = redemption_count + 1
            FROM r_in r
            WHERE assignment.id = r.coupon AND assignment.tenant_id = ? AND assignment.redeemed_at IS NULL
              AND assignment.deleted_at IS NULL AND assignment.valid_from <= r.at
              AND (assignment.valid_to IS NULL OR assignment.valid_to >= r.at)
            """,
            (t,),
        ).rowcount
        conn.execute(
            """
            INSERT INTO redemption (id, tenant_id, assignment_id, seq, redeemed_at, channel, store_external_id,
                                    unique_receipt_id, via, idempotency_key, created_at)
            SELECT lower(hex(randomblob(16))), ?, a.id, a.redemption_count, r.at, r.ch, r.store, r.receipt, 'file',
                   r.ikey, r.at
            FROM r_in r JOIN assignment a ON a.id = r.coupon
            """,
            (t,),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert applied == len(ids), applied
    return time.monotonic() - t0


def floor_receipts(url: str, tenant_id: uuid.UUID, n: int, contacts: int, at: datetime) -> float:
    """COPY the receipts (with their contact resolved by one join) straight into the receipt table."""
    t0 = time.monotonic()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE rc_in (uid text, email text, body jsonb)")
        with cur.copy("COPY rc_in FROM STDIN") as copy:
            for i in range(n):
                body = receipt_body(i, contacts, at)
                body["uniqueReceiptId"] = f"FLOOR-{i}"
                copy.write_row((body["uniqueReceiptId"], body["contact"]["matchKey"], json.dumps(body)))
        cur.execute(
            """
            INSERT INTO receipt (id, tenant_id, unique_receipt_id, contact_id, status, match_key_type, match_key,
                                 created_date, created_offset, store_external_id, currency, total_gross_price,
                                 total_discount, kind, body, via, received_at, matched_at)
            SELECT gen_random_uuid(), %(t)s, r.uid, c.id, 'matched', 'email', r.email, %(at)s, 0, 'S1', 'SEK', 100,
                   0, 'sale', r.body, 'file', now(), now()
            FROM rc_in r JOIN contact c ON c.tenant_id = %(t)s AND c.email = r.email
            ON CONFLICT DO NOTHING
            """,
            {"t": tenant_id, "at": at},
        )
        assert cur.rowcount == n, cur.rowcount
        conn.commit()
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg-url", default=os.environ.get("PROMOFLOW_BENCH_PG_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/postgres"))  # fmt: skip
    parser.add_argument("--sqlite", action="store_true", help="the embedded default: a SQLite file")
    parser.add_argument("--redemptions", type=int, default=None, help="default 1,000,000 (SQLite 100,000)")
    parser.add_argument(
        "--compare", type=int, default=100_000, help="the small redemption file (memory check)"
    )
    parser.add_argument("--receipts", type=int, default=None, help="default 100,000 (SQLite 10,000)")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--poll-seconds", type=float, default=0.05,
        help="the worker's poll interval (short: a file starts at once; a worker holding a job polls as often)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir")
    args = parser.parse_args()

    if args.redemptions is None:
        args.redemptions = 100_000 if args.sqlite else 1_000_000
    if args.receipts is None:
        args.receipts = 10_000 if args.sqlite else 100_000
    data_dir = Path(tempfile.mkdtemp(prefix="promoflow-bench-"))
    db_name = f"promoflow_bench_{uuid.uuid4().hex[:8]}"
    if args.sqlite:
        url = f"sqlite:///{data_dir / 'promoflow.sqlite3'}"
    else:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{db_name}"')
        url = args.pg_url.rsplit("/", 1)[0] + "/" + db_name
    ftp: Proc | None = None
    try:
        upgrade(url)
        settings = Settings(database_url=url, data_dir=data_dir)
        tenant = asyncio.run(create_tenant(settings, datetime.now(UTC), "bench"))
        tenant_id = uuid.UUID(tenant["tenantId"])
        log(f"seeding {args.compare + 2 * args.redemptions:,} assignments and {args.contacts:,} contacts")
        seeded = (seed_sqlite if args.sqlite else seed)(url, tenant_id, {"compare": args.compare, "main": args.redemptions,
                                       "floor": args.redemptions}, args.contacts)  # fmt: skip
        at = datetime.now(UTC) - timedelta(minutes=1)
        files = data_dir / "files"
        files.mkdir()
        small = files / "20260101000000_1_redemptions.xml"
        large = files / "20260101000001_2_redemptions.xml"
        txs = files / "20260101000002_3_transactions.xml"
        log("writing the files")
        write_redemption_file(small, seeded["sets"]["compare"], at)
        write_redemption_file(large, seeded["sets"]["main"], at)
        if args.receipts:
            write_transactions_file(txs, args.receipts, args.contacts, at)
        env = {
            "PROMOFLOW_DATABASE_URL": url,
            "PROMOFLOW_DATA_DIR": str(data_dir),
            "PROMOFLOW_LOG_LEVEL": "warning",
        }
        ftp = Proc(["ftp", "--port", "0"], env, r"promoflow ftp listening on ftp://[\d.]+:(\d+)")
        port = int(ftp.match.group(1))  # type: ignore[union-attr]
        results = []
        for path, n in ((small, args.compare), (large, args.redemptions)):
            log(f"{path.name}: {n:,} redemptions")
            results.append(run_file(url, data_dir, port, tenant, REDEMPTION_IMPORT_DIR, path, n, args.batch_size,
                                    args.poll_seconds))  # fmt: skip
            log(f"  {results[-1]}")
        if args.receipts:
            log(f"{txs.name}: {args.receipts:,} receipts")
            results.append(run_file(url, data_dir, port, tenant, TRANSACTION_IMPORT_DIR, txs, args.receipts,
                                    args.batch_size, args.poll_seconds))  # fmt: skip
            log(f"  {results[-1]}")
        log("floor: COPY + one set-based UPDATE")
        if args.sqlite:
            floor_red = floor_redemptions_sqlite(url, tenant_id, seeded["sets"]["floor"], at)
            floor_rc = None  # no COPY; the receipts have no set-based equivalent worth the name here
        else:
            floor_red = floor_redemptions(url, tenant_id, seeded["sets"]["floor"], at)
            floor_rc = (
                floor_receipts(url, tenant_id, args.receipts, args.contacts, at) if args.receipts else None
            )
        report(args, results, floor_red, floor_rc)
    finally:
        if ftp is not None:
            ftp.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            if not args.sqlite:
                with psycopg.connect(args.pg_url, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def report(args: Any, results: list[dict[str, Any]], floor_red: float, floor_rc: float | None) -> None:
    print()
    print("| file | records | MB | status | upload s | import s | end to end s | records/s | worker idle MB |"
          " worker peak MB | peak − idle MB | worker CPU µs/record | PostgreSQL CPU µs/record |")  # fmt: skip
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['file']} | {r['records']:,} | {r['bytes'] / 1e6:.0f} | {r['status']} {r['counts']['applied']:,}"
            f" applied | {r['upload_s']:.1f} | {r['import_s']:.1f} | {r['end_to_end_s']:.1f} | {r['rate']:,.0f} |"
            f" {r['idle_mb']:.0f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['idle_mb']:.0f} |"
            f" {r['worker_cpu_us']:.0f} | {r['pg_cpu_us']:.0f} |"
        )
    print()
    big = results[1]
    how = (
        "executemany into a temp table + one UPDATE … FROM/INSERT"
        if args.sqlite
        else "COPY + one set-based UPDATE/INSERT"
    )
    pg_cpu = "" if args.sqlite else f" (PostgreSQL CPU {FLOOR_CPU['pg_us']:.0f} µs/record)"
    print(f"floor, redemptions ({how}): {args.redemptions:,} in {floor_red:.1f} s ="
          f" {args.redemptions / floor_red:,.0f}/s{pg_cpu};"
          f" promoflow end to end is {floor_red / big['end_to_end_s']:.0%} of the floor's rate")  # fmt: skip
    if floor_rc is not None:
        rc = results[2]
        print(f"floor, receipts (COPY into the receipt table): {args.receipts:,} in {floor_rc:.1f} s ="
              f" {args.receipts / floor_rc:,.0f}/s; promoflow end to end is"
              f" {floor_rc / rc['end_to_end_s']:.0%} of the floor's rate")  # fmt: skip


if __name__ == "__main__":
    main()
