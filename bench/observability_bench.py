"""What metrics and the shared rate limit cost (issue 15 §4), with core_bench's load: fetch and redeem on PostgreSQL.

Three `promoflow api` servers run side by side on one seeded database and the load alternates between them phase
by phase (fetch, redeem) for --rounds rounds, so a shared host's drift hits all alike:

- bare:    PROMOFLOW_METRICS_ENABLED=false, no rate limit (what promoflow cost before issue 15 §4)
- metrics: metrics on, no rate limit
- limited: metrics on and a rate limit every request goes through, above the load (so nothing is refused):
           the shared PostgreSQL limiter (tokens leased from the database in batches of 1/20 s of the rate)
- local:   the same with PROMOFLOW_RATE_LIMIT_SHARED=false (each process its own buckets), for comparison

    python bench/observability_bench.py --contacts 20000 --duration 5 --rounds 2
Needs wrk and PostgreSQL at --pg-url. The servers' pools are small (--pool-size) so four of them fit in the
PostgreSQL server's connection limit beside other users. Prints req/s and p99 per variant and the ratio to `bare`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import psycopg
from _common import free_port, log, start, stop
from core_bench import _chunks, _pooled, _rotated, id_files, seed_pg, wrk

FETCH = ("GET", "/api/v2/contacts/", "/promotions?redemptionChannelType=POS", None)
REDEEM = ("POST", "/api/v2/promotions/codes/", "/redeem", '{"redemptionChannel":"POS"}')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--contacts", type=int, default=20_000)
    p.add_argument("--per-contact", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--rate", type=float, default=5000.0, help="the limited variants' rate limit (above the load)"
    )
    p.add_argument("--variants", default="bare,metrics,limited,local")
    p.add_argument(
        "--pool-size", type=int, default=8, help="connections per pool (four servers share one PostgreSQL)"
    )
    args = p.parse_args()
    variants = {
        "bare": {"PROMOFLOW_METRICS_ENABLED": "false", "PROMOFLOW_DEFAULT_RATE_LIMIT_PER_SECOND": "0"},
        "metrics": {"PROMOFLOW_DEFAULT_RATE_LIMIT_PER_SECOND": "0"},
        "limited": {"PROMOFLOW_DEFAULT_RATE_LIMIT_PER_SECOND": str(args.rate),
                    "PROMOFLOW_DEFAULT_RATE_LIMIT_BURST": str(int(args.rate * 2))},
        "local": {"PROMOFLOW_DEFAULT_RATE_LIMIT_PER_SECOND": str(args.rate),
                  "PROMOFLOW_DEFAULT_RATE_LIMIT_BURST": str(int(args.rate * 2)),
                  "PROMOFLOW_RATE_LIMIT_SHARED": "false"},
    }  # fmt: skip
    chosen = {k: variants[k] for k in args.variants.split(",")}
    name = "promoflow_obs_bench"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = args.pg_url.rsplit("/", 1)[0] + "/" + name
    from promoflow.server.migrate import upgrade

    upgrade(url)
    tenant_id, key = seed_pg(url, args.contacts, args.per_contact)
    with psycopg.connect(url, autocommit=True) as conn:  # the server's default limit decides, per variant
        conn.execute(
            "UPDATE tenant SET settings = settings - 'rateLimitPerSecond' WHERE id = %s", (tenant_id,)
        )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        contacts, a, b = id_files(url, tenant_id, workdir)
        every = workdir / "assignments.txt"
        every.write_text(a.read_text() + b.read_text())
        chunks = _chunks(every, len(chosen) * (args.rounds + 1))
        redeem_ids = {
            v: chunks[i * (args.rounds + 1) : (i + 1) * (args.rounds + 1)] for i, v in enumerate(chosen)
        }
        fetch_ids = _rotated(contacts, args.rounds)
        servers, bases = {}, {}
        try:
            for v, env in chosen.items():
                port = free_port()
                servers[v] = start(
                    [sys.executable, "-m", "promoflow.cli", "api", "--port", str(port), "--database-url", url,
                     "--data-dir", str(workdir / v)],
                    {"PROMOFLOW_LOG_LEVEL": "warning", "PROMOFLOW_DB_POOL_SIZE": str(args.pool_size), **env},
                    f"http://127.0.0.1:{port}/healthz",
                )  # fmt: skip
                bases[v] = f"http://127.0.0.1:{port}"
            for v in chosen:  # warm-up, not counted
                wrk(bases[v], *FETCH[:3], contacts, key, FETCH[3], args.connections, 3)
                wrk(bases[v], *REDEEM[:3], redeem_ids[v][0], key, REDEEM[3], args.connections, 3)
            runs: dict[str, dict[str, list[dict[str, float]]]] = {
                v: {"fetch": [], "redeem": []} for v in chosen
            }
            for k in range(args.rounds):
                for op, (method, prefix, suffix, body) in (("fetch", FETCH), ("redeem", REDEEM)):
                    for v in chosen:
                        ids = fetch_ids[k] if op == "fetch" else redeem_ids[v][k + 1]
                        r = wrk(
                            bases[v], method, prefix, suffix, ids, key, body, args.connections, args.duration
                        )
                        r["rss_mb"] = 0.0
                        runs[v][op].append(r)
                        log(f"round {k + 1} {v:<8} {op:<7} {r['rps']:7.0f} req/s  p99 {r['p99']:6.1f} ms  "
                            f"non-2xx {r['non2xx']}  errors {r['errors']}")  # fmt: skip
        finally:
            for proc in servers.values():
                stop(proc)
    out = {v: {op: _pooled(rs) for op, rs in ops.items()} for v, ops in runs.items()}
    base = out.get("bare")
    for op in ("fetch", "redeem"):
        for v, res in out.items():
            ratio = f" = {res[op]['rps'] / base[op]['rps']:.0%} of bare" if base else ""
            log(f"{op:<7} {v:<8} {res[op]['rps']:7.0f} req/s{ratio}; p99 median round {res[op]['p99']:.1f} ms, "
                f"worst {res[op]['p99_worst']:.1f} ms; non-2xx {res[op]['non2xx']}")  # fmt: skip
    for res in out.values():
        for op in res.values():
            op.pop("rounds", None)  # type: ignore[attr-defined]
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
