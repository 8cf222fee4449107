"""What each step of a checkout achieved: :class:`StepStatus` and the result objects the steps return."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from promoflow.wire.engage import ApiPromotion

__all__ = [
    "CompletionResult",
    "IdentifyResult",
    "PromotionsResult",
    "RedemptionResult",
    "StepResult",
    "StepStatus",
]


class StepStatus(StrEnum):
    """What one step of a checkout achieved."""

    OK = "ok"
    """A read the server answered (contact found, promotions fetched)."""
    CACHED = "cached"
    """Answered from the local contact cache, without a call."""
    NOT_FOUND = "not_found"
    """Identify: no contact has this key (create one, or sell without)."""
    OFFLINE = "offline"
    """A read the server could not answer; the sale goes on without it (no personal promotions)."""
    APPLIED = "applied"
    """A change the server confirmed online."""
    DUPLICATE = "duplicate"
    """The server already had this change (an earlier attempt of ours landed): a success."""
    QUEUED = "queued"
    """The change is safe in the outbox and the sync agent delivers it: no definite answer yet, or it waits
    behind earlier changes of the same contact, or the contact's GUID is not known (delivered by its key)."""
    CONFLICT = "conflict"
    """The promotion was redeemed elsewhere (``conflictAlreadyRedeemed``): this redemption did not count."""
    REJECTED = "rejected"
    """The server refused the change for good (``expired``, ``notFound``, ``invalid``; see the verdict)."""
    SKIPPED = "skipped"
    """Nothing was to be sent: no changes given, no customer to fetch promotions for, or no customer for a
    receipt (Engage keeps receipts of contacts only). Never a change thrown away."""

    @property
    def succeeded(self) -> bool:
        """Applied now or safe in the outbox (or nothing to do): the sale can close."""
        return self not in (StepStatus.CONFLICT, StepStatus.REJECTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """The outcome of one step: ``status``, and for changes the outbox intent and the server's verdict."""

    step: str
    status: StepStatus
    message: str | None = None
    intent_id: str | None = None
    verdict: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifyResult(StepResult):
    """``identify``: the contact's GUID when known (``contact_id``), and the key it was identified by."""

    contact_id: str | None = None
    key: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionsResult(StepResult):
    """``fetch_promotions``: the contact's redeemable assignments in the flow's channel."""

    promotions: tuple[ApiPromotion, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RedemptionResult(StepResult):
    """One redemption of ``complete`` (or of ``recover``): which assignment it was for (``assignment_id``, the
    id redeemed), of which promotion (``promotion_id``, ``promotion_name``; None when not known, e.g. a
    redemption recovered after a crash)."""

    assignment_id: str
    promotion_id: str | None = None
    promotion_name: str | None = None


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """``complete``: one result per redeemed promotion and one for the receipt."""

    unique_receipt_id: str
    paid_at: datetime
    redemptions: tuple[RedemptionResult, ...]
    receipt: StepResult

    @property
    def results(self) -> tuple[StepResult, ...]:
        return (*self.redemptions, self.receipt)

    @property
    def online(self) -> bool:
        """Everything was confirmed by the server during the checkout."""
        return all(
            r.status in (StepStatus.APPLIED, StepStatus.DUPLICATE, StepStatus.SKIPPED) for r in self.results
        )

    @property
    def queued(self) -> tuple[StepResult, ...]:
        return tuple(r for r in self.results if r.status is StepStatus.QUEUED)

    @property
    def problems(self) -> tuple[StepResult, ...]:
        """Conflicts and refusals the cashier should know about."""
        return tuple(r for r in self.results if not r.status.succeeded)
