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
same plans, which call the client's public methods; the outbox's file writes, a few milliseconds, run
inline).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from promoflow.client._calls import Calls, FlowPlan, arun_flow, run_flow
from promoflow.client._client import AsyncEngageClient, EngageClient
from promoflow.client._contacts import ContactCache
from promoflow.client._requests import channel_name
from promoflow.client._retry import RetryPolicy
from promoflow.client._sale import FlowConfig, Sale, now_local, settle_pending
from promoflow.client._steps import (
    CompletionResult,
    IdentifyResult,
    PromotionsResult,
    RedemptionResult,
    StepResult,
    StepStatus,
)
from promoflow.client.outbox import Outbox
from promoflow.client.pricing import Basket, ExternalOffers, PricedBasket
from promoflow.wire.engage import ApiPromotion, PaymentMethod

__all__ = [
    "AsyncCheckout",
    "AsyncCheckoutFlow",
    "Checkout",
    "CheckoutFlow",
    "CompletionResult",
    "IdentifyResult",
    "PromotionsResult",
    "RedemptionResult",
    "StepResult",
    "StepStatus",
]

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------ sync API


def _config(
    outbox: Outbox,
    store_external_id: str,
    channel: str,
    contacts: ContactCache | None,
    retry: RetryPolicy | None,
    external_offers: ExternalOffers | None,
    clock: Callable[[], datetime] | None,
) -> FlowConfig:
    if not store_external_id:
        raise ValueError("store_external_id is required (receipts and redemptions name their store)")
    policy = retry if retry is not None else RetryPolicy.interactive()
    return FlowConfig(
        outbox=outbox,
        calls=Calls(policy),
        store_external_id=store_external_id,
        channel=channel_name(channel),
        contacts=contacts,
        external_offers=external_offers,
        clock=clock or now_local,
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
        self._config = _config(outbox, store_external_id, channel, contacts, retry, external_offers, clock)

    def _run(self, plan: FlowPlan[T]) -> T:
        return run_flow(plan, self.client)

    def start(self, checkout_id: str | None = None) -> Checkout:
        """A new sale; ``checkout_id`` (default: a new GUID) is also its receipt id unless told otherwise."""
        return Checkout(self, Sale(self._config, checkout_id or str(uuid.uuid4())))

    def recover(self) -> list[StepResult]:
        """After a restart: settle what a crash left pending (online, else queued for the sync agent)."""
        return self._run(settle_pending(self._config))


class Checkout:
    """One sale (see the module docs). Each method returns the step's result; ``steps`` lists them all."""

    def __init__(self, flow: CheckoutFlow, sale: Sale) -> None:
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
        self._config = _config(outbox, store_external_id, channel, contacts, retry, external_offers, clock)

    async def _run(self, plan: FlowPlan[T]) -> T:
        return await arun_flow(plan, self.client)

    def start(self, checkout_id: str | None = None) -> AsyncCheckout:
        """See :meth:`CheckoutFlow.start`."""
        return AsyncCheckout(self, Sale(self._config, checkout_id or str(uuid.uuid4())))

    async def recover(self) -> list[StepResult]:
        """See :meth:`CheckoutFlow.recover`."""
        return await self._run(settle_pending(self._config))


class AsyncCheckout:
    """The async twin of :class:`Checkout`."""

    def __init__(self, flow: AsyncCheckoutFlow, sale: Sale) -> None:
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
