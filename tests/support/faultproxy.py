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

**Everything it starts, it ends.** One acceptor thread, and one thread per connection that owns that
connection's sockets (closed by ``with`` whatever happens). Every blocking wait of those threads is a
``select`` on its socket *and* on one wake-up socket that :meth:`FaultProxy.stop` writes to, so a stalled or
half-sent connection ends at once when the proxy stops; ``stop`` then joins every thread and closes the
listening and wake-up sockets, and fails loudly if a thread did not end. (pytest's ``filterwarnings=error``
turns a socket left to the garbage collector into a failure of whichever test happens to be running.)
"""

from __future__ import annotations

import selectors
import socket
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
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024


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


class _Stopping(Exception):
    """The proxy is stopping (or a wait ran out): the connection's thread ends, closing its sockets."""


class FaultProxy:
    """See the module docs. ``choose`` may be replaced at any time (``proxy.choose = …``).

    ``io_timeout`` bounds every wait for the client's request and the server's answer (a stall waits for the
    client or for :meth:`stop`, however long that takes).
    """

    def __init__(self, upstream: str, choose: Chooser | None = None, *, io_timeout: float = 60.0) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None and parts.port is not None
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.choose: Chooser = choose or (lambda _request: FaultSpec())
        self.io_timeout = io_timeout
        self.log: list[ProxyEvent] = []
        self.port = 0
        self._changed = threading.Condition()
        self._lock = threading.Lock()
        self._stopping = False
        self._workers: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def threads(self) -> list[threading.Thread]:
        """The proxy's threads still running (the acceptor and connection threads)."""
        with self._lock:
            running = [t for t in self._workers if t.is_alive()]
        if self._acceptor is not None and self._acceptor.is_alive():
            running.append(self._acceptor)
        return running

    def start(self) -> FaultProxy:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Wake every thread, join them all, close every socket; raise if a thread would not end."""
        assert self._wake_w is not None and self._acceptor is not None
        with self._lock:
            self._stopping = True
        self._wake_w.send(b"x")  # never read: the wake-up socket stays readable for every waiter
        self._acceptor.join(timeout)
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout)
        left = self.threads
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if left:
            raise RuntimeError(f"fault proxy threads did not end: {[t.name for t in left]}")

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

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[ProxyEvent]:
        """Block until at least ``count`` events are logged; all of them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.log) >= count, timeout):
                raise TimeoutError(f"the proxy logged {len(self.log)} of {count} requests")
            return list(self.log)

    # --------------------------------------------------------------------------------------- threads

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                try:
                    conn, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setblocking(True)
                worker = threading.Thread(
                    target=self._serve, args=(conn,), name="faultproxy-conn", daemon=True
                )
                with self._lock:
                    if self._stopping:
                        conn.close()
                        return
                    self._workers.add(worker)
                worker.start()

    def _wait_readable(self, sock: socket.socket, timeout: float | None) -> None:
        """Return once ``sock`` has data (or EOF); raise _Stopping if the proxy stops or ``timeout`` passes."""
        assert self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            ready = {key.fileobj for key, _ in selector.select(timeout)}
        if self._wake_r in ready or sock not in ready:
            raise _Stopping

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._exchange(conn)
        except (_Stopping, OSError):
            pass  # the client or the server went away, or the proxy stops: the sockets are closed
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _exchange(self, conn: socket.socket) -> None:
        raw, request = self._read_request(conn)
        spec = self.choose(request)
        answer = self._forward(raw) if spec.forwards else b""
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
        # Logged before the client sees anything: a waiter learns of an applied request first.
        self._record(ProxyEvent(request, spec, status))
        if spec.fault is Fault.PASS:
            conn.sendall(answer)
        elif spec.fault in (Fault.STATUS, Fault.STATUS_AFTER):
            assert spec.status is not None
            conn.sendall(_status_response(spec.status, spec.retry_after))
        elif spec.fault in (Fault.STALL_BEFORE, Fault.STALL_AFTER):
            self._until_hang_up(conn)
        # DROP_BEFORE / DROP_AFTER: closed without a word (by _serve).

    def _read_request(self, conn: socket.socket) -> tuple[bytes, ProxyRequest]:
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > _MAX_HEAD:
                raise _Stopping
            self._wait_readable(conn, self.io_timeout)
            chunk = conn.recv(_CHUNK)
            if not chunk:
                raise _Stopping  # the client hung up before its request was complete
            data += chunk
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
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
        while len(body) < length:
            self._wait_readable(conn, self.io_timeout)
            chunk = conn.recv(_CHUNK)
            if not chunk:
                raise _Stopping
            body += chunk
        body = body[:length]
        kept.append("Connection: close")
        raw = ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1") + body
        return raw, ProxyRequest(method, path, headers, body)

    def _forward(self, raw: bytes) -> bytes:
        with socket.create_connection((self.upstream_host, self.upstream_port), self.io_timeout) as upstream:
            upstream.sendall(raw)
            answer = b""
            while True:  # the server closes after its answer (Connection: close)
                self._wait_readable(upstream, self.io_timeout)
                chunk = upstream.recv(_CHUNK)
                if not chunk:
                    return answer
                answer += chunk

    def _until_hang_up(self, conn: socket.socket) -> None:
        """Stay silent until the client hangs up (its timeout) or the proxy stops."""
        while True:
            self._wait_readable(conn, None)
            if not conn.recv(_CHUNK):
                return
