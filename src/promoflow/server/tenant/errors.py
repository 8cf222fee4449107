"""Tenant administration errors (CLI and settings)."""

from __future__ import annotations

from ...wire.errors import ErrorCode
from ..exceptions import BadRequestError, ConflictError, ForbiddenError, NotFoundError


class TenantNotFoundError(NotFoundError):
    """404 `TenantNotFound`: No tenant of that name."""

    code = ErrorCode.TENANT_NOT_FOUND


class TenantExistsError(ConflictError):
    """409 `TenantExists`: A tenant of that name exists."""

    code = ErrorCode.TENANT_EXISTS


class InvalidTenantNameError(BadRequestError):
    """400 `InvalidTenantName`: A tenant name that is not a valid FTP user name."""

    code = ErrorCode.INVALID_TENANT_NAME


class InvalidTimeZoneError(BadRequestError):
    """400 `InvalidTimeZone`: Not an IANA time zone."""

    code = ErrorCode.INVALID_TIME_ZONE


class InvalidSettingError(BadRequestError):
    """400 `InvalidSetting`: A tenant setting with an invalid value."""

    code = ErrorCode.INVALID_SETTING


class UnknownSettingError(BadRequestError):
    """400 `UnknownSetting`: A tenant setting the server does not know."""

    code = ErrorCode.UNKNOWN_SETTING


class InvalidIpAllowListError(BadRequestError):
    """400 `InvalidIpAllowList`: Not an IP address or network."""

    code = ErrorCode.INVALID_IP_ALLOW_LIST


class InvalidApiKeyNameError(BadRequestError):
    """400 `InvalidApiKeyName`: An API key name that is empty, too long or has characters other than letters,
    digits, space, . _ -."""

    code = ErrorCode.INVALID_API_KEY_NAME


class AdminScopeRequiredError(ForbiddenError):
    """403 `AdminScopeRequired`: The operation needs an API key with the admin scope (promoflow extension)."""

    code = ErrorCode.ADMIN_SCOPE_REQUIRED


class ApiKeyNotFoundError(NotFoundError):
    """404 `ApiKeyNotFound`: No active API key of that name in this tenant."""

    code = ErrorCode.API_KEY_NOT_FOUND


class ApiKeyExistsError(ConflictError):
    """409 `ApiKeyExists`: The tenant has an active API key of that name."""

    code = ErrorCode.API_KEY_EXISTS
