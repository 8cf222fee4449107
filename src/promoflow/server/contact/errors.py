"""The contact feature's errors."""

from __future__ import annotations

from ...wire.errors import ErrorCode
from ..exceptions import BadRequestError, ConflictError, NotFoundError


class ContactNotFoundError(NotFoundError):
    """404 `ContactNotFound`: No such contact in this tenant."""

    code = ErrorCode.CONTACT_NOT_FOUND


class InvalidContactIdError(BadRequestError):
    """400 `InvalidContactId`: A contact id that is not a GUID."""

    code = ErrorCode.INVALID_CONTACT_ID


class InvalidEmailAddressError(BadRequestError):
    """400 `InvalidEmailAddress`: Not an e-mail address."""

    code = ErrorCode.INVALID_EMAIL_ADDRESS


class InvalidPhoneNumberError(BadRequestError):
    """400 `InvalidPhoneNumber`: Not a phone number."""

    code = ErrorCode.INVALID_PHONE_NUMBER


class InvalidSocialSecurityNumberError(BadRequestError):
    """400 `InvalidSocialSecurityNumber`: Not a valid social security number."""

    code = ErrorCode.INVALID_SOCIAL_SECURITY_NUMBER


class InvalidContactTypeError(BadRequestError):
    """400 `InvalidContactType`: A contact type other than Member or Contact."""

    code = ErrorCode.INVALID_CONTACT_TYPE


class InvalidSearchQueryError(BadRequestError):
    """400 `InvalidSearchQuery`: A contact look-up without exactly one key."""

    code = ErrorCode.INVALID_SEARCH_QUERY


class MissingKeyAttributeError(BadRequestError):
    """400 `MissingKeyAttribute`: A contact without its type's key attribute."""

    code = ErrorCode.MISSING_KEY_ATTRIBUTE


class InvalidAttributeValueError(BadRequestError):
    """400 `InvalidAttributeValue`: A contact attribute or preference of the wrong type or size."""

    code = ErrorCode.INVALID_ATTRIBUTE_VALUE


class ContactKeyConflictError(ConflictError):
    """409 `ContactKeyConflict`: Another contact holds that key."""

    code = ErrorCode.CONTACT_KEY_CONFLICT


class MultipleMatchesError(ConflictError):
    """409 `MultipleMatches`: More than one contact matches the look-up."""

    code = ErrorCode.MULTIPLE_MATCHES
