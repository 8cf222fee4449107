"""Access-log cost per request (issue 11 §7): the front layer (`http.middleware.Front`) with the access log around a
bare ASGI app, against the same layer without it and the bare app (the floor) in the same run, and against one
`logging.info` line of the same content for comparison.

    python bench/accesslog_bench.py              # 200,000 requests per variant
    python bench/accesslog_bench.py -n 50000

In-process and single-threaded: it measures the middleware's own work (timing, the tenant look-up — one SHA-256
of the API key and a dict probe —, building and writing the line), not the network or the database. Lines go to
/dev/null: through a plain stream, and through a line-buffered one as stderr is (one write system call a line).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import time
from types import SimpleNamespace
from typing import Any

from promoflow.server.http.accesslog import AccessLog
from promoflow.server.http.middleware import Front

KEY = b"pf_" + b"k" * 43
PATH = "/api/v2/contacts/0f8fad5b-d9cb-469f-a165-70867728950e/promotions"
SCOPE = {
    "type": "http",
    "method": "GET",
    "path": PATH,
    "raw_path": PATH.encode(),
    "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"apikey", KEY),
                (b"content-type", b"application/json")],
}  # fmt: skip


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"[]"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request"}


async def send(message: Any) -> None:
    return None


async def per_request_us(app: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await app(SCOPE, receive, send)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=200_000)
    n = p.parse_args().n
    cache = {hashlib.sha256(KEY).hexdigest(): (SimpleNamespace(name="acme"), 0.0)}
    holder = SimpleNamespace(state=SimpleNamespace(key_cache=cache), shutting_down=False)
    plain = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run
    line_buffered = open(os.devnull, "w", buffering=1)  # noqa: SIM115

    async def run() -> None:
        floor = await per_request_us(bare_app, n)
        print(f"floor (bare app)                       {floor:6.2f} µs/request")
        bare = await per_request_us(Front(bare_app, max_body=1 << 20, max_inflight=2000, holder=holder), n)
        print(f"front layer, no access log             {bare:6.2f} µs/request  (+{bare - floor:.2f} µs)")
        for label, json_format, stream in (
            ("text, plain stream", False, plain),
            ("json, plain stream", True, plain),
            ("text, line-buffered (as stderr)", False, line_buffered),
        ):
            access = AccessLog(holder=holder, json=json_format, stream=stream)
            mw = Front(bare_app, max_body=1 << 20, max_inflight=2000, holder=holder, access=access)
            us = await per_request_us(mw, n)
            print(f"access log, {label:<27} {us:6.2f} µs/request  (+{us - bare:.2f} µs over the layer)")

    asyncio.run(run())
    log = logging.getLogger("bench.access")
    handler = logging.StreamHandler(line_buffered)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    start = time.perf_counter()
    for _ in range(n):
        log.info("%s %s %d %.1fms tenant=%s", "GET", PATH, 200, 1.23, "acme")
    print(f"for comparison: one logging.info line  {(time.perf_counter() - start) / n * 1e6:6.2f} µs")
    plain.close()
    line_buffered.close()


if __name__ == "__main__":
    main()
