"""The one ASGI layer in front of the routes (`Front`): the access log and the request metrics around everything,
then the guard (overload and shutdown 503, body size 413, JSON content type 415), then the request's text
(`encoding`: 400 `InvalidEncoding` / `InvalidJson`), then the app — or, for a request of a fast route (a checkout's
fetch and redeem…), its fast handler at once (`edge.FastRoutes`), without the framework's layers and route scan.

One layer, not four: each layer of its own wrapped ``send`` (and some ``receive``) in a closure and added a
coroutine frame to every message of every request; here one wrapper sees the answer once, for all of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...wire.errors import ErrorCode
from ..exceptions import InvalidJsonError
from .accesslog import AccessLog
from .edge import FastRoutes
from .encoding import encoding_problem, json_problem, read_body, refuse, replay
from .errors import InvalidEncodingError
from .exception_handlers import CLIENT_CLOSED, client_gone

_BODY_METHODS = {"POST", "PUT", "PATCH"}
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


async def _send_error(
    send: Send, status: int, code: ErrorCode, message: str, retry_after: int | None = None
) -> None:
    body = json.dumps({"statusCode": status, "errorCode": code.value, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_type(ctype: bytes | None) -> bool:
    """A JSON media type (``Content-Type`` without its parameters, any case)."""
    if ctype is None:
        return False
    ctype = ctype.split(b";", 1)[0].strip().lower()
    return ctype == b"application/json" or ctype.endswith(b"+json")


class _Head:
    """What the guard and the text checks read of the request's headers: the first and the last ``Content-Type``
    (the checks of the body's text and of its type, as each has always read it), the last ``Content-Length``, and
    whether a body is declared (a length other than 0, or a transfer encoding)."""

    __slots__ = ("chunked", "first_type", "has_body", "last_type", "length")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        named = dict(headers)  # the last of each name
        self.last_type = self.first_type = named.get(b"content-type")
        if len(named) < len(headers):  # a name repeats
            self.first_type = next((v for k, v in headers if k == b"content-type"), None)
        length = self.length = named.get(b"content-length")
        self.chunked = b"transfer-encoding" in named
        self.has_body = (length is not None and length.strip() not in (b"0", b"")) or self.chunked

    def fits(self, limit: int) -> bool:
        """The body is known to be at most ``limit`` bytes: its declared length (the server reads no more)."""
        length = self.length
        return not self.chunked and length is not None and length.isdigit() and int(length) <= limit


class _TooLarge(HTTPException):
    # An HTTPException so FastAPI's body reader lets it through to the 413 handler instead of answering 400.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes")


class Front:
    """``holder.shutting_down`` says the server is stopping; ``metrics`` (`observability.http.RequestMetrics`)
    and ``access`` (`accesslog.AccessLog`) are each None when turned off."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        max_inflight: int,
        holder: Any,
        metrics: Any = None,
        access: AccessLog | None = None,
        fast: FastRoutes | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_inflight = max_inflight
        self.holder = holder
        self.metrics = metrics
        self.access = access
        self.fast = fast
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send, None)

    async def serve(self, scope: Scope, receive: Receive, send: Send, on_error: ErrorHandler | None) -> None:
        """An HTTP request. ``on_error``: the app's handler of an unexpected error, when this layer is the first
        the request meets (`app.App`): then it answers such an error as the framework's server-error layer would
        (the handler's answer, if nothing was sent yet, through the server's own ``send``), and re-raises it."""
        metrics, access = self.metrics, self.access
        started = time.perf_counter()
        root = scope.get("root_path", "")
        status = 500  # what the server answers when the app fails before it starts a response
        answered = False
        redeem = metrics.redeem_of(scope) if metrics is not None else None

        async def forward(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                if redeem is not None:
                    redeem.start(message)
            elif redeem is not None:
                redeem.chunk(message)
            await send(message)

        try:
            head = _Head(scope["headers"])
            refusal = self._refusal(scope, head)
            if refusal is not None:
                await _send_error(forward, *refusal)
                return
            if (
                scope["method"] in _BODY_METHODS
                and scope["path"].startswith("/api/")
                and not head.fits(self.max_body)
            ):
                receive = self._limited(receive)
            self.inflight += 1
            try:
                await self._checked(scope, head, receive, forward)
            except _TooLarge:
                if not answered:
                    await _send_error(
                        forward,
                        413,
                        ErrorCode.PAYLOAD_TOO_LARGE,
                        f"the body is larger than {self.max_body} bytes",
                    )
            finally:
                self.inflight -= 1
        except ClientDisconnect:
            # The client went away mid-body: nothing to answer, nothing written (`client_gone`).
            if not answered:
                status = CLIENT_CLOSED
                client_gone(scope)
        except Exception as exc:
            if on_error is not None and not answered:
                await (await on_error(Request(scope), exc))(scope, receive, send)
            raise
        finally:
            elapsed = time.perf_counter() - started
            if metrics is not None:
                metrics.record(scope, root, status, elapsed, redeem, self.inflight == 0)
            if access is not None:
                access.write(scope, status, elapsed * 1000.0, self.inflight == 0)

    def _refusal(
        self, scope: Scope, head: _Head
    ) -> tuple[int, ErrorCode, str] | tuple[int, ErrorCode, str, int] | None:
        """The guard's answer to an API request it refuses before the app sees it, or None."""
        path: str = scope["path"]
        if not path.startswith("/api/"):
            return None
        if self.holder.shutting_down:
            return 503, ErrorCode.SERVICE_UNAVAILABLE, "the server is shutting down", 5
        if self.inflight >= self.max_inflight:
            return 503, ErrorCode.SERVICE_UNAVAILABLE, "the server is overloaded", 2
        if scope["method"] not in _BODY_METHODS:
            return None
        length = head.length
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            return 413, ErrorCode.PAYLOAD_TOO_LARGE, f"the body is larger than {self.max_body} bytes"
        if head.has_body and not _json_type(head.last_type):
            return (
                415,
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with the header Content-Type: application/json",
            )
        return None

    async def _checked(self, scope: Scope, head: _Head, receive: Receive, send: Send) -> None:
        """The request's text (`encoding`), then the app — or, for a fast route, its fast handler (`FastRoutes`).
        The three redeem paths read their bodies themselves; a request that declares no body has none to check."""
        problem = encoding_problem(scope)
        if problem is not None:
            await refuse(InvalidEncodingError(problem), scope, receive, send)
            return
        if head.has_body and not scope["path"].endswith("/redeem") and _json_type(head.first_type):
            body, rest = await read_body(receive)
            if rest is not None and rest["type"] == "http.disconnect":
                raise ClientDisconnect()
            problem = json_problem(body)
            if problem is not None:
                await refuse(InvalidJsonError(problem), scope, receive, send)
                return
            receive = replay(body, rest, receive)
        fast = self.fast
        if fast is not None and (hit := fast.match(scope)) is not None:
            await fast.serve(*hit, scope, receive, send, self.app)
        else:
            await self.app(scope, receive, send)

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
