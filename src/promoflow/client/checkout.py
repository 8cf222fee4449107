"""``CheckoutFlow``: the Engage promotions flow of one sale, which never loses a redemption nor uses one twice.

The steps (ENGAGE-SPEC A17, ARCHITECTURE "Data flow of one checkout")::

    flow = CheckoutFlow(client, Outbox("/var/lib/pos/outbox"), store_external_id="S1",
                        contacts=ContactCache("/var/lib/pos/contacts.sqlite3"))
    sale = flow.start()
    sale.identify(email="alva@example.com")        # GUID from the cache, else a look-up (then cached)
    sale.fetch_promotions()                         # the channel's redeemable assignments
    priced = sale.apply(basket)                     # pricing.apply_promotions on the chosen ones
    sale.update_contact({"mobilePhone": "+46…"})    # outbox first, then the API
    ...take the payment...
    done = sale.complete([PaymentMethod(type="card", value=priced.total_paid)])

Every change goes through the :class:`~promoflow.client.Outbox` before the network: it is written as an XML
file (durable), then sent with an ``Idempotency-Key`` under the interactive retry budget, then marked
done; without a definite answer it stays in the outbox for the :class:`~promoflow.client.SyncAgent`.
``complete`` writes the sale's redemptions and its receipt as one group and commits it in one step, so a
crash leaves either the whole sale to deliver or none of it. Each step returns a result object saying what
happened (:class:`StepStatus`); a read the server cannot answer leaves the sale going without it.

:class:`AsyncCheckoutFlow` is the same flow on :class:`~promoflow.client.AsyncEngageClient` (both run the
same plans; the outbox's file writes, a few milliseconds, run inline).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from promoflow.client._client import AsyncEngageClient, EngageClient
from promoflow.client._contacts import ContactCache
from promoflow.client._engine import Plan
from promoflow.client._exceptions import ContactNotFoundError, PromoflowClientError
from promoflow.client._requests import Operations, channel_name
from promoflow.client._retry import RetryPolicy
from promoflow.client._settle import Settlement, adrive, drive, look_up, record_settlement, settle_intent
from promoflow.client.outbox import Intent, IntentState, Outbox
from promoflow.client.pricing import ApplicationStatus, Basket, ExternalOffers, PricedBasket, apply_promotions
from promoflow.wire.engage import ApiPromotion, ChannelType, PaymentMethod, Receipt, ReceiptContact
from promoflow.wire.xml import ContactPreferences, ContactRecord, Redemption

__all__ = [
    "AsyncCheckout",
    "AsyncCheckoutFlow",
    "Checkout",
    "CheckoutFlow",
    "CompletionResult",
    "IdentifyResult",
    "PromotionsResult",
    "StepResult",
    "StepStatus",
]

T = TypeVar("T")

KEY_TYPES = {
    "email": "email",
    "mobile_phone": "mobilePhone",
    "social_security_number": "socialSecurityNumber",
    "custom_key": "memberNumber",
    "any": "any",
}
"""identify() keyword → the key type it stands for (``custom_key`` is memberNumber unless told otherwise)."""


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
    """No definite answer: the change stays in the outbox and the sync agent delivers it by file."""
    CONFLICT = "conflict"
    """The promotion was redeemed elsewhere (``conflictAlreadyRedeemed``): this redemption did not count."""
    REJECTED = "rejected"
    """The server refused the change for good (``expired``, ``notFound``, ``invalid``; see the verdict)."""
    SKIPPED = "skipped"
    """Nothing to do (no customer, nothing changed)."""

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


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """``complete``: one result per redeemed promotion and one for the receipt."""

    unique_receipt_id: str
    paid_at: datetime
    redemptions: tuple[StepResult, ...]
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


def _now_local() -> datetime:
    # The sale's instant, in local time with its offset (Engage wants receipt dates that way).
    return datetime.now().astimezone()


def _to_millis(when: datetime) -> datetime:
    # Servers answer instants in milliseconds: the sale's instant must read back identically from every
    # file and answer (that is how a redemption made by our own receipt is told from someone else's).
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


@dataclass
class _FlowConfig:
    outbox: Outbox
    ops: Operations
    retry: RetryPolicy
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


class _Sale:
    """The state and the steps of one checkout, as plans (run by :class:`Checkout` / :class:`AsyncCheckout`)."""

    def __init__(self, config: _FlowConfig, checkout_id: str) -> None:
        self.config = config
        self.id = checkout_id
        self.contact_id: str | None = None
        self.key: tuple[str, str] | None = None
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
        cache = self.config.contacts
        cached = cache.get(kind, value) if cache is not None else None
        if cached is not None:
            self.contact_id = cached
            return self._record(
                IdentifyResult(step="identify", status=StepStatus.CACHED, contact_id=cached, key=self.key)
            )
        try:
            found = yield from look_up(self.config.ops, name, value, contact_type)
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
        outbox = self.config.outbox
        try:
            record = outbox.load(intent)
            settlement = yield from settle_intent(self.config.ops, intent, record)
            record_settlement(outbox, intent, settlement)
        finally:
            outbox.release(intent)
        result = StepResult(
            step=step,
            status=_status_of(settlement),
            message=settlement.reason,
            intent_id=intent.id,
            verdict=settlement.verdict,
            detail=settlement.detail,
        )
        return self._record(result), settlement

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
        if self.contact_id is None:
            return self._record(
                StepResult(
                    step="update_contact",
                    status=StepStatus.SKIPPED,
                    message="the contact's GUID is not known (not identified, or created offline)",
                )  # fmt: skip
            )
        attributes = {name: _text(value) for name, value in changes.items() if name != "preferences"}
        preferences = changes.get("preferences")
        record = ContactRecord(
            contact_id=self.contact_id,
            attributes=attributes,
            preferences=ContactPreferences.model_validate(preferences) if preferences else None,
        )
        intent = self.config.outbox.add_contact(record)
        result, _ = yield from self._change("update_contact", intent)
        return result

    # --------------------------------------------------------------------------------------- promotions

    def fetch_promotions(self) -> Plan[PromotionsResult]:
        if self.contact_id is None:
            return self._record(
                PromotionsResult(step="fetch_promotions", status=StepStatus.SKIPPED, message="no contact")
            )
        try:
            found = yield from self.config.ops.list_promotions(self.contact_id, self.config.channel)
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
        if self.key is not None and self.key[0] != "any":
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
                written.append(outbox.add_redemption(redemption, group=self.id))
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
                    outbox.mark_queued(intent, deferred)
                    results.append(StepResult(step=step, status=StepStatus.QUEUED, message=deferred,
                                              intent_id=intent.id))  # fmt: skip
                else:
                    settlement = yield from settle_intent(config.ops, intent, outbox.load(intent))
                    record_settlement(outbox, intent, settlement)
                    if settlement.deferred:
                        deferred = f"server unreachable during the checkout: {settlement.reason}"
                    results.append(
                        StepResult(
                            step=step,
                            status=_status_of(settlement),
                            message=settlement.reason,
                            intent_id=intent.id,
                            verdict=settlement.verdict,
                            detail=settlement.detail,
                        )  # fmt: skip
                    )
                outbox.release(intent)
        finally:
            for intent in written:
                outbox.release(intent)
        if written:
            outbox.forget_group(self.id)
        redemption_results = tuple(r for r in results if r.step == "redeem")
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


def _settle_pending(config: _FlowConfig) -> Plan[list[StepResult]]:
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
            settlement = yield from settle_intent(config.ops, intent, outbox.load(intent), recovering=True)
            moved = record_settlement(outbox, intent, settlement)
            _learn_contact(config.contacts, moved, settlement)
        finally:
            outbox.release(intent)
        results.append(
            StepResult(
                step=f"recover:{intent.kind.value}",
                status=_status_of(settlement),
                message=settlement.reason,
                intent_id=intent.id,
                verdict=settlement.verdict,
                detail=settlement.detail,
            )  # fmt: skip
        )
        if intent.group is not None:
            outbox.forget_group(intent.group)
    return results


def _learn_contact(cache: ContactCache | None, intent: Intent, settlement: Settlement) -> None:
    contact_id = settlement.detail.get("contactId")
    if cache is not None and intent.contact_key is not None and contact_id:
        cache.save(intent.contact_key[0], intent.contact_key[1], str(contact_id))


# ------------------------------------------------------------------------------------------------ sync API


def _config(
    api_version: Any,
    outbox: Outbox,
    store_external_id: str,
    channel: str,
    contacts: ContactCache | None,
    retry: RetryPolicy | None,
    external_offers: ExternalOffers | None,
    clock: Callable[[], datetime] | None,
) -> _FlowConfig:
    if not store_external_id:
        raise ValueError("store_external_id is required (receipts and redemptions name their store)")
    policy = retry if retry is not None else RetryPolicy.interactive()
    return _FlowConfig(
        outbox=outbox,
        ops=Operations(api_version=api_version, retry=policy),
        retry=policy,
        store_external_id=store_external_id,
        channel=channel_name(channel),
        contacts=contacts,
        external_offers=external_offers,
        clock=clock or _now_local,
    )


class CheckoutFlow:
    """The checkout flow of one till or web shop: its client, outbox, store, channel and contact cache.

    ``retry`` governs the checkout's calls (default :meth:`RetryPolicy.interactive`: a few seconds at most,
    so the customer never waits long; what it cannot settle goes to the outbox). ``contacts`` caches contact
    GUIDs by key. ``external_offers`` prices EXTERNALOFFER promotions (see :mod:`promoflow.client.pricing`).
    ``clock`` gives the sale's instant (timezone-aware).
    """

    def __init__(
        self,
        client: EngageClient,
        outbox: Outbox,
        *,
        store_external_id: str,
        channel: str = "POS",
        contacts: ContactCache | None = None,
        retry: RetryPolicy | None = None,
        external_offers: ExternalOffers | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self._config = _config(
            client.api_version, outbox, store_external_id, channel, contacts, retry, external_offers, clock
        )

    def _run(self, plan: Plan[T]) -> T:
        result: T = drive(plan, self.client._send, self._config.retry.sleep)
        return result

    def start(self, checkout_id: str | None = None) -> Checkout:
        """A new sale; ``checkout_id`` (default: a new GUID) is also its receipt id unless told otherwise."""
        return Checkout(self, _Sale(self._config, checkout_id or str(uuid.uuid4())))

    def recover(self) -> list[StepResult]:
        """After a restart: settle what a crash left pending (online, else queued for the sync agent)."""
        return self._run(_settle_pending(self._config))


class Checkout:
    """One sale (see the module docs). Each method returns the step's result; ``steps`` lists them all."""

    def __init__(self, flow: CheckoutFlow, sale: _Sale) -> None:
        self._flow = flow
        self._sale = sale

    @property
    def id(self) -> str:
        return self._sale.id

    @property
    def contact_id(self) -> str | None:
        return self._sale.contact_id

    @property
    def promotions(self) -> tuple[ApiPromotion, ...]:
        return self._sale.promotions

    @property
    def priced(self) -> PricedBasket | None:
        return self._sale.priced

    @property
    def steps(self) -> list[StepResult]:
        return list(self._sale.steps)

    def identify(
        self,
        *,
        email: str | None = None,
        mobile_phone: str | None = None,
        social_security_number: str | None = None,
        custom_key: str | None = None,
        any: str | None = None,
        contact_id: str | None = None,
        contact_type: str | None = None,
        key_type: str | None = None,
    ) -> IdentifyResult:
        """Find the customer's GUID by one key: the cache first, then ``GET …/contacts/id`` (cached after).

        ``key_type`` names what ``custom_key``/``any`` hold (default ``memberNumber``/``any``); the receipt
        matches the contact by it while the GUID is unknown.
        """
        keys = {
            "email": email,
            "mobile_phone": mobile_phone,
            "social_security_number": social_security_number,
            "custom_key": custom_key,
            "any": any,
        }
        return self._flow._run(self._sale.identify(keys, contact_id, contact_type, key_type))

    def create_contact(
        self,
        attributes: Mapping[str, Any],
        *,
        contact_type: str | None = None,
        preferences: Mapping[str, bool] | None = None,
        key_type: str = "email",
    ) -> StepResult:
        """Register a new customer (outbox first). Offline, the GUID is learnt at a later identification."""
        return self._flow._run(self._sale.create_contact(attributes, contact_type, preferences, key_type))

    def fetch_promotions(self) -> PromotionsResult:
        """The contact's redeemable promotions in the flow's channel (none when offline)."""
        return self._flow._run(self._sale.fetch_promotions())

    def apply(self, basket: Basket, chosen: Iterable[str | ApiPromotion] | None = None) -> PricedBasket:
        """Price the basket with the chosen promotions (assignment ids or items; default all fetched)."""
        return self._sale.apply(basket, chosen)

    def update_contact(self, changes: Mapping[str, Any]) -> StepResult:
        """Send changed contact attributes (outbox first; ``None``/``""`` clears one)."""
        return self._flow._run(self._sale.update_contact(changes))

    def complete(
        self,
        payment_methods: Sequence[PaymentMethod] | None = None,
        *,
        unique_receipt_id: str | None = None,
        receipt_number: str | None = None,
        paid_at: datetime | None = None,
        include_manual: bool = True,
        **receipt_extra: Any,
    ) -> CompletionResult:
        """After a successful payment: redeem every used promotion and send the receipt (outbox first).

        ``unique_receipt_id`` defaults to the checkout id; ``paid_at`` to now (local time with offset).
        ``receipt_extra`` adds receipt fields (``tax_details``, ``extra_data``, …).
        """
        return self._flow._run(
            self._sale.complete(
                payment_methods, unique_receipt_id, receipt_number, paid_at, include_manual, receipt_extra
            )
        )


# ----------------------------------------------------------------------------------------------- async API


class AsyncCheckoutFlow:
    """:class:`CheckoutFlow` on an :class:`AsyncEngageClient`: the same constructor and behaviour."""

    def __init__(
        self,
        client: AsyncEngageClient,
        outbox: Outbox,
        *,
        store_external_id: str,
        channel: str = "POS",
        contacts: ContactCache | None = None,
        retry: RetryPolicy | None = None,
        external_offers: ExternalOffers | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self._config = _config(
            client.api_version, outbox, store_external_id, channel, contacts, retry, external_offers, clock
        )

    async def _run(self, plan: Plan[T]) -> T:
        result: T = await adrive(plan, self.client._send, self._config.retry.async_sleep)
        return result

    def start(self, checkout_id: str | None = None) -> AsyncCheckout:
        """See :meth:`CheckoutFlow.start`."""
        return AsyncCheckout(self, _Sale(self._config, checkout_id or str(uuid.uuid4())))

    async def recover(self) -> list[StepResult]:
        """See :meth:`CheckoutFlow.recover`."""
        return await self._run(_settle_pending(self._config))


class AsyncCheckout:
    """The async twin of :class:`Checkout`."""

    def __init__(self, flow: AsyncCheckoutFlow, sale: _Sale) -> None:
        self._flow = flow
        self._sale = sale

    @property
    def id(self) -> str:
        return self._sale.id

    @property
    def contact_id(self) -> str | None:
        return self._sale.contact_id

    @property
    def promotions(self) -> tuple[ApiPromotion, ...]:
        return self._sale.promotions

    @property
    def priced(self) -> PricedBasket | None:
        return self._sale.priced

    @property
    def steps(self) -> list[StepResult]:
        return list(self._sale.steps)

    def identify(
        self,
        *,
        email: str | None = None,
        mobile_phone: str | None = None,
        social_security_number: str | None = None,
        custom_key: str | None = None,
        any: str | None = None,
        contact_id: str | None = None,
        contact_type: str | None = None,
        key_type: str | None = None,
    ) -> Awaitable[IdentifyResult]:
        """See :meth:`Checkout.identify`."""
        keys = {
            "email": email,
            "mobile_phone": mobile_phone,
            "social_security_number": social_security_number,
            "custom_key": custom_key,
            "any": any,
        }
        return self._flow._run(self._sale.identify(keys, contact_id, contact_type, key_type))

    def create_contact(
        self,
        attributes: Mapping[str, Any],
        *,
        contact_type: str | None = None,
        preferences: Mapping[str, bool] | None = None,
        key_type: str = "email",
    ) -> Awaitable[StepResult]:
        """See :meth:`Checkout.create_contact`."""
        return self._flow._run(self._sale.create_contact(attributes, contact_type, preferences, key_type))

    def fetch_promotions(self) -> Awaitable[PromotionsResult]:
        """See :meth:`Checkout.fetch_promotions`."""
        return self._flow._run(self._sale.fetch_promotions())

    def apply(self, basket: Basket, chosen: Iterable[str | ApiPromotion] | None = None) -> PricedBasket:
        """See :meth:`Checkout.apply`."""
        return self._sale.apply(basket, chosen)

    def update_contact(self, changes: Mapping[str, Any]) -> Awaitable[StepResult]:
        """See :meth:`Checkout.update_contact`."""
        return self._flow._run(self._sale.update_contact(changes))

    def complete(
        self,
        payment_methods: Sequence[PaymentMethod] | None = None,
        *,
        unique_receipt_id: str | None = None,
        receipt_number: str | None = None,
        paid_at: datetime | None = None,
        include_manual: bool = True,
        **receipt_extra: Any,
    ) -> Awaitable[CompletionResult]:
        """See :meth:`Checkout.complete`."""
        return self._flow._run(
            self._sale.complete(
                payment_methods, unique_receipt_id, receipt_number, paid_at, include_manual, receipt_extra
            )
        )
