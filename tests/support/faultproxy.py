"""An HTTP fault-injection proxy on 127.0.0.1, between the SDK and a real `promoflow serve`.

Each client connection carries one request (the proxy answers with ``Connection: close``). For every request
``choose`` picks a :class:`Fault`:

- ``PASS``: forwarded, the answer relayed.
- ``DROP_BEFORE``: the connection is closed without forwarding (the server never saw the request).
- ``DROP_AFTER``: forwarded and answered by the server (which applied it), then the connection is closed
  without relaying the answer: a response lost after the server applied the change.
- ``STALL_BEFORE`` / ``STALL_AFTER``: the proxy holds the connection silent until the client gives up (its
  timeout), without forwarding / after the server applied the request.
- ``STATUS`` (``status``, optional ``retry_after``): answered by the proxy itself (500/502/503/429…), not
  forwarded; ``STATUS_AFTER``: forwarded (applied), then answered with that status instead (a gateway that
  lost the server's answer).

Everything the proxy did is in ``log`` (``ProxyEvent``); ``wait_for(predicate)`` blocks until an event
matching it was logged (the event is set by the proxy thread, no sleeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class Fault(StrEnum):
    PASS = "pass"
    DROP_BEFORE = "drop_before"
    DROP_AFTER = "drop_after"
    STALL_BEFORE = "stall_before"
    STALL_AFTER = "stall_after"
    STATUS = "status"
    STATUS_AFTER = "status_after"


@dataclass(frozen=True)
class FaultSpec:
    fault: Fault = Fault.PASS
    status: int | None = None
    retry_after: str | None = None

    @property
    def forwards(self) -> bool:
        return self.fault in (Fault.PASS, Fault.DROP_AFTER, Fault.STALL_AFTER, Fault.STATUS_AFTER)

    def label(self) -> str:
        if self.fault in (Fault.STATUS, Fault.STATUS_AFTER):
            suffix = f"+retry-after={self.retry_after}" if self.retry_after is not None else ""
            return f"{self.fault.value}:{self.status}{suffix}"
        return self.fault.value


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class ProxyEvent:
    request: ProxyRequest
    spec: FaultSpec
    upstream_status: int | None
    """The server's status when the request was forwarded (None otherwise)."""


Chooser = Callable[[ProxyRequest], FaultSpec]

_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}  # fmt: skip


def _status_response(status: int, retry_after: str | None) -> bytes:
    body = (
        b'{"statusCode": %d, "errorCode": "InjectedFault", "message": "injected by the fault proxy"}' % status
    )
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class FaultProxy:
    """See the module docs. ``choose`` may be replaced at any time (``proxy.choose = …``)."""

    def __init__(self, upstream: str, choose: Chooser | None = None) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None and parts.port is not None
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.choose: Chooser = choose or (lambda _request: FaultSpec())
        self.log: list[ProxyEvent] = []
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._closing: asyncio.Event | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None and self._closing is not None
            self._closing.set()
            self._server.close()
            await self._server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ events

    def _record(self, event: ProxyEvent) -> None:
        with self._changed:
            self.log.append(event)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[ProxyEvent], bool], timeout: float = 10.0) -> ProxyEvent:
        """Block until an event matching ``predicate`` is logged (one already logged counts)."""
        with self._changed:
            found: list[ProxyEvent] = []

            def seen() -> bool:
                found[:] = [e for e in self.log if predicate(e)]
                return bool(found)

            if not self._changed.wait_for(seen, timeout):
                raise TimeoutError("the proxy saw no such request")
            return found[0]

    # ----------------------------------------------------------------------------------------- handling

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, ProxyRequest] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        kept: list[str] = [lines[0]]
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            if name.strip().lower() not in ("connection", "keep-alive"):
                kept.append(line)
        length = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(length) if length else b""
        kept.append("Connection: close")
        raw = ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1") + body
        return raw, ProxyRequest(method, path, headers, body)

    async def _forward(self, raw: bytes) -> bytes:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            up_writer.write(raw)
            await up_writer.drain()
            return await up_reader.read()  # the server closes after its answer (Connection: close)
        finally:
            up_writer.close()
            await up_writer.wait_closed()

    async def _stall(self, reader: asyncio.StreamReader) -> None:
        """Stay silent until the client hangs up (its timeout) or the proxy stops."""
        assert self._closing is not None
        hang_up = asyncio.ensure_future(reader.read())
        closing = asyncio.ensure_future(self._closing.wait())
        await asyncio.wait({hang_up, closing}, return_when=asyncio.FIRST_COMPLETED)
        for task in (hang_up, closing):
            task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            got = await self._read_request(reader)
            if got is None:
                return
            raw, request = got
            spec = self.choose(request)
            answer = await self._forward(raw) if spec.forwards else b""
            status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
            # Logged before the client sees anything: a waiter learns of an applied request first.
            self._record(ProxyEvent(request, spec, status))
            if spec.fault is Fault.PASS:
                writer.write(answer)
            elif spec.fault in (Fault.STATUS, Fault.STATUS_AFTER):
                assert spec.status is not None
                writer.write(_status_response(spec.status, spec.retry_after))
            elif spec.fault in (Fault.STALL_BEFORE, Fault.STALL_AFTER):
                await self._stall(reader)
            # DROP_BEFORE / DROP_AFTER: close without a word.
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
