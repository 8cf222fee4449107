"""The one error tree of the server. No web imports: the HTTP mapping lives in ``http.exception_handlers``.

One class per error code (``wire.errors.ErrorCode``), named after it (``PromotionNotFound`` →
``PromotionNotFoundError``) and declared in its feature's ``errors.py``; the classes here are the generic ones
and the bases that fix each code's HTTP status. A class's status is checked against the code's status in the
shared table when the class is defined, so the server, the SDK and the file importer cannot disagree.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..wire.errors import HTTP_STATUS, ErrorCode


class PromoflowError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if HTTP_STATUS[cls.code] != cls.status:
            raise TypeError(f"{cls.__name__}: {cls.code} is a {HTTP_STATUS[cls.code]}, not a {cls.status}")
        if "code" in vars(cls) and cls.__module__.startswith("promoflow."):
            _BY_CODE.setdefault(cls.code, cls)


_BY_CODE: dict[ErrorCode, type[PromoflowError]] = {}


def error_for(code: str, message: str) -> PromoflowError:
    """The error of a code named outside the server (a wire validator's ``errorCode``); `InvalidPayload` when
    the code has no class here."""
    try:
        cls = _BY_CODE.get(ErrorCode(code))
    except ValueError:
        cls = None
    return (cls or InvalidPayloadError)(message)


class InternalError(PromoflowError):
    """500 `InternalError`: an unexpected error (logged)."""


class BadRequestError(PromoflowError):
    status = 400
    code = ErrorCode.BAD_REQUEST


class InvalidPayloadError(BadRequestError):
    """400 `InvalidPayload`: the body or a parameter does not match the schema; the message names the field."""

    code = ErrorCode.INVALID_PAYLOAD


class InvalidJsonError(BadRequestError):
    """400 `InvalidJson`: the body is not valid JSON (not UTF-8, or nested too deeply)."""

    code = ErrorCode.INVALID_JSON


class UnauthorizedError(PromoflowError):
    status = 401
    code = ErrorCode.UNAUTHORIZED


class ForbiddenError(PromoflowError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NotFoundError(PromoflowError):
    status = 404
    code = ErrorCode.NOT_FOUND


class MethodNotAllowedError(PromoflowError):
    status = 405
    code = ErrorCode.METHOD_NOT_ALLOWED


class ConflictError(PromoflowError):
    status = 409
    code = ErrorCode.CONFLICT


class PayloadTooLargeError(PromoflowError):
    status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedMediaTypeError(PromoflowError):
    status = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class UnprocessableError(PromoflowError):
    status = 422
    code = ErrorCode.UNPROCESSABLE


class TooManyRequestsError(PromoflowError):
    """429 `TooManyRequests`, with the seconds to wait (``Retry-After``)."""

    status = 429
    code = ErrorCode.TOO_MANY_REQUESTS

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailableError(PromoflowError):
    """503 `ServiceUnavailable`, with the seconds to wait (``Retry-After``)."""

    status = 503
    code = ErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
