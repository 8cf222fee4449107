"""Every Engage-style error code promoflow answers with, and its HTTP status: one table shared by the server
(its error classes), the file importer (verdicts) and the SDK (exception mapping).

An error body is ``{"statusCode": 409, "errorCode": "PromotionAlreadyRedeemed", "message": "…"}``; ``errorCode`` is
one of these values. Codes named by Engage keep Engage's spelling; the others are promoflow's.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ErrorCode(StrEnum):
    # 400
    BAD_REQUEST = "BadRequest"
    """The request is not valid."""
    INVALID_PAYLOAD = "InvalidPayload"
    """The body (or a parameter) does not match the operation's schema; the message names the field."""
    INVALID_JSON = "InvalidJson"
    """The body is not valid JSON (or not UTF-8, or nested too deeply)."""
    INVALID_IDEMPOTENCY_KEY = "InvalidIdempotencyKey"
    """An Idempotency-Key that is empty or longer than 255 characters."""
    INVALID_CONTACT_ID = "InvalidContactId"
    """A contact id that is not a GUID."""
    INVALID_EMAIL_ADDRESS = "InvalidEmailAddress"
    """Not an e-mail address."""
    INVALID_PHONE_NUMBER = "InvalidPhoneNumber"
    """Not a phone number."""
    INVALID_SOCIAL_SECURITY_NUMBER = "InvalidSocialSecurityNumber"
    """Not a valid social security number."""
    INVALID_CONTACT_TYPE = "InvalidContactType"
    """A contact type other than Member or Contact."""
    INVALID_SEARCH_QUERY = "InvalidSearchQuery"
    """A contact look-up without exactly one key."""
    MISSING_KEY_ATTRIBUTE = "MissingKeyAttribute"
    """A contact without its type's key attribute."""
    INVALID_ATTRIBUTE_VALUE = "InvalidAttributeValue"
    """A contact attribute or preference of the wrong type or size."""
    INVALID_PROMOTION_ID = "InvalidPromotionId"
    """A promotion (definition) id that is not a GUID."""
    INVALID_PROMOTION_ID_NO_DATA = "InvalidPromotionIdNoData"
    """An assignment id that is not a GUID."""
    NOT_A_VALID_REDEMPTION_CHANNEL = "NotAValidRedemptionChannel"
    """A channel other than POS, ECOM or OTHER."""
    INVALID_VALIDITY = "InvalidValidity"
    """Dates or assigned validity that do not hold together."""
    INVALID_PROMOTION_VALUE = "InvalidPromotionValue"
    """A channel value that does not fit its value type."""
    DUPLICATE_REDEMPTION_CHANNEL = "DuplicateRedemptionChannel"
    """Two redemption channels of one type."""
    INVALID_REDEEMED_ON = "InvalidRedeemedOn"
    """A redeemedOn in the future or out of range."""
    INVALID_VALID_FROM_DATE = "InvalidValidFromDate"
    """An assignment validFromDate before the promotion's start."""
    INVALID_JOB_ID = "InvalidJobId"
    """A job id that is not a GUID."""
    INVALID_MATCH_KEY_TYPE = "InvalidMatchKeyType"
    """A contact.matchKeyType the server does not know."""
    INVALID_CREATED_DATE = "InvalidCreatedDate"
    """A createdDate without offset, in the future or out of range."""
    INVALID_CURRENCY = "InvalidCurrency"
    """Not an ISO 4217 currency code."""
    INVALID_AMOUNT = "InvalidAmount"
    """An amount that is not finite, too large or too precise."""
    INVALID_ORIGINAL_RECEIPT = "InvalidOriginalReceipt"
    """A return that names no receipt of this tenant."""
    RECEIPT_TOTAL_MISMATCH = "ReceiptTotalMismatch"
    """The lines do not add up to totalGrossPrice."""
    PAYMENT_TOTAL_MISMATCH = "PaymentTotalMismatch"
    """The payments do not add up to totalGrossPrice."""
    INVALID_USED_PROMOTION = "InvalidUsedPromotion"
    """A usedPromotions entry without couponId or promotionId."""
    INVALID_STORE_EXTERNAL_ID = "InvalidStoreExternalId"
    """An empty or too long store id."""
    INVALID_FORMAT = "InvalidFormat"
    """A report format other than json or csv."""
    INVALID_TENANT_NAME = "InvalidTenantName"
    """A tenant name that is not a valid FTP user name."""
    INVALID_TIME_ZONE = "InvalidTimeZone"
    """Not an IANA time zone."""
    INVALID_SETTING = "InvalidSetting"
    """A tenant setting with an invalid value."""
    UNKNOWN_SETTING = "UnknownSetting"
    """A tenant setting the server does not know."""
    INVALID_IP_ALLOW_LIST = "InvalidIpAllowList"
    """Not an IP address or network."""
    INVALID_IMPORT_ID = "InvalidImportId"
    """An import id that is not a GUID."""
    INVALID_VERDICT = "InvalidVerdict"
    """A verdict filter that is not one of the result verdicts."""
    INVALID_ENCODING = "InvalidEncoding"
    """A path or query that is not valid UTF-8, or a path, query or header that holds a NUL character."""
    INVALID_API_KEY_NAME = "InvalidApiKeyName"
    """An API key name that is empty, too long or has characters other than letters, digits, space, . _ -."""
    INVALID_URL = "InvalidUrl"
    """A promotion's link or image URL that is not an absolute http:// or https:// address."""
    # 401
    UNAUTHORIZED = "Unauthorized"
    """Not authenticated."""
    MISSING_API_KEY = "MissingApiKey"
    """No API key in the apikey header or as a Bearer token."""
    INVALID_API_KEY = "InvalidApiKey"
    """The API key is unknown or revoked."""
    # 403
    FORBIDDEN = "Forbidden"
    """Not allowed."""
    IP_NOT_ALLOWED = "IpNotAllowed"
    """The caller's address is not in the key's IP allow-list."""
    ADMIN_SCOPE_REQUIRED = "AdminScopeRequired"
    """The operation needs an API key with the admin scope (promoflow extension)."""
    # 404
    NOT_FOUND = "NotFound"
    """No such resource or route."""
    CONTACT_NOT_FOUND = "ContactNotFound"
    """No such contact in this tenant."""
    PROMOTION_NOT_FOUND = "PromotionNotFound"
    """No such promotion or assignment in this tenant."""
    PROMOTION_NOT_ASSOCIATED_WITH_CONTACT = "PromotionNotAssociatedWithContact"
    """The assignment is not the contact's."""
    JOB_NOT_FOUND = "JobNotFound"
    """No such job in this tenant."""
    STORE_NOT_FOUND = "StoreNotFound"
    """No such store in this tenant."""
    TENANT_NOT_FOUND = "TenantNotFound"
    """No tenant of that name."""
    IMPORT_NOT_FOUND = "ImportNotFound"
    """No such import in this tenant."""
    API_KEY_NOT_FOUND = "ApiKeyNotFound"
    """No active API key of that name in this tenant."""
    # 405
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    """The path exists, the method does not (see the Allow header)."""
    # 409
    CONFLICT = "Conflict"
    """The request conflicts with the resource's state."""
    IDEMPOTENCY_KEY_IN_USE = "IdempotencyKeyInUse"
    """A request with the same Idempotency-Key is still running (retryable)."""
    CONTACT_KEY_CONFLICT = "ContactKeyConflict"
    """Another contact holds that key."""
    MULTIPLE_MATCHES = "MultipleMatches"
    """More than one contact matches the look-up."""
    PROMOTION_ALREADY_REDEEMED = "PromotionAlreadyRedeemed"
    """The assignment was redeemed before (when, where and how are in the message)."""
    PROMOTION_EXPIRED = "PromotionExpired"
    """The assignment or promotion has expired."""
    PROMOTION_NOT_YET_VALID = "PromotionNotYetValid"
    """The assignment is not valid yet."""
    PROMOTION_NOT_VALID_FOR_REDEMPTION_CHANNEL = "PromotionNotValidForRedemptionChannel"
    """The promotion has no channel of that type."""
    PROMOTION_NOT_REDEEMABLE = "PromotionNotRedeemable"
    """The assignment cannot be redeemed (its promotion is a draft or was withdrawn)."""
    PROMOTION_NOT_ACTIVE = "PromotionNotActive"
    """Only Scheduled or Active promotions are assigned."""
    PROMOTION_NOT_DRAFT = "PromotionNotDraft"
    """Only a Draft can be changed."""
    PROMOTION_HAS_ASSIGNMENTS = "PromotionHasAssignments"
    """A promotion that was ever assigned cannot be deleted."""
    PROMOTION_INCOMPLETE = "PromotionIncomplete"
    """Activation needs at least one redemption channel."""
    PROMOTION_NOT_REDEEMED = "PromotionNotRedeemed"
    """Only a redeemed assignment can be reactivated."""
    REACTIVATION_LIMIT_EXCEEDED = "ReactivationLimitExceeded"
    """The assignment was reactivated as often as the tenant allows."""
    AMBIGUOUS_PROMOTION_ID = "AmbiguousPromotionId"
    """A template id naming several redeemable assignments of the contact."""
    EXTERNAL_ID_IN_USE = "ExternalIdInUse"
    """Another promotion has that externalId."""
    PROMOTION_CODE_IN_USE = "PromotionCodeInUse"
    """Another assignment has that externalPromotionCodeId."""
    NO_REDEEMABLE_ASSIGNMENT = "NoRedeemableAssignment"
    """A usedPromotions entry that names no redeemable assignment."""
    TENANT_EXISTS = "TenantExists"
    """A tenant of that name exists."""
    API_KEY_EXISTS = "ApiKeyExists"
    """The tenant has an active API key of that name."""
    # 413
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    """The body is larger than the server accepts."""
    # 415
    UNSUPPORTED_MEDIA_TYPE = "UnsupportedMediaType"
    """A body that is not sent as application/json."""
    # 422
    UNPROCESSABLE = "Unprocessable"
    """The request cannot be processed."""
    IDEMPOTENCY_KEY_MISMATCH = "IdempotencyKeyMismatch"
    """The Idempotency-Key was used for a different request."""
    # 429
    TOO_MANY_REQUESTS = "TooManyRequests"
    """The API key's rate limit is exceeded; retry after Retry-After seconds."""
    # 500
    INTERNAL_ERROR = "InternalError"
    """An unexpected error; it has been logged."""
    # 503
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    """Overloaded or shutting down; retry after Retry-After seconds."""


HTTP_STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_PAYLOAD: 400,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_IDEMPOTENCY_KEY: 400,
    ErrorCode.INVALID_CONTACT_ID: 400,
    ErrorCode.INVALID_EMAIL_ADDRESS: 400,
    ErrorCode.INVALID_PHONE_NUMBER: 400,
    ErrorCode.INVALID_SOCIAL_SECURITY_NUMBER: 400,
    ErrorCode.INVALID_CONTACT_TYPE: 400,
    ErrorCode.INVALID_SEARCH_QUERY: 400,
    ErrorCode.MISSING_KEY_ATTRIBUTE: 400,
    ErrorCode.INVALID_ATTRIBUTE_VALUE: 400,
    ErrorCode.INVALID_PROMOTION_ID: 400,
    ErrorCode.INVALID_PROMOTION_ID_NO_DATA: 400,
    ErrorCode.NOT_A_VALID_REDEMPTION_CHANNEL: 400,
    ErrorCode.INVALID_VALIDITY: 400,
    ErrorCode.INVALID_PROMOTION_VALUE: 400,
    ErrorCode.DUPLICATE_REDEMPTION_CHANNEL: 400,
    ErrorCode.INVALID_REDEEMED_ON: 400,
    ErrorCode.INVALID_VALID_FROM_DATE: 400,
    ErrorCode.INVALID_JOB_ID: 400,
    ErrorCode.INVALID_MATCH_KEY_TYPE: 400,
    ErrorCode.INVALID_CREATED_DATE: 400,
    ErrorCode.INVALID_CURRENCY: 400,
    ErrorCode.INVALID_AMOUNT: 400,
    ErrorCode.INVALID_ORIGINAL_RECEIPT: 400,
    ErrorCode.RECEIPT_TOTAL_MISMATCH: 400,
    ErrorCode.PAYMENT_TOTAL_MISMATCH: 400,
    ErrorCode.INVALID_USED_PROMOTION: 400,
    ErrorCode.INVALID_STORE_EXTERNAL_ID: 400,
    ErrorCode.INVALID_FORMAT: 400,
    ErrorCode.INVALID_TENANT_NAME: 400,
    ErrorCode.INVALID_TIME_ZONE: 400,
    ErrorCode.INVALID_SETTING: 400,
    ErrorCode.UNKNOWN_SETTING: 400,
    ErrorCode.INVALID_IP_ALLOW_LIST: 400,
    ErrorCode.INVALID_IMPORT_ID: 400,
    ErrorCode.INVALID_VERDICT: 400,
    ErrorCode.INVALID_ENCODING: 400,
    ErrorCode.INVALID_API_KEY_NAME: 400,
    ErrorCode.INVALID_URL: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.MISSING_API_KEY: 401,
    ErrorCode.INVALID_API_KEY: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.IP_NOT_ALLOWED: 403,
    ErrorCode.ADMIN_SCOPE_REQUIRED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONTACT_NOT_FOUND: 404,
    ErrorCode.PROMOTION_NOT_FOUND: 404,
    ErrorCode.PROMOTION_NOT_ASSOCIATED_WITH_CONTACT: 404,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.STORE_NOT_FOUND: 404,
    ErrorCode.TENANT_NOT_FOUND: 404,
    ErrorCode.IMPORT_NOT_FOUND: 404,
    ErrorCode.API_KEY_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.IDEMPOTENCY_KEY_IN_USE: 409,
    ErrorCode.CONTACT_KEY_CONFLICT: 409,
    ErrorCode.MULTIPLE_MATCHES: 409,
    ErrorCode.PROMOTION_ALREADY_REDEEMED: 409,
    ErrorCode.PROMOTION_EXPIRED: 409,
    ErrorCode.PROMOTION_NOT_YET_VALID: 409,
    ErrorCode.PROMOTION_NOT_VALID_FOR_REDEMPTION_CHANNEL: 409,
    ErrorCode.PROMOTION_NOT_REDEEMABLE: 409,
    ErrorCode.PROMOTION_NOT_ACTIVE: 409,
    ErrorCode.PROMOTION_NOT_DRAFT: 409,
    ErrorCode.PROMOTION_HAS_ASSIGNMENTS: 409,
    ErrorCode.PROMOTION_INCOMPLETE: 409,
    ErrorCode.PROMOTION_NOT_REDEEMED: 409,
    ErrorCode.REACTIVATION_LIMIT_EXCEEDED: 409,
    ErrorCode.AMBIGUOUS_PROMOTION_ID: 409,
    ErrorCode.EXTERNAL_ID_IN_USE: 409,
    ErrorCode.PROMOTION_CODE_IN_USE: 409,
    ErrorCode.NO_REDEEMABLE_ASSIGNMENT: 409,
    ErrorCode.TENANT_EXISTS: 409,
    ErrorCode.API_KEY_EXISTS: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.UNPROCESSABLE: 422,
    ErrorCode.IDEMPOTENCY_KEY_MISMATCH: 422,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
}
"""The HTTP status each code is answered with (a code never changes status)."""
