"""The edge's errors: authentication, IP allow-lists and idempotency keys."""

from __future__ import annotations

from ...wire.errors import ErrorCode
from ..exceptions import BadRequestError, ConflictError, ForbiddenError, UnauthorizedError, UnprocessableError


class MissingApiKeyError(UnauthorizedError):
    """401 `MissingApiKey`: No API key in the apikey header or as a Bearer token."""

    code = ErrorCode.MISSING_API_KEY


class InvalidApiKeyError(UnauthorizedError):
    """401 `InvalidApiKey`: The API key is unknown or revoked."""

    code = ErrorCode.INVALID_API_KEY


class IpNotAllowedError(ForbiddenError):
    """403 `IpNotAllowed`: The caller's address is not in the key's IP allow-list."""

    code = ErrorCode.IP_NOT_ALLOWED


class InvalidIdempotencyKeyError(BadRequestError):
    """400 `InvalidIdempotencyKey`: An Idempotency-Key that is empty or longer than 255 characters."""

    code = ErrorCode.INVALID_IDEMPOTENCY_KEY


class IdempotencyKeyInUseError(ConflictError):
    """409 `IdempotencyKeyInUse`: A request with the same Idempotency-Key is still running (retryable)."""

    code = ErrorCode.IDEMPOTENCY_KEY_IN_USE


class IdempotencyKeyMismatchError(UnprocessableError):
    """422 `IdempotencyKeyMismatch`: The Idempotency-Key was used for a different request."""

    code = ErrorCode.IDEMPOTENCY_KEY_MISMATCH


class KeyTakenOverError(IdempotencyKeyInUseError):
    """This request held its key past the lock and another request took the key over: nothing of this request
    may commit, and the other request's answer stands (a retry gets it)."""


class InvalidEncodingError(BadRequestError):
    """400 `InvalidEncoding`: A path or query that is not valid UTF-8, or a path, query or header that holds a NUL
    character."""

    code = ErrorCode.INVALID_ENCODING
