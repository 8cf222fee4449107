"""Test helpers for the SDK: a real HTTP server on 127.0.0.1 scripted per test, and a fake clock."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encoded(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body).encode()


class _Drop:
    """Read the request, then close the connection without answering (the request did reach the server)."""


class _Hang:
    """Never answer (until the test ends): the client's read timeout fires."""


DROP = _Drop()
HANG = _Hang()

Step = Reply | _Drop | _Hang | Callable[[Recorded], "Reply | _Drop"]


class ScriptedServer:
    """Answers requests from a queue of scripted steps, in order, and records every request."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Step] = deque()
        self._lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                recorded = Recorded(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                )
                with server._lock:
                    server.requests.append(recorded)
                    step = server._script.popleft() if server._script else None
                if callable(step) and not isinstance(step, Reply | _Drop | _Hang):
                    step = step(recorded)
                if step is None:
                    step = Reply(500, {"statusCode": 500, "errorCode": "Unscripted", "message": self.path})
                if isinstance(step, _Hang):
                    server.release.wait(timeout=30)
                    self.close_connection = True
                    return
                if isinstance(step, _Drop):
                    self.close_connection = True
                    return
                assert isinstance(step, Reply)
                payload = step.encoded()
                self.send_response(step.status)
                headers = {"Content-Type": "application/json", **step.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval only makes shutdown() return quickly at teardown.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def expect(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
