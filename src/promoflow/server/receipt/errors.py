"""The receipt feature's errors: receipts, stores and reports."""

from __future__ import annotations

from ...wire.errors import ErrorCode
from ..exceptions import BadRequestError, ConflictError, NotFoundError


class InvalidMatchKeyTypeError(BadRequestError):
    """400 `InvalidMatchKeyType`: A contact.matchKeyType the server does not know."""

    code = ErrorCode.INVALID_MATCH_KEY_TYPE


class InvalidCreatedDateError(BadRequestError):
    """400 `InvalidCreatedDate`: A createdDate without offset, in the future or out of range."""

    code = ErrorCode.INVALID_CREATED_DATE


class InvalidCurrencyError(BadRequestError):
    """400 `InvalidCurrency`: Not an ISO 4217 currency code."""

    code = ErrorCode.INVALID_CURRENCY


class InvalidAmountError(BadRequestError):
    """400 `InvalidAmount`: An amount that is not finite, too large or too precise."""

    code = ErrorCode.INVALID_AMOUNT


class InvalidOriginalReceiptError(BadRequestError):
    """400 `InvalidOriginalReceipt`: A return that names no receipt of this tenant."""

    code = ErrorCode.INVALID_ORIGINAL_RECEIPT


class ReceiptTotalMismatchError(BadRequestError):
    """400 `ReceiptTotalMismatch`: The lines do not add up to totalGrossPrice."""

    code = ErrorCode.RECEIPT_TOTAL_MISMATCH


class PaymentTotalMismatchError(BadRequestError):
    """400 `PaymentTotalMismatch`: The payments do not add up to totalGrossPrice."""

    code = ErrorCode.PAYMENT_TOTAL_MISMATCH


class InvalidUsedPromotionError(BadRequestError):
    """400 `InvalidUsedPromotion`: A usedPromotions entry without couponId or promotionId."""

    code = ErrorCode.INVALID_USED_PROMOTION


class NoRedeemableAssignmentError(ConflictError):
    """409 `NoRedeemableAssignment`: A usedPromotions entry that names no redeemable assignment."""

    code = ErrorCode.NO_REDEEMABLE_ASSIGNMENT


class InvalidStoreExternalIdError(BadRequestError):
    """400 `InvalidStoreExternalId`: An empty or too long store id."""

    code = ErrorCode.INVALID_STORE_EXTERNAL_ID


class StoreNotFoundError(NotFoundError):
    """404 `StoreNotFound`: No such store in this tenant."""

    code = ErrorCode.STORE_NOT_FOUND


class InvalidFormatError(BadRequestError):
    """400 `InvalidFormat`: A report format other than json or csv."""

    code = ErrorCode.INVALID_FORMAT
