"""Settling one outbox intent online: the API call(s), and what the answer means for the intent.

Written as flow plans (:mod:`promoflow.client._calls`: steps that call the client's public methods), so the
sync and async checkout and the sync agent share them. A :class:`Settlement` says where the intent goes next: ``done`` (applied, or already applied by us),
``settled`` (the server refused it for good: conflict, expired, not found, invalid), or *deferred* (no
definite answer: server unreachable, overloaded, misconfigured; the intent keeps its file for later).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from promoflow.client._calls import Calls, FlowPlan
from promoflow.client._engine import CallOutcome
from promoflow.client._exceptions import (
    AlreadyRedeemedError,
    ApiError,
    IdempotencyKeyInUseError,
    IdempotencyKeyMismatchError,
    PromoflowClientError,
    known_code,
)
from promoflow.client.outbox import Intent, IntentKind, IntentState, Outbox
from promoflow.wire.engage import Receipt
from promoflow.wire.errors import HTTP_STATUS, ErrorCode
from promoflow.wire.xml import ContactRecord, Redemption, Verdict

__all__ = [
    "Settlement",
    "format_instant",
    "lookup_param",
    "record_settlement",
    "redeemed_by_us",
    "settle_intent",
    "uniform_instants",
    "waiting_behind",
]

# A refusal's verdict, as the server's file importer gives it for the same code (every other 4xx refusal of the
# change itself is `invalid`): the intent means the same whichever way it is delivered.
_VERDICT_BY_CODE = {
    ErrorCode.PROMOTION_EXPIRED: Verdict.EXPIRED,
    ErrorCode.PROMOTION_NOT_FOUND: Verdict.NOT_FOUND,
    ErrorCode.PROMOTION_NOT_ASSOCIATED_WITH_CONTACT: Verdict.NOT_FOUND,
    ErrorCode.CONTACT_NOT_FOUND: Verdict.NOT_FOUND,
    ErrorCode.PROMOTION_ALREADY_REDEEMED: Verdict.CONFLICT_ALREADY_REDEEMED,
}


@dataclass(frozen=True, slots=True)
class Settlement:
    """The end of one online settlement attempt; ``state`` None means deferred (try again later)."""

    state: IntentState | None
    verdict: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: PromoflowClientError | None = None

    @property
    def deferred(self) -> bool:
        return self.state is None


def _done(verdict: Verdict, **detail: Any) -> Settlement:
    return Settlement(
        IntentState.DONE, verdict.value, None, {k: v for k, v in detail.items() if v is not None}
    )


_INSTANT = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})")


def format_instant(when: datetime) -> str:
    """The one way the SDK writes an instant in a reason: ISO 8601 to the second, with the offset it came with
    (``2026-03-10T14:03:07+01:00``)."""
    return when.isoformat(timespec="seconds")


def uniform_instants(text: str | None) -> str | None:
    """``text`` with every ISO 8601 instant in it written by :func:`format_instant` (servers write them with
    or without milliseconds, with ``Z`` or an offset), so every reason the POS shows reads alike."""
    if not text:
        return text

    def rewrite(match: re.Match[str]) -> str:
        try:
            return format_instant(datetime.fromisoformat(match.group(0).replace("Z", "+00:00")))
        except ValueError:
            return match.group(0)

    return _INSTANT.sub(rewrite, text)


def _refused(verdict: Verdict, error: ApiError) -> Settlement:
    detail = {"status": error.status, "errorCode": error.error_code, "requestId": error.request_id}
    return Settlement(
        IntentState.SETTLED,
        verdict.value,
        uniform_instants(error.message),
        {k: v for k, v in detail.items() if v},
        error,
    )


def classify(error: PromoflowClientError) -> Settlement:
    """A failed call's meaning for the intent: a final refusal (settled) or no definite answer (deferred)."""
    if isinstance(error, ApiError) and not isinstance(error, IdempotencyKeyInUseError):
        code = known_code(error.error_code)
        verdict = (
            _VERDICT_BY_CODE.get(code) if code is not None and HTTP_STATUS[code] == error.status else None
        )
        if verdict is not None:
            return _refused(verdict, error)
        if error.status in (400, 409, 422):
            return _refused(Verdict.INVALID, error)
    # Transport failures, 401/403 (configuration), an unknown 404 (wrong URL, missing route), 429, 5xx,
    # unreadable answers, a key still in use: nothing says the change is wrong, so it waits for a later try
    # or the file path.
    return Settlement(None, reason=str(error), error=error)


_LOOKUP_PARAMS = {
    "email": "email",
    "mobilephone": "mobile_phone",
    "socialsecuritynumber": "social_security_number",
    "membernumber": "custom_key",
    "externalid": "custom_key",
    "customkey": "custom_key",
}


def lookup_param(key_type: str) -> str:
    """The look-up parameter for a key type: ``customKey`` carries memberNumber or externalId (A11)."""
    return _LOOKUP_PARAMS.get(key_type.strip().lower(), "any")


def _instant(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if value is not None and value.tzinfo is not None else None


def redeemed_by_us(
    mine: Redemption, redeemed_on: datetime | str | None, unique_receipt_id: str | None = None
) -> bool:
    """The one rule for "was this conflict ours?": whether an assignment found already redeemed (at
    ``redeemed_on``, on the receipt ``unique_receipt_id`` when the server says) was redeemed by our sale.

    Ours: redeemed on our sale's receipt, or at our sale's instant, which only our own earlier attempt (whose
    idempotency record has expired) or our receipt's ``usedPromotions`` (``redeemedOn`` = the receipt's
    ``createdDate``) would set. (A 409 that answers a *retry* of our own uncertain attempt within one call is
    settled by the call itself: :class:`~promoflow.client.CallOutcome` ``settled_by="conflict"``.)
    """
    if unique_receipt_id and mine.unique_receipt_id and unique_receipt_id == mine.unique_receipt_id:
        return True
    seen = _instant(redeemed_on)
    return seen is not None and seen == mine.redeemed_on


def _redeemed_by_us(calls: Calls, record: Redemption) -> FlowPlan[bool | None]:
    """Whether the assignment's redemption is ours (True), someone else's (False), or unknown (None)."""
    if record.contact_id is None:
        return False
    try:
        state = yield from calls.get_promotion_state(record.contact_id, record.coupon_id)
    except PromoflowClientError:
        return None
    if state is None or not state.redeemed:
        return None if state is None else False
    return redeemed_by_us(record, state.redeemed_on)


def settle_redemption(calls: Calls, record: Redemption) -> FlowPlan[Settlement]:
    outcome = CallOutcome()
    try:
        yield from calls.redeem(
            record.coupon_id,
            record.redemption_channel.value,
            record.contact_id,
            redeemed_on=record.redeemed_on,
            store_external_id=record.store_external_id,
            unique_receipt_id=record.unique_receipt_id,
            idempotency_key=record.idempotency_key,
            outcome=outcome,
        )
    except AlreadyRedeemedError as exc:
        mine = yield from _redeemed_by_us(calls, record)
        if mine:
            return _done(Verdict.DUPLICATE, settledBy="state", attempts=outcome.attempts)
        if mine is None:
            return Settlement(None, reason=f"redeemed, by whom unknown: {exc.message}", error=exc)
        return _refused(Verdict.CONFLICT_ALREADY_REDEEMED, exc)
    except PromoflowClientError as exc:
        return classify(exc)
    verdict = Verdict.APPLIED if outcome.settled_by == "response" else Verdict.DUPLICATE
    return _done(verdict, settledBy=outcome.settled_by, attempts=outcome.attempts)


def settle_receipt(calls: Calls, record: Receipt, idempotency_key: str) -> FlowPlan[Settlement]:
    outcome = CallOutcome()
    try:
        try:
            result = yield from calls.send_receipt(record, idempotency_key, outcome)
        except IdempotencyKeyMismatchError:
            # The key was spent on a different body (an SDK upgrade changed the serialisation): the receipt
            # is deduplicated by uniqueReceiptId anyway, so a fresh key is safe.
            result = yield from calls.send_receipt(record, None, outcome)
    except PromoflowClientError as exc:
        return classify(exc)
    duplicate = result.status.lower() == "duplicate" or outcome.replayed
    return _done(
        Verdict.DUPLICATE if duplicate else Verdict.APPLIED,
        receiptStatus=result.status,
        warnings=list(result.warnings) or None,
        attempts=outcome.attempts,
    )


def _contact_changes(record: ContactRecord, preferences: dict[str, Any] | None) -> dict[str, Any]:
    changes: dict[str, Any] = dict(record.attributes)
    if preferences:
        changes["preferences"] = preferences
    return changes


def settle_contact(
    calls: Calls, intent: Intent, record: ContactRecord, *, look_up_first: bool
) -> FlowPlan[Settlement]:
    """A contact change, online. An update names its contact by GUID, or by key when the till never learnt
    the GUID (looked up now: no such contact is ``notFound``). A create is a create-or-update by its key,
    as the file import treats it (Engage's contact import upserts), so the intent means the same whichever
    way it is delivered: when the key exists, the record's values are sent as an update of that contact."""
    outcome = CallOutcome()
    preferences = (
        record.preferences.model_dump(by_alias=True, exclude_none=True) if record.preferences else None
    )
    upsert_key = f"{intent.idempotency_key}:upsert"
    try:
        if record.is_update:
            contact_id = record.contact_id
            if contact_id is None:
                assert record.match_key is not None and record.match_key_type is not None
                found = yield from calls.lookup_contact_id(
                    lookup_param(record.match_key_type), record.match_key, record.contact_type
                )
                if found is None:
                    reason = f"no contact has {record.match_key_type} {record.match_key!r}"
                    return Settlement(IntentState.SETTLED, Verdict.NOT_FOUND.value, reason, {})
                contact_id = found
            contact = yield from calls.update_contact(
                contact_id, _contact_changes(record, preferences), idempotency_key=intent.idempotency_key,
                outcome=outcome,
            )  # fmt: skip
            verdict = Verdict.DUPLICATE if outcome.replayed else Verdict.APPLIED
            return _done(verdict, contactId=contact.id)
        if look_up_first and intent.contact_key is not None:
            key_type, value = intent.contact_key
            found = yield from calls.lookup_contact_id(lookup_param(key_type), value)
            if found is not None:
                # Created by our own lost attempt, or held by someone already: the values go on it either way.
                contact = yield from calls.update_contact(
                    found, _contact_changes(record, preferences), idempotency_key=upsert_key, outcome=outcome
                )
                verdict = Verdict.DUPLICATE if outcome.replayed else Verdict.APPLIED
                return _done(verdict, contactId=contact.id, settledBy="lookup")
        contact = yield from calls.create_contact(
            record.attributes,
            contact_type=record.contact_type,
            preferences=preferences,
            idempotency_key=intent.idempotency_key,
            outcome=outcome,
        )
        if outcome.status_code == 201:
            verdict = Verdict.DUPLICATE if outcome.replayed else Verdict.APPLIED
            return _done(verdict, contactId=contact.id)
        # The key was taken (the server answered with that contact, unchanged): update it.
        contact = yield from calls.update_contact(
            contact.id, _contact_changes(record, preferences), idempotency_key=upsert_key, outcome=outcome
        )
    except PromoflowClientError as exc:
        return classify(exc)
    return _done(Verdict.DUPLICATE if outcome.replayed else Verdict.APPLIED, contactId=contact.id)


def settle_intent(
    calls: Calls, intent: Intent, record: Redemption | ContactRecord | Receipt, *, recovering: bool = False
) -> FlowPlan[Settlement]:
    """The plan settling ``intent`` (whose record was read from its file) online."""
    if intent.kind is IntentKind.REDEMPTION:
        assert isinstance(record, Redemption)
        return (yield from settle_redemption(calls, record))
    if intent.kind is IntentKind.RECEIPT:
        assert isinstance(record, Receipt)
        return (yield from settle_receipt(calls, record, intent.idempotency_key))
    assert isinstance(record, ContactRecord)
    return (yield from settle_contact(calls, intent, record, look_up_first=recovering))


def waiting_behind(ahead: list[Intent]) -> str:
    """The reason of a contact change queued behind earlier changes of its contact."""
    return f"behind {len(ahead)} earlier change(s) of this contact still on their way"


def record_settlement(outbox: Outbox, intent: Intent, settlement: Settlement) -> Intent:
    """Move a held intent by a settlement: done, settled, or queued for the file path."""
    if settlement.state is IntentState.DONE:
        return outbox.mark_done(intent, settlement.verdict or "applied", **settlement.detail)
    if settlement.state is IntentState.SETTLED:
        return outbox.mark_settled(
            intent, settlement.verdict or "invalid", settlement.reason, **settlement.detail
        )
    if settlement.state is IntentState.DEAD:
        return outbox.mark_dead(intent, settlement.reason or "rejected", **settlement.detail)
    return outbox.mark_queued(intent, settlement.reason)
