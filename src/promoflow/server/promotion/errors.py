"""The promotion feature's errors: definitions, assignments, redemption and reactivation."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from ...kit.timeutil import iso
from ...wire.errors import ErrorCode
from ..exceptions import BadRequestError, ConflictError, NotFoundError


class PromotionNotFoundError(NotFoundError):
    """404 `PromotionNotFound`: No such promotion or assignment in this tenant."""

    code = ErrorCode.PROMOTION_NOT_FOUND


class PromotionNotAssociatedWithContactError(NotFoundError):
    """404 `PromotionNotAssociatedWithContact`: The assignment is not the contact's."""

    code = ErrorCode.PROMOTION_NOT_ASSOCIATED_WITH_CONTACT


class InvalidPromotionIdError(BadRequestError):
    """400 `InvalidPromotionId`: A promotion (definition) id that is not a GUID."""

    code = ErrorCode.INVALID_PROMOTION_ID


class InvalidPromotionIdNoDataError(BadRequestError):
    """400 `InvalidPromotionIdNoData`: An assignment id that is not a GUID."""

    code = ErrorCode.INVALID_PROMOTION_ID_NO_DATA


class NotAValidRedemptionChannelError(BadRequestError):
    """400 `NotAValidRedemptionChannel`: A channel other than POS, ECOM or OTHER."""

    code = ErrorCode.NOT_A_VALID_REDEMPTION_CHANNEL


class InvalidValidityError(BadRequestError):
    """400 `InvalidValidity`: Dates or assigned validity that do not hold together."""

    code = ErrorCode.INVALID_VALIDITY


class InvalidPromotionValueError(BadRequestError):
    """400 `InvalidPromotionValue`: A channel value that does not fit its value type."""

    code = ErrorCode.INVALID_PROMOTION_VALUE


class InvalidUrlError(BadRequestError):
    """400 `InvalidUrl`: A promotion's link or image URL that is not an absolute http:// or https:// address."""

    code = ErrorCode.INVALID_URL


class DuplicateRedemptionChannelError(BadRequestError):
    """400 `DuplicateRedemptionChannel`: Two redemption channels of one type."""

    code = ErrorCode.DUPLICATE_REDEMPTION_CHANNEL


class InvalidRedeemedOnError(BadRequestError):
    """400 `InvalidRedeemedOn`: A redeemedOn in the future or out of range."""

    code = ErrorCode.INVALID_REDEEMED_ON


class InvalidValidFromDateError(BadRequestError):
    """400 `InvalidValidFromDate`: An assignment validFromDate before the promotion's start."""

    code = ErrorCode.INVALID_VALID_FROM_DATE


class PromotionExpiredError(ConflictError):
    """409 `PromotionExpired`: The assignment or promotion has expired."""

    code = ErrorCode.PROMOTION_EXPIRED


class PromotionNotYetValidError(ConflictError):
    """409 `PromotionNotYetValid`: The assignment is not valid yet."""

    code = ErrorCode.PROMOTION_NOT_YET_VALID


class PromotionNotValidForRedemptionChannelError(ConflictError):
    """409 `PromotionNotValidForRedemptionChannel`: The promotion has no channel of that type."""

    code = ErrorCode.PROMOTION_NOT_VALID_FOR_REDEMPTION_CHANNEL


class PromotionNotRedeemableError(ConflictError):
    """409 `PromotionNotRedeemable`: The assignment cannot be redeemed (its promotion is a draft or was withdrawn)."""

    code = ErrorCode.PROMOTION_NOT_REDEEMABLE


class PromotionNotActiveError(ConflictError):
    """409 `PromotionNotActive`: Only Scheduled or Active promotions are assigned."""

    code = ErrorCode.PROMOTION_NOT_ACTIVE


class PromotionNotDraftError(ConflictError):
    """409 `PromotionNotDraft`: Only a Draft can be changed."""

    code = ErrorCode.PROMOTION_NOT_DRAFT


class PromotionHasAssignmentsError(ConflictError):
    """409 `PromotionHasAssignments`: A promotion that was ever assigned cannot be deleted."""

    code = ErrorCode.PROMOTION_HAS_ASSIGNMENTS


class PromotionIncompleteError(ConflictError):
    """409 `PromotionIncomplete`: Activation needs at least one redemption channel."""

    code = ErrorCode.PROMOTION_INCOMPLETE


class PromotionNotRedeemedError(ConflictError):
    """409 `PromotionNotRedeemed`: Only a redeemed assignment can be reactivated."""

    code = ErrorCode.PROMOTION_NOT_REDEEMED


class ReactivationLimitExceededError(ConflictError):
    """409 `ReactivationLimitExceeded`: The assignment was reactivated as often as the tenant allows."""

    code = ErrorCode.REACTIVATION_LIMIT_EXCEEDED


class AmbiguousPromotionIdError(ConflictError):
    """409 `AmbiguousPromotionId`: A template id naming several redeemable assignments of the contact."""

    code = ErrorCode.AMBIGUOUS_PROMOTION_ID


class ExternalIdInUseError(ConflictError):
    """409 `ExternalIdInUse`: Another promotion has that externalId."""

    code = ErrorCode.EXTERNAL_ID_IN_USE


class PromotionCodeInUseError(ConflictError):
    """409 `PromotionCodeInUse`: Another assignment has that externalPromotionCodeId."""

    code = ErrorCode.PROMOTION_CODE_IN_USE


class PromotionAlreadyRedeemedError(ConflictError):
    """409 `PromotionAlreadyRedeemed`, carrying when, where and how the redemption happened."""

    code = ErrorCode.PROMOTION_ALREADY_REDEEMED

    def __init__(self, row: Any, tz: tzinfo) -> None:
        where = f" in store {row.redeemed_store}" if row.redeemed_store else ""
        # The sale too, as a result file's reason names it (client.sync._describe_conflict): "(receipt R-9)".
        sale = f" (receipt {row.redeemed_receipt_id})" if row.redeemed_receipt_id else ""
        super().__init__(
            f"the promotion was already redeemed at {iso(row.redeemed_at, tz)} via {row.redeemed_channel}{where}"
            f"{sale}"
        )
        self.redeemed_at: datetime = row.redeemed_at
        self.channel: str | None = row.redeemed_channel
        self.store_external_id: str | None = row.redeemed_store
        self.unique_receipt_id: str | None = row.redeemed_receipt_id
