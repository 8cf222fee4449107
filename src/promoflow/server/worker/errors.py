"""The job API's errors."""

from __future__ import annotations

from ...wire.errors import ErrorCode
from ..exceptions import BadRequestError, NotFoundError


class InvalidJobIdError(BadRequestError):
    """400 `InvalidJobId`: A job id that is not a GUID."""

    code = ErrorCode.INVALID_JOB_ID


class JobNotFoundError(NotFoundError):
    """404 `JobNotFound`: No such job in this tenant."""

    code = ErrorCode.JOB_NOT_FOUND
