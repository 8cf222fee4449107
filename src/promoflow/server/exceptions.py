"""The one error tree of the server. No web imports: the HTTP mapping lives in ``exception_handlers``.

Subclasses are declared next to the service that raises them; each carries its Engage-style error code.
"""

from __future__ import annotations


class PromoflowError(Exception):
    status: int = 500
    code: str = "InternalError"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadRequest(PromoflowError):
    status = 400
    code = "BadRequest"


class ValidationFailed(BadRequest):
    code = "InvalidPayload"


class Unauthorized(PromoflowError):
    status = 401
    code = "Unauthorized"


class Forbidden(PromoflowError):
    status = 403
    code = "Forbidden"


class NotFound(PromoflowError):
    status = 404
    code = "NotFound"


class Conflict(PromoflowError):
    status = 409
    code = "Conflict"


class Unprocessable(PromoflowError):
    status = 422
    code = "Unprocessable"


class RateLimited(PromoflowError):
    status = 429
    code = "TooManyRequests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(PromoflowError):
    status = 503
    code = "ServiceUnavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def bad_request(code: str, message: str) -> BadRequest:
    return BadRequest(message, code=code)


def not_found(code: str, message: str) -> NotFound:
    return NotFound(message, code=code)


def conflict(code: str, message: str) -> Conflict:
    return Conflict(message, code=code)
