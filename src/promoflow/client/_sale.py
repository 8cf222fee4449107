"""One checkout's steps as plans (shared by :class:`~promoflow.client.Checkout` and its async twin): the sale's
state, the outbox writes, the calls, and what each answer means for the step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from promoflow.client._calls import Calls
from promoflow.client._calls import FlowPlan as Plan
from promoflow.client._contacts import ContactCache
from promoflow.client._exceptions import ContactNotFoundError, PromoflowClientError
from promoflow.client._settle import Settlement, record_settlement, settle_intent, waiting_behind
from promoflow.client._steps import (
    CompletionResult,
    IdentifyResult,
    PromotionsResult,
    RedemptionResult,
    StepResult,
    StepStatus,
)
from promoflow.client.outbox import Intent, IntentKind, IntentState, Outbox
from promoflow.client.pricing import ApplicationStatus, Basket, ExternalOffers, PricedBasket, apply_promotions
from promoflow.wire.engage import ApiPromotion, ChannelType, PaymentMethod, Receipt, ReceiptContact
from promoflow.wire.xml import ContactPreferences, ContactRecord, Redemption

T = TypeVar("T")

KEY_TYPES = {
    "email": "email",
    "mobile_phone": "mobilePhone",
    "social_security_number": "socialSecurityNumber",
    "custom_key": "memberNumber",
    "any": "any",
}
"""identify() keyword → the key type it stands for (``custom_key`` is memberNumber unless told otherwise)."""


def now_local() -> datetime:
    # The sale's instant, in local time with its offset (Engage wants receipt dates that way).
    return datetime.now().astimezone()


def _to_millis(when: datetime) -> datetime:
    # Servers answer instants in milliseconds: the sale's instant must read back identically from every
    # file and answer (that is how a redemption made by our own receipt is told from someone else's).
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


@dataclass
class FlowConfig:
    outbox: Outbox
    calls: Calls
    store_external_id: str
    channel: str
    contacts: ContactCache | None
    external_offers: ExternalOffers | None
    clock: Callable[[], datetime]


def _status_of(settlement: Settlement) -> StepStatus:
    if settlement.deferred:
        return StepStatus.QUEUED
    if settlement.state is IntentState.DONE:
        return StepStatus.DUPLICATE if settlement.verdict == "duplicate" else StepStatus.APPLIED
    if settlement.verdict == "conflictAlreadyRedeemed":
        return StepStatus.CONFLICT
    return StepStatus.REJECTED


def _step(outbox: Outbox, step: str, intent: Intent, status: StepStatus, message: str | None = None,
          verdict: str | None = None, detail: Mapping[str, Any] | None = None) -> StepResult:  # fmt: skip
    """A step's result about ``intent``; for a redemption, which assignment and promotion it was for."""
    fields: dict[str, Any] = {"step": step, "status": status, "message": message, "intent_id": intent.id,
                              "verdict": verdict, "detail": dict(detail or {})}  # fmt: skip
    if intent.kind is not IntentKind.REDEMPTION:
        return StepResult(**fields)
    assignment_id = intent.detail.get("assignmentId")
    if assignment_id is None:  # written without the note (an older SDK): the file says it
        record = outbox.load(intent)
        assert isinstance(record, Redemption)
        assignment_id = record.coupon_id
    return RedemptionResult(**fields, assignment_id=str(assignment_id),
                            promotion_id=intent.detail.get("promotionId"),
                            promotion_name=intent.detail.get("promotionName"))  # fmt: skip


def _settled_step(outbox: Outbox, step: str, intent: Intent, settlement: Settlement) -> StepResult:
    """The result of a step whose intent was settled (online, refused, or queued for the files)."""
    return _step(outbox, step, intent, _status_of(settlement), settlement.reason, settlement.verdict,
                 settlement.detail)  # fmt: skip


class Sale:
    """The state and the steps of one checkout, as plans (run by :class:`Checkout` / :class:`AsyncCheckout`)."""

    def __init__(self, config: FlowConfig, checkout_id: str) -> None:
        self.config = config
        self.id = checkout_id
        self.contact_id: str | None = None
        self.key: tuple[str, str] | None = None
        self.contact_type: str | None = None
        self.promotions: tuple[ApiPromotion, ...] = ()
        self.priced: PricedBasket | None = None
        self.steps: list[StepResult] = []
        self.completion: CompletionResult | None = None

    def _record(self, result: T) -> T:
        assert isinstance(result, StepResult)
        self.steps.append(result)
        return result

    # ----------------------------------------------------------------------------------------- identify

    def identify(self, keys: Mapping[str, str | None], contact_id: str | None, contact_type: str | None,
                 key_type: str | None) -> Plan[IdentifyResult]:  # fmt: skip
        given = {name: value for name, value in keys.items() if value}
        if contact_id is not None:
            self.contact_id = contact_id.lower()
            return self._record(
                IdentifyResult(step="identify", status=StepStatus.OK, contact_id=self.contact_id)
            )
        if len(given) != 1:
            raise ValueError("identify by exactly one key (email, mobile_phone, …) or by contact_id")
        ((name, value),) = given.items()
        kind = key_type if key_type is not None and name in ("custom_key", "any") else KEY_TYPES[name]
        self.key = (kind, value)
        self.contact_type = contact_type
        cache = self.config.contacts
        cached = cache.get(kind, value) if cache is not None else None
        if cached is not None:
            self.contact_id = cached
            return self._record(
                IdentifyResult(step="identify", status=StepStatus.CACHED, contact_id=cached, key=self.key)
            )
        try:
            found = yield from self.config.calls.lookup_contact_id(name, value, contact_type)
        except PromoflowClientError as exc:
            return self._record(
                IdentifyResult(step="identify", status=StepStatus.OFFLINE, message=str(exc), key=self.key)
            )
        if found is None:
            pending = cache.pending_create(kind, value) if cache is not None else None
            message = "created offline; not imported by the server yet" if pending else None
            return self._record(
                IdentifyResult(
                    step="identify",
                    status=StepStatus.NOT_FOUND,
                    message=message,
                    key=self.key,
                    detail={"pendingIntent": pending} if pending else {},
                )  # fmt: skip
            )
        self.contact_id = found
        if cache is not None:
            cache.save(kind, value, found)
        return self._record(
            IdentifyResult(step="identify", status=StepStatus.OK, contact_id=found, key=self.key)
        )

    # ----------------------------------------------------------------------------------------- contacts

    def _change(self, step: str, intent: Intent) -> Plan[tuple[StepResult, Settlement | None]]:
        """Deliver a contact change now, unless earlier changes of the same contact are still on their way:
        then it waits behind them in the outbox (changes of one contact apply in the order the till made them)."""
        outbox = self.config.outbox
        try:
            ahead = outbox.contact_changes_ahead(intent)
            if ahead:
                reason = waiting_behind(ahead)
                moved = outbox.mark_queued(intent, reason)
                result = _step(outbox, step, moved, StepStatus.QUEUED, reason,
                               detail={"behind": [i.id for i in ahead]})  # fmt: skip
                return self._record(result), None
            record = outbox.load(intent)
            settlement = yield from settle_intent(self.config.calls, intent, record)
            moved = record_settlement(outbox, intent, settlement)
        finally:
            outbox.release(intent)
        return self._record(_settled_step(outbox, step, moved, settlement)), settlement

    def create_contact(self, attributes: Mapping[str, Any], contact_type: str | None,
                       preferences: Mapping[str, bool] | None, key_type: str) -> Plan[StepResult]:  # fmt: skip
        if key_type not in attributes or not str(attributes[key_type]).strip():
            raise ValueError(f"the new contact's key attribute {key_type!r} is missing")
        record = ContactRecord(
            contact_type=contact_type,
            attributes={name: _text(value) for name, value in attributes.items()},
            preferences=ContactPreferences.model_validate(preferences) if preferences else None,
        )
        key = (key_type, str(attributes[key_type]).strip())
        intent = self.config.outbox.add_contact(record, key=key)
        result, settlement = yield from self._change("create_contact", intent)
        self.key = key
        self.contact_type = contact_type
        cache = self.config.contacts
        contact_id = settlement.detail.get("contactId") if settlement is not None else None
        if contact_id:
            self.contact_id = str(contact_id)
            if cache is not None:
                cache.save(key[0], key[1], self.contact_id)
        elif result.status is StepStatus.QUEUED and cache is not None:
            cache.created_offline(key[0], key[1], intent.id)
        return result

    def update_contact(self, changes: Mapping[str, Any]) -> Plan[StepResult]:
        if not changes:
            return self._record(
                StepResult(step="update_contact", status=StepStatus.SKIPPED, message="no changes")
            )
        if self.contact_id is None and self.key is None:
            raise ValueError("update_contact needs a customer: identify() or create_contact() first")
        attributes = {name: _text(value) for name, value in changes.items() if name != "preferences"}
        preferences = changes.get("preferences")
        if self.contact_id is not None:
            named: dict[str, Any] = {"contact_id": self.contact_id}
        else:
            # The GUID is not known (identified while offline, or created by file): the change is kept and
            # delivered by the contact's key, resolved by the server (look-up online, matchKey by file).
            assert self.key is not None
            named = {
                "match_key": self.key[1],
                "match_key_type": self.key[0],
                "contact_type": self.contact_type,
            }
        record = ContactRecord(
            attributes=attributes,
            preferences=ContactPreferences.model_validate(preferences) if preferences else None,
            **named,
        )
        intent = self.config.outbox.add_contact(record, key=self.key)
        result, settlement = yield from self._change("update_contact", intent)
        contact_id = settlement.detail.get("contactId") if settlement is not None else None
        if contact_id and self.contact_id is None and self.key is not None:
            self.contact_id = str(contact_id)
            if self.config.contacts is not None:
                self.config.contacts.save(self.key[0], self.key[1], self.contact_id)
        return result

    # --------------------------------------------------------------------------------------- promotions

    def fetch_promotions(self) -> Plan[PromotionsResult]:
        if self.contact_id is None:
            return self._record(
                PromotionsResult(step="fetch_promotions", status=StepStatus.SKIPPED, message="no contact")
            )
        try:
            found = yield from self.config.calls.list_promotions(self.contact_id, self.config.channel)
        except ContactNotFoundError as exc:
            # A cached GUID the server no longer knows: forget it so the next identify looks it up again.
            if self.key is not None and self.config.contacts is not None:
                self.config.contacts.forget(*self.key)
            return self._record(
                PromotionsResult(step="fetch_promotions", status=StepStatus.NOT_FOUND, message=str(exc))
            )
        except PromoflowClientError as exc:
            return self._record(
                PromotionsResult(step="fetch_promotions", status=StepStatus.OFFLINE, message=str(exc))
            )
        self.promotions = tuple(found)
        return self._record(
            PromotionsResult(step="fetch_promotions", status=StepStatus.OK, promotions=self.promotions)
        )

    def apply(self, basket: Basket, chosen: Iterable[str | ApiPromotion] | None) -> PricedBasket:
        if chosen is None:
            selected = list(self.promotions)
        else:
            wanted = [c.id if isinstance(c, ApiPromotion) else str(c) for c in chosen]
            by_id = {p.id.lower(): p for p in self.promotions}
            missing = [w for w in wanted if w.lower() not in by_id]
            if missing:
                raise ValueError(f"not among the fetched promotions: {missing}")
            selected = [by_id[w.lower()] for w in wanted]
        self.priced = apply_promotions(
            basket, selected, self.config.channel, external_offers=self.config.external_offers
        )
        return self.priced

    # ----------------------------------------------------------------------------------------- complete

    def _receipt_contact(self) -> ReceiptContact | None:
        if self.contact_id is not None:
            return ReceiptContact(match_key=self.contact_id, match_key_type="contactId")
        if self.key is not None:
            # `any` too: the server reads it by Engage's `any` rule, as it reads the contact change sent with it.
            return ReceiptContact(match_key=self.key[1], match_key_type=self.key[0])
        return None

    def complete(self, payment_methods: Sequence[PaymentMethod] | None, unique_receipt_id: str | None,
                 receipt_number: str | None, paid_at: datetime | None, include_manual: bool,
                 receipt_extra: Mapping[str, Any]) -> Plan[CompletionResult]:  # fmt: skip
        if self.completion is not None:
            raise RuntimeError("this checkout is already complete")
        if self.priced is None:
            raise ValueError("apply a basket before completing the checkout")
        config, priced = self.config, self.priced
        when = _to_millis(paid_at or config.clock())
        if when.tzinfo is None:
            raise ValueError("paid_at must be timezone-aware")
        receipt_id = unique_receipt_id or self.id
        outbox = config.outbox
        used = [
            a
            for a in priced.promotions
            if a.status is ApplicationStatus.APPLIED
            or (include_manual and a.status is ApplicationStatus.MANUAL)
        ]
        receipt_contact = self._receipt_contact()
        written: list[Intent] = []
        try:
            # Write the whole sale, then commit it in one step: a crash in between leaves nothing live.
            for application in used:
                redemption = Redemption(
                    coupon_id=application.assignment_id,
                    contact_id=self.contact_id,
                    redemption_channel=ChannelType(config.channel),
                    redeemed_on=when,
                    store_external_id=config.store_external_id,
                    unique_receipt_id=receipt_id,
                )
                note = {"assignmentId": application.assignment_id,
                        "promotionId": application.promotion.promotion_id,
                        "promotionName": application.promotion.name}  # fmt: skip
                written.append(outbox.add_redemption(redemption, group=self.id, detail=note))
            if receipt_contact is not None:
                receipt = Receipt(
                    contact=receipt_contact,
                    unique_receipt_id=receipt_id,
                    receipt_number=receipt_number,
                    created_date=when,
                    store_external_id=config.store_external_id,
                    currency=priced.currency,
                    total_gross_price=priced.total_paid,
                    payment_methods=list(
                        payment_methods or [PaymentMethod(type="card", value=priced.total_paid)]
                    ),
                    items=priced.receipt_items(),
                    used_promotions=priced.used_promotions(include_manual=include_manual) or None,
                    **receipt_extra,
                )
                written.append(outbox.add_receipt(receipt, group=self.id))
            if written:
                outbox.commit(self.id, written)
        except BaseException:
            for intent in written:
                outbox.discard(intent)
            raise
        results: list[StepResult] = []
        deferred: str | None = None
        try:
            for intent in written:
                step = "redeem" if intent.kind.value == "redemption" else "receipt"
                if deferred is not None:
                    # The server gave no answer a moment ago: hand the rest straight to the file path.
                    moved = outbox.mark_queued(intent, deferred)
                    results.append(_step(outbox, step, moved, StepStatus.QUEUED, deferred))
                else:
                    settlement = yield from settle_intent(config.calls, intent, outbox.load(intent))
                    moved = record_settlement(outbox, intent, settlement)
                    if settlement.deferred:
                        deferred = f"server unreachable during the checkout: {settlement.reason}"
                    results.append(_settled_step(outbox, step, moved, settlement))
                outbox.release(intent)
        finally:
            for intent in written:
                outbox.release(intent)
        if written:
            outbox.forget_group(self.id)
        redemption_results = tuple(r for r in results if isinstance(r, RedemptionResult))
        receipt_result = next((r for r in results if r.step == "receipt"), None)
        if receipt_result is None:
            receipt_result = StepResult(
                step="receipt", status=StepStatus.SKIPPED, message="no customer to send it for"
            )
        self.steps.extend(results if receipt_contact is not None else [*results, receipt_result])
        self.completion = CompletionResult(receipt_id, when, redemption_results, receipt_result)
        return self.completion


def _text(value: Any) -> str:
    if value is None:
        return ""  # clears the attribute (Engage: a present empty value overwrites)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int | float | str):
        return str(value)
    raise TypeError(f"a contact attribute is text, not {type(value).__name__}")


def settle_pending(config: FlowConfig) -> Plan[list[StepResult]]:
    """Settle the pending intents a crash left behind (online; without an answer, queued for files)."""
    outbox = config.outbox
    outbox.recover()
    results: list[StepResult] = []
    for listed in outbox.intents(IntentState.PENDING):
        if listed.group is not None and not outbox.is_committed(listed.group):
            continue
        intent = outbox.claim(listed)
        if intent is None:
            continue
        try:
            ahead = outbox.contact_changes_ahead(intent)
            if ahead:  # an earlier change of this contact is still on its way: this one waits behind it
                settlement = Settlement(None, reason=waiting_behind(ahead))
            else:
                settlement = yield from settle_intent(
                    config.calls, intent, outbox.load(intent), recovering=True
                )
            moved = record_settlement(outbox, intent, settlement)
            _learn_contact(config.contacts, moved, settlement)
        finally:
            outbox.release(intent)
        results.append(_settled_step(outbox, f"recover:{intent.kind.value}", moved, settlement))
        if intent.group is not None:
            outbox.forget_group(intent.group)
    return results


def _learn_contact(cache: ContactCache | None, intent: Intent, settlement: Settlement) -> None:
    contact_id = settlement.detail.get("contactId")
    if cache is not None and intent.contact_key is not None and contact_id:
        cache.save(intent.contact_key[0], intent.contact_key[1], str(contact_id))
