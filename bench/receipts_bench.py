"""Receipts benchmark (issue 3 "Speed"): receipt ingest over HTTP, against a raw-driver floor; and the promotion
report on a large promotion.

1. Seeds PostgreSQL (a tenant without rate limit, --contacts contacts, 20 stores) with generate_series.
2. Starts the real server (`promoflow api`, one process unless --api-workers) and drives
   `POST /api/v2/receipts` with wrk (--connections connections, one wrk thread, a Lua script that gives every
   request a new uniqueReceiptId, a random contact (matchKeyType contactId) and store, and 5 items): receipts/s and
   p50/p95/p99.
3. In the same run, the floor: a minimal ASGI app on the same uvicorn stack (`floor_app` below) that inserts the
   same receipt row with the raw driver (psycopg 3 async, autocommit, one INSERT … ON CONFLICT DO NOTHING) and no
   framework, auth, validation or contact/store look-up — the least any server could do per receipt.
4. Proves the client is not the bottleneck: the CPU wrk used during each run (from its rusage), and the rate the
   same wrk script reaches against `noop_app` (same uvicorn stack, answers without any work).
5. Seeds a promotion with --assignments assignments (spread over 30 days, over the contacts), --linked of them
   redeemed and linked to a receipt (channels, stores and days varied), and 60% of them shown; then times
   `GET /api/v2/reports/promotions/{id}` (JSON and CSV) over HTTP (--report-runs runs, after one warm-up).

    python bench/receipts_bench.py                                   # full size: 1,000,000 / 300,000
    python bench/receipts_bench.py --assignments 100000 --linked 30000 --duration 10
Needs wrk and PostgreSQL at --pg-url (a database `promoflow_receipts_bench` is created there and dropped again).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import cpu_seconds, free_port, log, start, stop

DB_NAME = "promoflow_receipts_bench"
STORES = 20

WRK_LUA = r"""
local ids = {}
local n = 0
for line in io.lines("%(ids)s") do n = n + 1; ids[n] = line end
local counter = 0
local prefix = "%(run)s-"
local headers = {["apikey"] = "%(key)s", ["Content-Type"] = "application/json"}
local template = %(template)s
request = function()
  counter = counter + 1
  local cid = ids[(counter * 7919) %% n + 1]
  local store = "S" .. ((counter %% %(stores)d) + 1)
  return wrk.format("POST", "%(path)s", headers, string.format(template, cid, prefix .. counter, store))
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\"rps\": %%f, \"requests\": %%d, \"errors\": %%d, \"non2xx\": %%d, \"p50\": %%f, \"p95\": %%f, \"p99\": %%f}\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def receipt_template(created: str) -> str:
    """The request body with three %s holes (contact id, uniqueReceiptId, store), as a Lua string literal."""
    items = [
        {
            "type": "PURCHASE",
            "sku": f"SKU-{i}",
            "articleNumber": f"A{i}",
            "articleName": f"Article {i}",
            "quantity": 1,
            "grossPaidPrice": price,
            "taxAmount": round(price * 0.2, 2),
            "taxPercent": 25,
            **({"discounts": [{"value": -10.0, "type": "promo", "description": "10 off"}]} if i == 0 else {}),
        }
        for i, price in enumerate((199.0, 49.5, 20.0, 75.25, 10.0))
    ]
    total = sum(i["grossPaidPrice"] for i in items)
    body = {
        "contact": {"matchKey": "@@CID@@", "matchKeyType": "contactId"},
        "uniqueReceiptId": "@@UID@@",
        "receiptNumber": "4711",
        "createdDate": created,
        "storeExternalId": "@@STORE@@",
        "currency": "SEK",
        "totalGrossPrice": total,
        "paymentMethods": [{"type": "card", "value": total}],
        "items": items,
    }
    text = json.dumps(body, separators=(",", ":")).replace("%", "%%")
    text = text.replace("@@CID@@", "%s").replace("@@UID@@", "%s").replace("@@STORE@@", "%s")
    return json.dumps(text)  # a valid Lua string literal too


# ------------------------------------------------------------------------------------------- the floor

_FLOOR_POOL: Any = None
_FLOOR_SQL = """
INSERT INTO receipt (id, tenant_id, unique_receipt_id, contact_id, status, match_key_type, match_key, contact_type,
  receipt_number, created_date, created_offset, store_external_id, currency, total_gross_price, total_discount,
  kind, original_unique_receipt_id, body, warnings, via, received_at, matched_at)
VALUES (%(id)s, %(t)s, %(uid)s, %(cid)s, 'matched', 'contactId', %(key)s, NULL, %(number)s, %(created)s, 60,
  %(store)s, %(currency)s, %(total)s, 10, 'PURCHASE', NULL, %(body)s::jsonb, NULL, 'api', %(now)s, %(now)s)
ON CONFLICT DO NOTHING
"""


async def _asgi_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _lifespan(receive: Any, send: Any, startup: Any = None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup is not None:
                await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _reply(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def floor_app(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn bench.receipts_bench:floor_app (env FLOOR_DATABASE_URL, FLOOR_TENANT_ID)."""
    import asyncio

    import psycopg

    async def startup() -> None:
        global _FLOOR_POOL
        _FLOOR_POOL = asyncio.Queue()
        for _ in range(int(os.environ.get("FLOOR_POOL", "20"))):
            _FLOOR_POOL.put_nowait(
                await psycopg.AsyncConnection.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True)
            )

    if scope["type"] == "lifespan":
        await _lifespan(receive, send, startup)
        return
    raw = await _asgi_body(receive)
    if scope["method"] != "POST":
        await _reply(send, 200, b"{}")
        return
    data = json.loads(raw)
    conn = await _FLOOR_POOL.get()
    try:
        await conn.execute(
            _FLOOR_SQL,
            {
                "id": uuid.uuid4(),
                "t": os.environ["FLOOR_TENANT_ID"],
                "uid": data["uniqueReceiptId"],
                "cid": data["contact"]["matchKey"],
                "key": data["contact"]["matchKey"],
                "number": data.get("receiptNumber"),
                "created": datetime.fromisoformat(data["createdDate"]),
                "store": data["storeExternalId"],
                "currency": data["currency"],
                "total": data["totalGrossPrice"],
                "body": raw.decode(),
                "now": datetime.now(UTC),
            },
        )
    finally:
        _FLOOR_POOL.put_nowait(conn)
    await _reply(
        send, 200, json.dumps({"uniqueReceiptId": data["uniqueReceiptId"], "status": "Created"}).encode()
    )


async def noop_app(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn bench.receipts_bench:noop_app — reads the body and answers; the client's and the stack's ceiling."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _asgi_body(receive)
    await _reply(send, 200, b'{"status":"Created"}')


# --------------------------------------------------------------------------------------------- helpers


def wrk(
    base: str, path: str, ids: Path, key: str, connections: int, duration: int, server_pid: int | None
) -> dict[str, float]:
    """One wrk run; adds the CPU share wrk and the server used (1.0 = one core busy the whole run)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    created = (datetime.now(UTC) - timedelta(hours=1)).astimezone().isoformat(timespec="seconds")
    script.write_text(
        WRK_LUA
        % {
            "ids": ids,
            "run": uuid.uuid4().hex[:10],
            "key": key,
            "path": path,
            "template": receipt_template(created),
            "stores": STORES,
        }
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.monotonic()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    script.unlink()
    m = re.search(r"JSON(\{.*\})", out)
    assert m, out
    result: dict[str, float] = json.loads(m.group(1))
    result["client_cpu"] = round(
        (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / wall, 3
    )
    if server_pid:
        result["server_cpu"] = round((cpu_seconds(server_pid) - server_before) / wall, 3)
    return result


def show(label: str, r: dict[str, float]) -> None:
    server = f"  server CPU {r['server_cpu']:.2f}" if "server_cpu" in r else ""
    log(
        f"{label:<24} {r['rps']:8.0f} receipts/s  p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  "
        f"p99 {r['p99']:6.1f} ms  errors {r['errors']:.0f}  non-2xx {r['non2xx']:.0f}  wrk CPU {r['client_cpu']:.2f}"
        f"{server}"
    )


# --------------------------------------------------------------------------------------------- seeding


def create_database(pg_url: str) -> str:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    url = pg_url.rsplit("/", 1)[0] + "/" + DB_NAME
    from promoflow.server.migrate import upgrade

    upgrade(url)
    return url


def drop_database(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def seed_tenant(url: str, contacts: int) -> tuple[str, str, Path]:
    """A tenant (no rate limit), its contacts and stores; returns (tenant id, API key, file of contact ids)."""
    import asyncio

    import psycopg

    from promoflow.server.db import Database
    from promoflow.server.tenant.service import TenantService

    async def make() -> tuple[str, str]:
        db = Database(url, pool_size=1)
        async with db.write() as conn:
            new = await TenantService(datetime.now(UTC)).create(
                conn, f"bench-{uuid.uuid4().hex[:8]}", settings={"rateLimitPerSecond": 0}
            )
        await db.dispose()
        return str(new.tenant_id), new.api_key

    tenant_id, key = asyncio.run(make())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO contact (id, tenant_id, contact_type, attributes, preferences, key_value, email,
                                    member_number, approved, created_at, updated_at)
               SELECT gen_random_uuid(), %(t)s, 'Member',
                      jsonb_build_object('email', 'c' || g || '@bench.example', 'memberNumber', lpad(g::text, 9, '0')),
                      '{}'::jsonb, 'c' || g || '@bench.example', 'c' || g || '@bench.example', lpad(g::text, 9, '0'),
                      true, now(), now()
               FROM generate_series(1, %(n)s) g""",
            {"t": tenant_id, "n": contacts},
        )
        conn.execute(
            """INSERT INTO store (tenant_id, external_id, name, type, active, created_at, updated_at)
               SELECT %(t)s, 'S' || g, 'Store ' || g, CASE WHEN g %% 4 = 0 THEN 'ECOM' ELSE 'RETAIL' END, true,
                      now(), now()
               FROM generate_series(1, %(n)s) g""",
            {"t": tenant_id, "n": STORES},
        )
        conn.execute("VACUUM ANALYZE")
        ids = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM contact WHERE tenant_id = %s ORDER BY random()", (tenant_id,)
            )
        ]
    path = Path(tempfile.mkstemp(suffix=".txt")[1])
    path.write_text("\n".join(ids) + "\n")
    return tenant_id, key, path


REPORT_SEED = [
    # 1) the promotion
    """INSERT INTO promotion (id, tenant_id, external_id, name, start_date, end_date, channels, channel_mask,
                              return_policy, activated_at, created_at, updated_at)
       VALUES (%(p)s, %(t)s, 'BENCH-REPORT', 'Report benchmark', DATE '2024-01-01', NULL,
               '[{"type": "POS", "valueType": "PERCENT", "value": "10"},
                 {"type": "ECOM", "valueType": "PERCENT", "value": "10"}]'::jsonb, 3, 'none', now(), now(), now())""",
    # 2) the assignments: g = 1..A over the contacts (several each), assigned over 30 days; g <= L redeemed
    """INSERT INTO assignment (id, tenant_id, promotion_id, contact_id, valid_from, valid_to, source, created_at,
                              redeemed_at, redeemed_channel, redeemed_store, redeemed_receipt_id, redeemed_via,
                              redemption_count, reactivation_count)
       SELECT md5('a' || g)::uuid, %(t)s, %(p)s, c.id, %(t0)s + (g %% 30) * interval '1 day',
              %(t0)s + interval '400 days', 'bench', %(t0)s + (g %% 30) * interval '1 day' + (g %% 86400) * interval '1 second',
              CASE WHEN g <= %(l)s THEN %(t0)s + (g %% 30 + g %% 5) * interval '1 day' + (g %% 80000) * interval '1 second' END,
              CASE WHEN g <= %(l)s THEN CASE WHEN g %% 3 = 0 THEN 'ECOM' ELSE 'POS' END END,
              CASE WHEN g <= %(l)s THEN 'S' || (g %% %(s)s + 1) END,
              CASE WHEN g <= %(l)s THEN 'rcpt-' || g END,
              CASE WHEN g <= %(l)s THEN 'receipt' END,
              CASE WHEN g <= %(l)s THEN 1 ELSE 0 END, 0
       FROM generate_series(1, %(a)s) g
       JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM contact WHERE tenant_id = %(t)s) c
         ON c.k = g %% %(c)s""",
    # 3) their redemption rows
    """INSERT INTO redemption (id, tenant_id, assignment_id, seq, redeemed_at, channel, store_external_id,
                              unique_receipt_id, via, created_at)
       SELECT gen_random_uuid(), tenant_id, id, 1, redeemed_at, redeemed_channel, redeemed_store, redeemed_receipt_id,
              'receipt', redeemed_at
       FROM assignment WHERE promotion_id = %(p)s AND redeemed_at IS NOT NULL""",
    # 4) one receipt per redemption (5 lines, as ingested)
    """INSERT INTO receipt (id, tenant_id, unique_receipt_id, contact_id, status, match_key_type, match_key,
                           receipt_number, created_date, created_offset, store_external_id, currency, total_gross_price,
                           total_discount, kind, body, via, received_at, matched_at)
       SELECT md5('r' || a.id)::uuid, a.tenant_id, a.redeemed_receipt_id, a.contact_id, 'matched', 'contactId',
              a.contact_id::text, '1', a.redeemed_at, 60, a.redeemed_store, 'SEK', 353.75, 10, 'PURCHASE',
              '{"items": []}'::jsonb, 'api', a.redeemed_at, a.redeemed_at
       FROM assignment a WHERE a.promotion_id = %(p)s AND a.redeemed_at IS NOT NULL""",
    # 5) the links
    """INSERT INTO receipt_promotion (tenant_id, receipt_id, assignment_id, promotion_id, kind, redemption_seq,
                                     unique_receipt_id, store_external_id, created_date, currency, total_gross_price,
                                     total_discount, counted, linked_at)
       SELECT a.tenant_id, md5('r' || a.id)::uuid, a.id, a.promotion_id, 'redeemed', 1, a.redeemed_receipt_id,
              a.redeemed_store, a.redeemed_at, 'SEK', 353.75, 10, true, a.redeemed_at
       FROM assignment a WHERE a.promotion_id = %(p)s AND a.redeemed_at IS NOT NULL""",
    # 6) 60% of the assignments shown at least once
    """INSERT INTO assignment_shown (assignment_id, tenant_id, promotion_id, first_shown_at, last_shown_at, times)
       SELECT id, tenant_id, promotion_id, created_at + interval '1 hour', created_at + interval '2 days',
              1 + (hashtext(id::text) & 3)
       FROM assignment WHERE promotion_id = %(p)s AND abs(hashtext(id::text)) %% 5 < 3""",
]


def seed_report(url: str, tenant_id: str, contacts: int, assignments: int, linked: int) -> str:
    import psycopg

    pid = str(uuid.uuid4())
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    params = {"p": pid, "t": tenant_id, "t0": t0, "a": assignments, "l": linked, "s": STORES, "c": contacts}
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in REPORT_SEED:
            conn.execute(sql, params)
        conn.execute("VACUUM ANALYZE")
    return pid


def time_report(base: str, key: str, pid: str, runs: int) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers={"apikey": key}, timeout=120) as c:
        for fmt in ("json", "csv"):
            c.get(f"/api/v2/reports/promotions/{pid}", params={"format": fmt}).raise_for_status()  # warm-up
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = c.get(f"/api/v2/reports/promotions/{pid}", params={"format": fmt})
                times.append(time.perf_counter() - t0)
                r.raise_for_status()
            out[fmt] = {
                "min_s": round(min(times), 3),
                "median_s": round(statistics.median(times), 3),
                "max_s": round(max(times), 3),
            }
            if fmt == "json":
                body = r.json()
                out["figures"] = {
                    k: body[k] for k in ("assigned", "shown", "redeemed", "receipts", "revenue")
                }
                out["figures"]["days"] = len(body["byDay"])
                out["figures"]["stores"] = len(body["byStore"])
    return out


# ------------------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--contacts", type=int, default=100_000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=int, default=20, help="seconds per measured ingest run")
    p.add_argument("--api-workers", type=int, default=1, help="API processes (the floor gets the same)")
    p.add_argument("--assignments", type=int, default=1_000_000, help="assignments of the report's promotion")
    p.add_argument("--linked", type=int, default=300_000, help="of them redeemed and linked to a receipt")
    p.add_argument("--report-runs", type=int, default=5)
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--skip-report", action="store_true")
    p.add_argument("--keep-db", action="store_true", help="do not drop the benchmark database at the end")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    if args.linked > args.assignments:
        sys.exit("--linked cannot exceed --assignments")
    started = time.monotonic()
    url = create_database(args.pg_url)
    result: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count()}
    try:
        t0 = time.monotonic()
        tenant_id, key, ids = seed_tenant(url, args.contacts)
        log(f"seeded {args.contacts} contacts, {STORES} stores in {time.monotonic() - t0:.0f} s")
        workers = str(args.api_workers)
        if not args.skip_ingest:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = start(
                [
                    sys.executable,
                    "-m",
                    "promoflow.cli",
                    "api",
                    "--port",
                    str(port),
                    "--database-url",
                    url,
                    "--workers",
                    workers,
                    "--data-dir",
                    tempfile.mkdtemp(),
                ],
                {"PROMOFLOW_LOG_LEVEL": "warning"},
                f"{base}/healthz",
            )
            try:
                wrk(base, "/api/v2/receipts", ids, key, args.connections, 3, None)  # warm-up, not counted
                result["promoflow"] = r = wrk(
                    base, "/api/v2/receipts", ids, key, args.connections, args.duration, server.pid
                )
                show("promoflow", r)
            finally:
                stop(server)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            floor = start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.receipts_bench:floor_app",
                    "--port",
                    str(port),
                    "--workers",
                    workers,
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                {"FLOOR_DATABASE_URL": url, "FLOOR_TENANT_ID": tenant_id},
                f"{base}/x",
            )
            try:
                wrk(base, "/receipts", ids, key, args.connections, 3, None)
                result["floor"] = r = wrk(
                    base, "/receipts", ids, key, args.connections, args.duration, floor.pid
                )
                show("floor (raw psycopg)", r)
            finally:
                stop(floor)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            noop = start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.receipts_bench:noop_app",
                    "--port",
                    str(port),
                    "--workers",
                    workers,
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                {},
                f"{base}/x",
            )
            try:
                result["noop"] = r = wrk(
                    base, "/receipts", ids, key, args.connections, max(5, args.duration // 2), noop.pid
                )
                show("no-op app (ceiling)", r)
            finally:
                stop(noop)
            ratio = result["promoflow"]["rps"] / result["floor"]["rps"]
            result["ratio"] = round(ratio, 3)
            log(f"promoflow at {ratio:.0%} of the floor (target >= 50%)")
        if not args.skip_report:
            t0 = time.monotonic()
            pid = seed_report(url, tenant_id, args.contacts, args.assignments, args.linked)
            log(
                f"seeded a promotion with {args.assignments} assignments, {args.linked} linked receipts "
                f"in {time.monotonic() - t0:.0f} s"
            )
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = start(
                [
                    sys.executable,
                    "-m",
                    "promoflow.cli",
                    "api",
                    "--port",
                    str(port),
                    "--database-url",
                    url,
                    "--data-dir",
                    tempfile.mkdtemp(),
                ],
                {"PROMOFLOW_LOG_LEVEL": "warning"},
                f"{base}/healthz",
            )
            try:
                result["report"] = rep = time_report(base, key, pid, args.report_runs)
            finally:
                stop(server)
            log(
                f"report JSON: median {rep['json']['median_s']:.3f} s (min {rep['json']['min_s']:.3f}, max "
                f"{rep['json']['max_s']:.3f}); CSV: median {rep['csv']['median_s']:.3f} s  (target < 1 s)"
            )
            log(f"report figures: {rep['figures']}")
    finally:
        if not args.keep_db:
            drop_database(args.pg_url)
    result["total_s"] = round(time.monotonic() - started)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
