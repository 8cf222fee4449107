"""The test fault proxy ends everything it starts: stopped with connections in every state (stalled, half-sent,
idle, forwarding), or after a burst of concurrent requests with random faults, it leaves no thread and no
socket behind (a leaked socket would fail whichever test the garbage collector happened to run in)."""

from __future__ import annotations

import contextlib
import gc
import random
import socket
import threading
import time
import warnings
from collections.abc import Iterator

import httpx
import pytest

from tests.support.faultproxy import Fault, FaultProxy, FaultSpec, ProxyRequest

from ._support import HANG, Reply, ScriptedServer


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _no_resource_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def _connect(proxy: FaultProxy, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()


def test_stop_ends_every_connection_in_every_state(upstream: ScriptedServer) -> None:
    upstream.expect(HANG)  # the forwarded request below waits for an answer that never comes
    proxy = FaultProxy(
        upstream.url, lambda r: FaultSpec(Fault.STALL_BEFORE if r.path == "/stall" else Fault.PASS)
    )
    proxy.start()
    clients: list[socket.socket] = []
    try:
        clients.append(_connect(proxy, _request("/stall")))
        clients.append(_connect(proxy, b"POST /half HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly part"))
        clients.append(_connect(proxy))  # connected, never sends
        clients.append(_connect(proxy, _request("/forwarded")))
        proxy.wait_for(lambda e: e.request.path == "/stall")
        deadline = time.monotonic() + 10
        while len(upstream.requests) < 1 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert [r.path for r in upstream.requests] == ["/forwarded"]
        assert len(proxy.threads) == 5  # the acceptor and one thread per connection

        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 5, "stop waited for a client or the server"
        assert proxy.threads == []
        for client in clients:  # every connection was closed by the proxy: the client reads EOF (or a reset)
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(1024) == b""
    finally:
        for client in clients:
            client.close()
        upstream.release.set()
    assert _no_resource_warnings() == []


def test_a_burst_of_concurrent_requests_through_random_faults_leaves_nothing_behind(
    upstream: ScriptedServer,
) -> None:
    count = 40
    upstream.expect(*[Reply(200, {"ok": True}) for _ in range(count)])
    rng = random.Random(7)
    lock = threading.Lock()
    menu = [FaultSpec(), FaultSpec(Fault.DROP_BEFORE), FaultSpec(Fault.DROP_AFTER), FaultSpec(Fault.STALL_BEFORE),
            FaultSpec(Fault.STALL_AFTER), FaultSpec(Fault.STATUS, 503), FaultSpec(Fault.STATUS_AFTER, 502)]  # fmt: skip

    def choose(_request: ProxyRequest) -> FaultSpec:
        with lock:
            return rng.choice(menu)

    outcomes: list[str] = []

    def one(proxy_url: str, i: int) -> None:
        try:
            with httpx.Client(timeout=1.0) as http:
                outcomes.append(str(http.get(f"{proxy_url}/r{i}").status_code))
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    with FaultProxy(upstream.url, choose) as proxy:
        threads = [threading.Thread(target=one, args=(proxy.url, i)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(outcomes) == count
        # A forwarded request is logged once the server answered, which may be after the client gave up.
        assert len(proxy.wait_for_events(count)) == count
    assert proxy.threads == []
    assert {"200", "503", "502"} <= set(outcomes) and any(not o.isdigit() for o in outcomes)
    assert _no_resource_warnings() == []
