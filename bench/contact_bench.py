"""Contact writes against their floor (issues 15 §3 and 16): `POST /api/v2/contacts` (create) and
`POST /api/v2/contacts/{id}` (update) at 1, 8, 32 and 64 concurrent requests, on PostgreSQL and on SQLite.

The floor (bench/contact_floor_app.py) is a bare ASGI app on the same uvicorn stack doing one statement per
request with the raw driver: one INSERT … ON CONFLICT for a create, one UPDATE for an update. promoflow runs as
`promoflow api` (PostgreSQL) or `promoflow serve --no-ftp --no-worker` (SQLite); each side has a tenant of its
own (rate limit off), the floor's on promoflow's database (the same tables) or, with --floor-own-database, on a
database of its own. (A --baseline runs on a database of its own: compare it with promoflow using
--floor-own-database, or promoflow's tables also hold the floor's rows and the baseline's do not.) The load (wrk,
one thread) alternates between promoflow and the floor phase by phase, so a shared machine's drift hits both
alike. Every create has a new e-mail (--ops held: one a seeded contact holds — a POS's "create or get"); updates
go round the seeded contacts, changing two non-key attributes (the first name and the city; with
--names-unchanged the city and a postcode that stays the same). Prints req/s, p50/p99, each server's CPU per
answered request (from /proc: what the machine's load does not change) and promoflow's share of the floor.

With --floor-same-work (SQLite) the floor's update does, bare, what promoflow's must do besides the one
statement — the row read, the name search keys, the audit entry into the indexed log — each request in its own
transaction: promoflow's share of that floor is what its own layers cost, the issue's floor aside.

    python bench/contact_bench.py                          # both databases, 5 s per phase
    python bench/contact_bench.py --skip-sqlite --duration 10 --levels 32
    python bench/contact_bench.py --baseline ../main/src      # main's promoflow too: before/after in one run
Needs wrk (Debian: apt-get install wrk) and PostgreSQL at --pg-url.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from _common import cpu_seconds, free_port, log, start, stop

TARGET = 0.60
# An update's body (Lua format, %d the request's number): a new first name and a city; with --names-unchanged a
# new city (the names, and so the name search keys, stay as they are).
UPDATES = {False: '{"firstName":"N%d","city":"Malmo"}', True: '{"city":"C%d","zipCode":"22100"}'}

WRK_LUA = r"""
local ids = {}
local n = 0
local i = 0
local mode, prefix, tag, receipts = "%(mode)s", "%(prefix)s", "%(tag)s", "%(receipts)s"
if mode ~= "create" then  -- update: the contact ids; held: the e-mails the seeded contacts hold
  for line in io.lines("%(ids)s") do n = n + 1; ids[n] = line end
end
local headers = {["apikey"] = "%(key)s", ["Content-Type"] = "application/json"}
request = function()
  i = i + 1
  if mode == "create" then
    local body = string.format('{"email":"%%s-%%d@bench.example","firstName":"Bench","city":"Lund"}', tag, i)
    return wrk.format("POST", prefix, headers, body)
  end
  if mode == "receipt" then  -- a plain receipt of a seeded contact, by its id: a new uniqueReceiptId each
    local body = string.format('{"contact":{"matchKey":"%%s","matchKeyType":"contactId"},"uniqueReceiptId":"%%s-%%d",'
      .. '"receiptNumber":"1","createdDate":"2026-03-10T12:00:00+01:00","storeExternalId":"S%%d","currency":"SEK",'
      .. '"totalGrossPrice":99.5,"paymentMethods":[{"type":"card","value":99.5}],"items":[{"type":"PURCHASE",'
      .. '"sku":"A1","articleNumber":"A1","articleName":"Article","quantity":1,"grossPaidPrice":99.5,'
      .. '"taxAmount":19.9,"taxPercent":25}]}', ids[(i %% n) + 1], tag, i, i %% 20 + 1)
    return wrk.format("POST", receipts, headers, body)
  end
  if mode == "lookup" then  -- GET /contacts/id?email=: the seeded contacts' e-mails
    return wrk.format("GET", prefix .. "/id?email=" .. ids[(i %% n) + 1], {["apikey"] = "%(key)s"})
  end
  if mode == "get" then
    return wrk.format("GET", prefix .. "/" .. ids[(i %% n) + 1], {["apikey"] = "%(key)s"})
  end
  if mode == "held" then  -- "create or get": every answer is the contact that holds the e-mail (200)
    local body = string.format('{"email":"%%s","firstName":"Bench","city":"Lund"}', ids[(i %% n) + 1])
    return wrk.format("POST", prefix, headers, body)
  end
  local body = string.format('%(update)s', i)
  return wrk.format("POST", prefix .. "/" .. ids[(i %% n) + 1], headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\"rps\": %%f, \"requests\": %%d, \"errors\": %%d, \"non2xx\": %%d, \"p50\": %%f, \"p99\": %%f}\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk(
    base: str,
    mode: str,
    prefix: str,
    ids: Path,
    key: str,
    connections: int,
    duration: int,
    names_unchanged: bool = False,
) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    tag = uuid.uuid4().hex[:10]
    update = UPDATES[names_unchanged]
    script.write_text(
        WRK_LUA
        % {
            "mode": mode,
            "prefix": prefix,
            "ids": ids,
            "key": key,
            "tag": tag,
            "update": update,
            "receipts": prefix.removesuffix("contacts") + "receipts",
        }  # fmt: skip
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    m = re.search(r"JSON(\{.*\})", out)
    assert m, out
    return json.loads(m.group(1))  # type: ignore[no-any-return]


async def _tenant(url: str) -> tuple[str, str]:
    from promoflow.server.db import Database
    from promoflow.server.tenant.service import TenantService

    db = Database(url, pool_size=2)
    try:
        async with db.write() as conn:
            new = await TenantService(datetime.now(UTC)).create(
                conn, f"bench-{uuid.uuid4().hex[:8]}", settings={"rateLimitPerSecond": 0}
            )
    finally:
        await db.dispose()
    return str(new.tenant_id), new.api_key


def _tenant_by(url: str, src: str | None) -> tuple[str, str]:
    """`_tenant`, by the promoflow of the source tree ``src`` (a --baseline: its schema may differ from ours)."""
    if src is None:
        return asyncio.run(_tenant(url))
    script = "import asyncio, sys, contact_bench; print(*asyncio.run(contact_bench._tenant(sys.argv[1])))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(Path(__file__).parent)])}
    out = subprocess.run(
        [sys.executable, "-c", script, url], env=env, check=True, capture_output=True, text=True
    )
    tenant_id, key = out.stdout.split()
    return tenant_id, key


def seed(url: str, n: int, workdir: Path, side: str, src: str | None = None) -> tuple[str, str, Path]:
    """A tenant with ``n`` contacts (made by the promoflow of ``src``, default ours); returns its id, API key and a
    file of the contact ids."""
    tenant_id, key = _tenant_by(url, src)
    tid = uuid.UUID(tenant_id)
    ids = [uuid.uuid4() for _ in range(n)]
    now = datetime.now(UTC)
    rows = [
        (i, f"{side}{k}@seed.example", json.dumps({"email": f"{side}{k}@seed.example", "memberNumber": f"S{k}"}),
         f"S{side}{k}")
        for k, i in enumerate(ids)
    ]  # fmt: skip
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as lite:
            lite.executemany(
                "INSERT INTO contact (id, tenant_id, contact_type, attributes, preferences, key_value, email, "
                "member_number, approved, created_at, updated_at) VALUES (?, ?, 'Member', ?, '{}', ?, ?, ?, 1, ?, ?)",
                [(i.hex, tid.hex, a, e, e, m, now.replace(tzinfo=None).isoformat(" "),
                  now.replace(tzinfo=None).isoformat(" ")) for i, e, a, m in rows],
            )  # fmt: skip
    else:
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO contact (id, tenant_id, contact_type, attributes, preferences, key_value, email, "
                "member_number, approved, created_at, updated_at) "
                "VALUES (%s, %s, 'Member', %s::jsonb, '{}'::jsonb, %s, %s, %s, true, %s, %s)",
                [(i, tid, a, e, e, m, now, now) for i, e, a, m in rows],
            )
            conn.execute("VACUUM ANALYZE contact")
    path = workdir / f"ids-{side}.txt"
    path.write_text("\n".join(str(i) for i in ids) + "\n")
    _emails(path).write_text("\n".join(e for _, e, _, _ in rows) + "\n")
    return tenant_id, key, path


def _listed(op: str, ids: Path) -> Path:
    """The file an operation's requests go round: the seeded contacts' e-mails or their ids."""
    return _emails(ids) if op in ("held", "lookup") else ids


def _emails(ids: Path) -> Path:
    """The file of the seeded contacts' e-mails, beside the file of their ids."""
    return ids.with_name(ids.name.replace("ids-", "emails-"))


_watchers: dict[str, psycopg.Connection[Any]] = {}


def pg_cpu(url: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the database of ``url`` (the server runs on this machine):
    the database's side of a phase, as the phases take turns. One connection per database, kept for the run (a
    busy server may have no connection to spare in the middle of it)."""
    if not url.startswith("postgresql"):
        return {}
    conn = _watchers.get(url)
    if conn is None:
        conn = _watchers[url] = psycopg.connect(url, autocommit=True)
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return {pid: cpu_seconds(pid) for (pid,) in pids}


def _promoflow(db: str, url: str, data: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """A promoflow server (it migrates its database first): `api` on PostgreSQL, `serve` without FTP and worker on
    SQLite."""
    port = free_port()
    common = ["--port", str(port), "--database-url", url, "--data-dir", str(data)]
    cmd = ["api", *common] if db == "postgresql" else ["serve", *common, "--no-ftp", "--no-worker"]
    env = {"PROMOFLOW_LOG_LEVEL": "warning", "PROMOFLOW_ACCESS_LOG": "false", **env}
    base = f"http://127.0.0.1:{port}"
    return start([sys.executable, "-m", "promoflow.cli", *cmd], env, f"{base}/healthz"), base


def run(db: str, url: str, args: argparse.Namespace, workdir: Path, baseline_url: str,
        floor_url: str) -> dict[str, object]:  # fmt: skip
    from promoflow.server.migrate import upgrade

    upgrade(url)
    if floor_url != url:
        upgrade(floor_url)
    pg_cpu(url)  # the watching connections first, while the server has connections to spare
    pg_cpu(floor_url)
    sides: dict[str, tuple[str, str, str, Path]] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["promoflow"], base = _promoflow(db, url, workdir / "data", {})
        _, key, ids = seed(url, args.contacts, workdir, "s")
        sides["promoflow"] = (base, "/api/v2/contacts", key, ids)
        if args.baseline:  # another source tree, on a database of its own (its migrations may differ)
            procs["baseline"], base = _promoflow(
                db,
                baseline_url,
                workdir / "data-baseline",
                {"PYTHONPATH": str(Path(args.baseline).resolve())},
            )
            _, key, ids = seed(baseline_url, args.contacts, workdir, "b", str(Path(args.baseline).resolve()))
            pg_cpu(baseline_url)
            sides["baseline"] = (base, "/api/v2/contacts", key, ids)
        floor_tenant, floor_key, floor_ids = seed(floor_url, args.contacts, workdir, "f")
        floor_port = free_port()
        procs["floor"] = start(
            [sys.executable, "-m", "uvicorn", "bench.contact_floor_app:app", "--port", str(floor_port),
             "--log-level", "warning", "--no-access-log"],
            {"FLOOR_DATABASE_URL": floor_url, "FLOOR_TENANT_ID": floor_tenant,
             "FLOOR_SAME_WORK": "1" if args.floor_same_work else "0"},
            f"http://127.0.0.1:{floor_port}/x",
        )  # fmt: skip
        sides["floor"] = (f"http://127.0.0.1:{floor_port}", "/contacts", floor_key, floor_ids)
        log(f"{db}: seeded {args.contacts} contacts per side")
        urls = {"promoflow": url, "baseline": baseline_url, "floor": floor_url}
        return _measure(db, args, sides, {side: proc.pid for side, proc in procs.items()}, urls)
    finally:
        for proc in procs.values():
            stop(proc)
        while _watchers:
            _watchers.popitem()[1].close()


def _phase(db: str, args: argparse.Namespace, op: str, level: int, side: str, target: tuple[str, str, str, Path],
           pid: int, url: str) -> dict[str, float]:  # fmt: skip
    """One wrk phase against one side, with the server's and the database's CPU per answered request."""
    base, prefix, key, ids = target
    spy = None
    if args.profile and side == "promoflow" and level == max(args.levels):
        svg = Path(args.profile).resolve() / f"{db}-{op}-c{level}.txt"
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(args.duration),
             "--format", "raw", "--output", str(svg), "--nonblocking", "--rate", os.environ.get("SPY_RATE", "100")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    cpu, backends = cpu_seconds(pid), pg_cpu(url)
    r = wrk(
        base,
        op,
        prefix,
        _listed(op, ids),
        key,
        level,
        args.duration,
        args.names_unchanged,
    )
    # The server's own CPU per answered request: what the shared machine's load does not change.
    r["cpu_us"] = (cpu_seconds(pid) - cpu) / max(r["requests"], 1) * 1e6
    used = sum(t - backends.get(p, 0.0) for p, t in pg_cpu(url).items())
    r["pg_cpu_us"] = used / max(r["requests"], 1) * 1e6
    if spy is not None:
        spy.wait()
    return r


def _measure(db: str, args: argparse.Namespace, sides: dict[str, tuple[str, str, str, Path]], pids: dict[str, int],
             urls: dict[str, str]) -> dict[str, object]:  # fmt: skip
    out: dict[str, object] = {}
    for base, prefix, key, ids in sides.values():  # warm-up: connections, caches, a first block of numbers
        for mode in dict.fromkeys(("create", "update", *args.ops)):
            wrk(base, mode, prefix, _listed(mode, ids), key, 8, 2)
    for op in args.ops:
        for level in args.levels:
            runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side, target in sides.items():
                    runs[side].append(r := _phase(db, args, op, level, side, target, pids[side], urls[side]))
                    log(
                        f"{db:<10} {op:<6} c={level:<3} {side:<9} {r['rps']:7.0f} req/s  p50 {r['p50']:6.1f} ms  "
                        f"p99 {r['p99']:6.1f} ms  CPU {r['cpu_us']:5.0f} µs/req (database {r['pg_cpu_us']:4.0f})  "
                        f"errors {r['errors']}  non-2xx {r['non2xx']}"
                    )
            # Each figure: its median over the rounds.
            got = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()}
            ratio = got["promoflow"]["rps"] / got["floor"]["rps"]
            also = (
                f"  baseline/floor = {got['baseline']['rps'] / got['floor']['rps']:.0%}"
                if "baseline" in got
                else ""
            )
            cpu = "  CPU µs/req " + ", ".join(
                f"{side} {g['cpu_us']:.0f} + {g['pg_cpu_us']:.0f}" for side, g in got.items()
            )
            log(
                f"{db:<10} {op:<6} c={level:<3} promoflow/floor = {ratio:.0%}{also}{cpu}"
                + (f"  (target >= {TARGET:.0%} at 32)" if op in ("create", "update") else "")
            )
            out[f"{op}@{level}"] = {**got, "ratio": ratio}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--contacts", type=int, default=5000, help="seeded contacts per side (update targets)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measured phase")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64], help="concurrent requests")
    p.add_argument("--rounds", type=int, default=1, help="phases per side and level, alternating (medians)")
    p.add_argument(
        "--profile", help="a folder: py-spy samples of promoflow at the highest level (raw format)"
    )
    p.add_argument(
        "--baseline",
        help="the src folder of another source tree (e.g. main's, from `git worktree add`): its promoflow runs too, "
        "on a database of its own, alternating with the others (before/after in one run)",
    )
    p.add_argument(
        "--floor-own-database",
        action="store_true",
        help="the floor on a database of its own (default: on promoflow's, another tenant). With --baseline, "
        "the baseline always has its own, so only then does promoflow's database hold no one else's rows",
    )
    p.add_argument(
        "--names-unchanged",
        action="store_true",
        help="updates change the city (default: the first name and the city, which changes the "
        "name search keys too)",
    )
    p.add_argument(
        "--floor-same-work",
        action="store_true",
        help="SQLite: the floor's update also reads the row, writes the name search keys and the audit entry "
        "(bench/contact_floor_app.py); not the issue's floor",
    )
    p.add_argument(
        "--ops",
        nargs="+",
        choices=("create", "update", "held", "lookup", "get", "receipt"),
        default=["create", "update"],
        help="what to measure: create, update, and held — creates of the e-mails the seeded contacts hold "
        "(a POS's \"create or get\": every answer 200 with the contact; the floor's INSERT … ON CONFLICT writes "
        "nothing), lookup (GET /contacts/id?email= of a seeded contact: the checkout identifying its customer) "
        "and get (GET /contacts/{id}); the floor's reads are one SELECT each; receipt (POST /api/v2/receipts, a plain "
        "receipt of a seeded contact by id; the floor: one INSERT … ON CONFLICT of the row)",
    )
    p.add_argument("--skip-sqlite", action="store_true")
    p.add_argument("--skip-pg", action="store_true")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_pg:
            base = args.pg_url.rsplit("/", 1)[0]
            names = [
                "promoflow_contact_bench",
                "promoflow_contact_bench_baseline",
                "promoflow_contact_bench_floor",
            ]
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                for name in names:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    admin.execute(f'CREATE DATABASE "{name}"')
            try:
                (workdir / "pg").mkdir()
                out["postgresql"] = run(
                    "postgresql", f"{base}/{names[0]}", args, workdir / "pg", f"{base}/{names[1]}",
                    f"{base}/{names[2 if args.floor_own_database else 0]}",
                )  # fmt: skip
            finally:
                with psycopg.connect(args.pg_url, autocommit=True) as admin:
                    for name in names:
                        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not args.skip_sqlite:
            (workdir / "sqlite").mkdir()
            url = f"sqlite:///{workdir / 'sqlite' / 'promoflow.sqlite3'}"
            baseline = f"sqlite:///{workdir / 'sqlite' / 'baseline.sqlite3'}"
            floor = f"sqlite:///{workdir / 'sqlite' / 'floor.sqlite3'}" if args.floor_own_database else url
            out["sqlite"] = run("sqlite", url, args, workdir / "sqlite", baseline, floor)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
