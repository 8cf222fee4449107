"""The routed path on the embedded default during a checkout burst: how long a call that is not on the fast lane
waits while `promoflow serve` (SQLite) answers a fetch burst at full load.

Each side is `promoflow serve --demo` on a data dir of its own. A phase puts wrk (1 thread, --connections) on the
demo's promotion fetch (the fast lane) and, while it runs, sends routed calls one after the other from one client:
the contact count (`GET /api/v2/contacts/count`), a page of promotion definitions (`GET
/api/v2/promotions/multichannels`) and an assignment (`POST …/assign`, a write with its audit entry), a round of
the three every --every seconds, so that every side serves the same routed work. Printed per side: each call's
p50/p90/p99 under the burst and alone (no load), and the burst's rate. Sides alternate, one phase each per round.

    python bench/routed_bench.py
    python bench/routed_bench.py --baseline <another tree>/src     # A/B in one run (that tree's code)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, log, start, stop

CALLS = ("count", "definitions", "assign")


def _env(side: dict[str, Any]) -> dict[str, str]:
    env = {
        "PROMOFLOW_DATA_DIR": str(side["dir"]),
        "PROMOFLOW_PORT": str(side["port"]),
        "PROMOFLOW_FTP_PORT": "0",
    }
    if side["src"]:
        env["PYTHONPATH"] = side["src"]
    return env


def _serve(side: dict[str, Any]) -> subprocess.Popen[bytes]:
    return start([sys.executable, "-m", "promoflow.cli", "serve", "--demo"], _env(side),
                 f"http://127.0.0.1:{side['port']}/healthz")  # fmt: skip


def _prepare(side: dict[str, Any]) -> subprocess.Popen[bytes]:
    """The demo tenant (made by a first start), without a rate limit in the way; the server started again."""
    stop(_serve(side))
    subprocess.run([sys.executable, "-m", "promoflow.cli", "tenant", "set", "demo", "rateLimitPerSecond=1000000",
                    "rateLimitBurst=1000000"], env={**os.environ, **_env(side)}, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    proc = _serve(side)
    demo = json.loads((side["dir"] / "demo-tenant.json").read_text())
    side["key"], side["contacts"] = demo["apiKey"], demo["contactIds"]
    with httpx.Client(base_url=f"http://127.0.0.1:{side['port']}", headers={"apikey": demo["apiKey"]}) as c:
        found = c.get("/api/v2/promotions/multichannels", params={"externalId": "DEMO-20PCT"})
        found.raise_for_status()
        side["promotion"] = found.json()["id"]
    return proc


def _call(c: httpx.Client, side: dict[str, Any], what: str) -> None:
    if what == "count":
        r = c.get("/api/v2/contacts/count", params={"contactType": "Member"})
    elif what == "definitions":
        r = c.get("/api/v2/promotions/multichannels", params={"offset": 0, "count": 10})
    else:
        r = c.post(f"/api/v2/contacts/{side['contacts'][1]}/promotions/{side['promotion']}/assign")
    if r.status_code != 200:
        raise RuntimeError(f"{what}: {r.status_code} {r.text}")


def _sample(side: dict[str, Any], seconds: float, every: float) -> dict[str, list[float]]:
    """The routed calls in turn, one at a time, a round of them every ``every`` seconds (the same routed work on
    every side, however fast it answers) for ``seconds``: their latencies in ms."""
    out: dict[str, list[float]] = {w: [] for w in CALLS}
    start = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{side['port']}", headers={"apikey": side["key"]}) as c:
        for n in itertools.count():
            due = start + n * every
            if due > start + seconds:
                break
            time.sleep(
                max(0.0, due - time.monotonic())
            )  # pacing the client, not synchronising with the server
            for what in CALLS:
                t = time.perf_counter()
                _call(c, side, what)
                out[what].append((time.perf_counter() - t) * 1000)
    return out


def _phase(
    side: dict[str, Any], args: argparse.Namespace, workdir: Path
) -> tuple[dict[str, list[float]], float]:
    script = workdir / f"{side['name']}.lua"
    script.write_text(f'wrk.headers["apikey"] = "{side["key"]}"\n')
    url = f"http://127.0.0.1:{side['port']}/api/v2/contacts/{side['contacts'][0]}/promotions?redemptionChannelType=POS"
    wrk = subprocess.Popen(["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script), url],
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1)  # the burst under way before the first sample (a bench's warm-up, not a synchronisation)
    samples = _sample(side, args.duration - 2, args.every)
    out, _ = wrk.communicate()
    rate = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec"))
    return samples, rate


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", help="another tree's src/ to run as the baseline, alternating")
    parser.add_argument("--duration", type=int, default=15, help="seconds of each loaded phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between rounds of the routed calls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sides = [{"name": "promoflow", "src": ""}]
        if args.baseline:
            sides.append({"name": "baseline", "src": str(Path(args.baseline).resolve())})
        procs = []
        try:
            for side in sides:
                side["dir"], side["port"] = workdir / side["name"], free_port()
                side["dir"].mkdir()
                procs.append(_prepare(side))
                side["idle"] = _sample(side, 5, 0.1)
                side["loaded"], side["rates"] = {w: [] for w in CALLS}, []
            log("sides ready: " + ", ".join(s["name"] for s in sides))
            for r in range(1, args.rounds + 1):
                for side in sides:
                    samples, rate = _phase(side, args, workdir)
                    side["rates"].append(rate)
                    for what in CALLS:
                        side["loaded"][what] += samples[what]
                    log(f"round {r} {side['name']:<10} fetch burst {rate:7.0f} req/s  "
                        + "  ".join(f"{w} p50 {_pct(samples[w], 0.5):6.1f} ms" for w in CALLS))  # fmt: skip
        finally:
            for proc in procs:
                stop(proc)
    print(
        f"\n{args.connections} connections on the fetch, {args.rounds} round(s) of {args.duration} s per side"
    )
    print(
        "| side | call | alone p50 / p99 ms | during the burst p50 / p90 / p99 ms (n) | burst req/s (median) |"
    )
    print("|---|---|---:|---:|---:|")
    for side in sides:
        for what in CALLS:
            idle, loaded = side["idle"][what], side["loaded"][what]
            print(f"| {side['name']} | {what} | {_pct(idle, 0.5):.1f} / {_pct(idle, 0.99):.1f} | "
                  f"{_pct(loaded, 0.5):.1f} / {_pct(loaded, 0.9):.1f} / {_pct(loaded, 0.99):.1f} ({len(loaded)}) | "
                  f"{statistics.median(side['rates']):,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
