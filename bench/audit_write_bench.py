"""Where a contact update's database time goes on SQLite (issue 15 §3): the same write group promoflow's fast
lane commits (read the row, write it, append the audit entry; eight updates a transaction, a passive checkpoint
every 1,000), in raw `sqlite3` on promoflow's own schema, timed phase by phase — with the audit entry as it is,
without it, and with its indexes dropped, side by side in one run.

It answers "what does the audit entry cost a contact update on SQLite, and which part of it": the figures are
per update, wall time on this machine (CPU time alongside).

Run: python bench/audit_write_bench.py [--updates 40000] [--group 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from promoflow.server.migrate import upgrade

AUDIT = (
    "INSERT INTO audit_event (tenant_id, at, actor_kind, actor, actor_ref, action, object_type, object_id, "
    'contact_id, promotion_id, "before", "after") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)'
)
VARIANTS = {
    "as promoflow": (),
    "no audit entry": None,
    "audit, no contact index": ("contact",),
    "audit, no index": ("time", "actor", "actor_kind", "action", "object", "contact", "promotion"),
}


def _database(folder: Path, drop: tuple[str, ...] | None) -> tuple[sqlite3.Connection, str, list[str]]:
    path = folder / f"{uuid.uuid4().hex}.sqlite3"
    upgrade(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "mmap_size=268435456",
                   "wal_autocheckpoint=0"):  # fmt: skip
        conn.execute(f"PRAGMA {pragma}")
    tenant = uuid.uuid4().hex
    columns = [(r[1], r[2].upper(), r[3], r[4]) for r in conn.execute("PRAGMA table_info(tenant)")]
    values: dict[str, object] = {}
    for name, kind, notnull, default in columns:
        if name == "id":
            values[name] = tenant
        elif notnull and default is None:
            values[name] = "{}" if "JSON" in kind else 0 if ("INT" in kind or "BOOL" in kind) else "x"
    conn.execute(
        f"INSERT INTO tenant ({','.join(values)}) VALUES ({','.join('?' * len(values))})",
        list(values.values()),
    )
    now, ids = "2026-12-06 00:00:00.000000", []
    for i in range(1000):
        cid = uuid.uuid4().hex
        ids.append(cid)
        attrs = json.dumps({"firstName": "A", "lastName": "B", "email": f"a{i}@x.se", "city": "X"})
        conn.execute(
            "INSERT INTO contact (id, tenant_id, contact_type, attributes, preferences, key_value, email, approved, "
            "created_at, updated_at, name_key, name_key_rev) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, tenant, "Member", attrs, "{}", f"a{i}@x.se", f"a{i}@x.se", 1, now, now, "a b", "b a"),
        )
    for index in drop or ():
        conn.execute(f"DROP INDEX ix_audit_event_{index}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn, tenant, ids


def run(folder: Path, name: str, updates: int, group: int) -> dict[str, float]:
    drop = VARIANTS[name]
    conn, tenant, ids = _database(folder, drop if drop is not None else ())
    spent: collections.Counter[str] = collections.Counter()
    clock, cpu0 = time.perf_counter, time.process_time()
    for g in range(updates // group):
        conn.execute("BEGIN IMMEDIATE")
        for k in range(group):
            cid = random.choice(ids)
            t0 = clock()
            row = conn.execute(
                "SELECT attributes FROM contact WHERE id = ? AND tenant_id = ?", (cid, tenant)
            ).fetchone()
            t1 = clock()
            attrs = json.loads(row[0])
            before, attrs["city"] = {"city": attrs.get("city")}, f"C{g}-{k}"
            now = datetime.now(UTC).isoformat(" ", "microseconds")[:26]
            t2 = clock()
            conn.execute(
                "UPDATE contact SET attributes = ?, updated_at = ? WHERE id = ? AND tenant_id = ?",
                (json.dumps(attrs), now, cid, tenant),
            )
            t3 = clock()
            if drop is not None:
                conn.execute(AUDIT, (tenant, now, "api_key", "bench key", "pf_123", "contact.update", "contact",
                                     str(uuid.UUID(cid)), cid, None, json.dumps(before),
                                     json.dumps({"city": attrs["city"]})))  # fmt: skip
            t4 = clock()
            spent.update({"read": t1 - t0, "python": t2 - t1, "update": t3 - t2, "audit insert": t4 - t3})
        t5 = clock()
        conn.execute("COMMIT")
        spent["commit"] += clock() - t5
        if g % (1000 // group) == 0:
            t6 = clock()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            spent["checkpoint"] += clock() - t6
    figures = {k: v / updates * 1e6 for k, v in spent.items()}
    figures["total"] = sum(figures.values())
    figures["cpu"] = (time.process_time() - cpu0) / updates * 1e6
    conn.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--updates", type=int, default=40_000)
    parser.add_argument("--group", type=int, default=8, help="updates a transaction (the lane's write group)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
        for _ in range(args.rounds):
            for name in VARIANTS:  # alternating, so the machine's drift is shared
                rows[name].append(run(Path(tmp), name, args.updates, args.group))
        phases = ["read", "python", "update", "audit insert", "commit", "checkpoint", "total", "cpu"]
        print(
            f"µs per update (median of {args.rounds}), {args.updates:,} updates, {args.group} a transaction"
        )
        print(f"{'':26s}" + "".join(f"{p:>14s}" for p in phases))
        for name, runs in rows.items():
            med = {p: sorted(r[p] for r in runs)[len(runs) // 2] for p in phases}
            print(f"{name:26s}" + "".join(f"{med[p]:14.1f}" for p in phases))


if __name__ == "__main__":
    main()
