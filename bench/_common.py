"""What the benchmark scripts share: logging, ports, starting and stopping servers, reading /proc."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], env: dict[str, str], health: str, timeout: float = 60) -> subprocess.Popen[bytes]:
    """Start a server process (own session, quiet) and return once ``health`` answers."""
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a process that is starting up, not synchronising measured steps
    stop(proc)
    raise RuntimeError(f"{cmd} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def process_tree(pid: int) -> list[int]:
    """A process and its direct children (uvicorn's worker processes)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            pass
    return total


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def admin_sign_in(client: Any, email: str, password: str) -> str:
    """Sign a TestClient in to the admin UI; answers the session's CSRF token (for the benches' form posts)."""
    token = _CSRF.search(client.get("/admin/login").text).group(1)  # type: ignore[union-attr]
    r = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    return _CSRF.search(client.get("/admin/promotions").text).group(1)  # type: ignore[union-attr]


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    """Wall seconds of ``runs`` calls of ``fn``, one after the other."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def on_fresh_database(
    pg_url: str, sqlite: bool, prefix: str, run: Callable[[str, Path], Awaitable[None]]
) -> None:
    """``run(url, data_dir)`` on a database of its own: a SQLite file in a temporary folder, or a PostgreSQL
    database ``<prefix>_<random>`` created on ``pg_url``'s server and dropped afterwards."""
    import asyncio
    import tempfile
    import uuid

    import psycopg

    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        data_dir = Path(tmp)
        if sqlite:
            asyncio.run(run(f"sqlite:///{data_dir / 'promoflow.sqlite3'}", data_dir))
            return
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            asyncio.run(run(pg_url.rsplit("/", 1)[0] + "/" + name, data_dir))
        finally:
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
