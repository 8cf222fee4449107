"""The file transfer feature's errors (the imports API)."""

from __future__ import annotations

from ...wire.errors import ErrorCode
from ..exceptions import BadRequestError, NotFoundError


class InvalidImportIdError(BadRequestError):
    """400 `InvalidImportId`: An import id that is not a GUID."""

    code = ErrorCode.INVALID_IMPORT_ID


class ImportNotFoundError(NotFoundError):
    """404 `ImportNotFound`: No such import in this tenant."""

    code = ErrorCode.IMPORT_NOT_FOUND


class InvalidVerdictError(BadRequestError):
    """400 `InvalidVerdict`: A verdict filter that is not one of the result verdicts."""

    code = ErrorCode.INVALID_VERDICT
