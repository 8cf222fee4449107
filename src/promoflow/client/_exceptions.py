"""The SDK's exception tree.

Everything the clients raise on purpose derives from :class:`PromoflowClientError`::

    PromoflowClientError
    ├── TransportError                 no answer; ``may_have_reached_server``: might the server have acted?
    │   ├── ConnectionFailedError      could not connect, or the connection broke before an answer
    │   └── RequestTimeoutError        connect / write / read / pool timeout
    ├── InvalidResponseError           a 2xx answer whose body is not what the endpoint promises
    └── ApiError                       an error status (status, error_code, message, request_id, retry_after)
        ├── BadRequestError            400
        ├── AuthenticationError        401
        ├── ForbiddenError             403
        ├── NotFoundError              404
        │   ├── ContactNotFoundError       errorCode ContactNotFound
        │   └── PromotionNotFoundError     errorCode PromotionNotFound
        ├── ConflictError              409
        │   ├── AlreadyRedeemedError       errorCode PromotionAlreadyRedeemed
        │   ├── PromotionExpiredError      errorCode PromotionExpired
        │   └── IdempotencyKeyInUseError   errorCode IdempotencyKeyInUse (the first request is still running)
        ├── UnprocessableError         422
        │   └── IdempotencyKeyMismatchError  errorCode IdempotencyKeyMismatch (same key, different request)
        ├── RateLimitedError           429
        └── ServerError                5xx

Other 4xx statuses (405, 415, …) raise a plain :class:`ApiError`. ``error_code`` is compared with
:class:`promoflow.wire.errors.ErrorCode` (a ``StrEnum``: ``exc.error_code == ErrorCode.PROMOTION_EXPIRED``), the one
table of codes and statuses the server answers from. :func:`error_from_response` is the only place that maps a
status and body to a class; :func:`transport_error_from_httpx` the only place that maps
httpx's exceptions (the clients raise the result ``from`` the httpx exception: the cause stays visible).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import httpx

from promoflow.client._headers import parse_retry_after, request_id
from promoflow.wire.errors import HTTP_STATUS, ErrorCode

_MAX_BODY_TEXT = 2000


class PromoflowClientError(Exception):
    """Base of every error the promoflow SDK raises on purpose."""


class TransportError(PromoflowClientError):
    """No HTTP answer was received.

    ``may_have_reached_server`` is False only when the request certainly never left this machine (connection
    refused, DNS failure, connect timeout, no free pooled connection). When True, a state-changing request may
    have been applied: settle it (idempotency key, or read the state) before treating it as failed.
    """

    def __init__(self, message: str, *, may_have_reached_server: bool) -> None:
        super().__init__(message)
        self.message = message
        self.may_have_reached_server = may_have_reached_server


class ConnectionFailedError(TransportError):
    """The connection could not be made, or broke before a complete answer arrived."""


class RequestTimeoutError(TransportError):
    """A timeout elapsed (connecting, sending, waiting for the answer, or waiting for a pooled connection)."""


class InvalidResponseError(PromoflowClientError):
    """The server answered 2xx, but the body does not have the shape the endpoint promises."""

    def __init__(self, message: str, *, status: int, body: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class ApiError(PromoflowClientError):
    """The server answered with an error status.

    ``error_code`` is the Engage-style name (``PromotionAlreadyRedeemed``); when the body carries none it is
    the status phrase without spaces (``ServiceUnavailable``). ``retry_after`` is the server's
    ``Retry-After`` in seconds, if any. ``body`` is the raw answer text (truncated), for logs.
    """

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        request_id: str | None = None,
        retry_after: float | None = None,
        *,
        body: str | None = None,
    ) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body


class BadRequestError(ApiError):
    """400: the request was invalid (bad id, bad channel, failed validation)."""


class AuthenticationError(ApiError):
    """401: missing, unknown or revoked API key."""


class ForbiddenError(ApiError):
    """403: the key is valid but not allowed here (for example an IP allow-list)."""


class NotFoundError(ApiError):
    """404: the contact, promotion or assignment does not exist."""


class ContactNotFoundError(NotFoundError):
    """404 ``ContactNotFound``."""


class PromotionNotFoundError(NotFoundError):
    """404 ``PromotionNotFound``: no such assignment (or promotion)."""


class ConflictError(ApiError):
    """409: the request conflicts with the current state (already redeemed, expired, key taken, …)."""


class AlreadyRedeemedError(ConflictError):
    """409 ``PromotionAlreadyRedeemed``: the assignment was redeemed before this request."""


class PromotionExpiredError(ConflictError):
    """409 ``PromotionExpired``."""


class IdempotencyKeyInUseError(ConflictError):
    """409 ``IdempotencyKeyInUse``: a request with this key is still running; retrying later is safe."""


class UnprocessableError(ApiError):
    """422: well-formed but not processable."""


class IdempotencyKeyMismatchError(UnprocessableError):
    """422 ``IdempotencyKeyMismatch``: the key was used before for a different request (a caller bug)."""


class RateLimitedError(ApiError):
    """429: too many requests for this key; ``retry_after`` says when to come back."""


class ServerError(ApiError):
    """5xx: the server failed or is overloaded. For a state-changing call the outcome is unknown."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
    429: RateLimitedError,
}

_BY_CODE: dict[ErrorCode, type[ApiError]] = {
    ErrorCode.CONTACT_NOT_FOUND: ContactNotFoundError,
    ErrorCode.PROMOTION_NOT_FOUND: PromotionNotFoundError,
    ErrorCode.PROMOTION_ALREADY_REDEEMED: AlreadyRedeemedError,
    ErrorCode.PROMOTION_EXPIRED: PromotionExpiredError,
    ErrorCode.IDEMPOTENCY_KEY_IN_USE: IdempotencyKeyInUseError,
    ErrorCode.IDEMPOTENCY_KEY_MISMATCH: IdempotencyKeyMismatchError,
}
"""The codes of :class:`~promoflow.wire.errors.ErrorCode` (the table the server answers from) with a class of
their own; each also needs its status from ``HTTP_STATUS``."""


def known_code(error_code: str | None) -> ErrorCode | None:
    """``error_code`` as an :class:`~promoflow.wire.errors.ErrorCode`, or None for a code promoflow does not
    answer with (another server's, a proxy's)."""
    if error_code is None:
        return None
    try:
        return ErrorCode(error_code)
    except ValueError:
        return None


def error_class_for(status: int, error_code: str | None) -> type[ApiError]:
    """The exception class for an error answer: a specific one for a known errorCode answered with its own
    status (``HTTP_STATUS``), else the class of the status."""
    code = known_code(error_code)
    if code is not None and HTTP_STATUS.get(code) == status:
        specific = _BY_CODE.get(code)
        if specific is not None:
            return specific
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


def _first_text(obj: Mapping[str, Any], *names: str) -> str | None:
    lowered = {key.lower(): value for key, value in obj.items() if isinstance(key, str)}
    for name in names:
        value = lowered.get(name.lower())
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _parse_error_body(text: str) -> tuple[str | None, str | None]:
    """(error_code, message) from an error body, tolerating the shapes seen in the wild.

    promoflow sends ``{"statusCode", "errorCode", "message"}``; Engage's own error bodies are undocumented and
    ASP.NET answers ``{"Message": "An error has occurred."}``; proxies send problem+json, a JSON string or
    plain text/HTML. Unknown shapes keep the text as the message.
    """
    stripped = text.strip()
    if not stripped:
        return None, None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None, stripped[:500]
    if isinstance(data, str):
        return None, data.strip() or None
    if not isinstance(data, dict):
        return None, stripped[:500]
    nested = data.get("error")
    if isinstance(nested, dict):
        data = {**data, **nested}
    code = _first_text(data, "errorCode", "code", "errorName", "error", "title")
    message = _first_text(data, "message", "detail", "errorMessage", "error_description", "title")
    return code, message


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes, *, encoding: str | None = None
) -> ApiError:
    """Build the :class:`ApiError` subclass for an error answer (status, headers and raw body)."""
    text = content.decode(encoding or "utf-8", errors="replace")
    code, message = _parse_error_body(text)
    phrase = _status_phrase(status)
    cls = error_class_for(status, code)
    return cls(
        status,
        code or phrase,
        message or phrase,
        request_id(headers),
        parse_retry_after(headers.get("retry-after")),
        body=text[:_MAX_BODY_TEXT] or None,
    )


def transport_error_from_httpx(exc: httpx.TransportError) -> TransportError:
    """Map an httpx transport exception to the SDK tree, deciding whether the request may have been sent.

    The caller raises the result ``from exc``.
    """
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        # Never sent: no connection was established (or none became free in the pool).
        return RequestTimeoutError(f"timed out before sending: {detail}", may_have_reached_server=False)
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(
            f"timed out waiting for the answer: {detail}", may_have_reached_server=True
        )
    if isinstance(exc, httpx.ConnectError):
        return ConnectionFailedError(f"could not connect: {detail}", may_have_reached_server=False)
    if isinstance(exc, httpx.ProxyError | httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return TransportError(f"request could not be sent: {detail}", may_have_reached_server=False)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return ConnectionFailedError(
            f"connection lost before the answer: {detail}", may_have_reached_server=True
        )
    return TransportError(f"transport failure: {detail}", may_have_reached_server=True)


def is_retryable_transport(error: TransportError) -> bool:
    """Connection failures and timeouts are worth another attempt; a request that cannot be sent is not."""
    return isinstance(error, ConnectionFailedError | RequestTimeoutError)
