"""ASGI middleware: body size limit (413), JSON content type (415), overload and shutdown (503)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...wire.errors import ErrorCode

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


async def _send_error(
    send: Send, status: int, code: ErrorCode, message: str, retry_after: int | None = None
) -> None:
    body = json.dumps({"statusCode": status, "errorCode": code.value, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    # An HTTPException so FastAPI's body reader lets it through to the 413 handler instead of answering 400.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes")


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, max_inflight: int, state: Any) -> None:
        self.app = app
        self.max_body = max_body
        self.max_inflight = max_inflight
        self.state = state
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.state.shutting_down and path.startswith("/api/"):
            await _send_error(
                send, 503, ErrorCode.SERVICE_UNAVAILABLE, "the server is shutting down", retry_after=5
            )
            return
        if self.inflight >= self.max_inflight and path.startswith("/api/"):
            await _send_error(
                send, 503, ErrorCode.SERVICE_UNAVAILABLE, "the server is overloaded", retry_after=2
            )
            return
        method = scope["method"].encode() if isinstance(scope["method"], str) else scope["method"]
        headers = dict(scope["headers"])
        if method in _BODY_METHODS and path.startswith("/api/"):
            length = headers.get(b"content-length")
            has_body = (
                length is not None and length.strip() not in (b"0", b"")
            ) or b"transfer-encoding" in headers
            if length is not None and length.strip().isdigit() and int(length) > self.max_body:
                await _send_error(
                    send, 413, ErrorCode.PAYLOAD_TOO_LARGE, f"the body is larger than {self.max_body} bytes"
                )
                return
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if has_body and not (ctype == b"application/json" or ctype.endswith(b"+json")):
                await _send_error(
                    send,
                    415,
                    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                    "send the body as JSON with the header Content-Type: application/json",
                )
                return
            receive = self._limited(receive)
        self.inflight += 1
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except _TooLarge:
            if not started:
                await _send_error(
                    send, 413, ErrorCode.PAYLOAD_TOO_LARGE, f"the body is larger than {self.max_body} bytes"
                )
        finally:
            self.inflight -= 1

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        return limited
