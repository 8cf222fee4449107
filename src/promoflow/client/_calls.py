"""Flows written once for both clients: a checkout's or a sync pass's steps are plans whose actions are calls of
the client's *public* methods.

A flow plan yields a :class:`Call` (the name of an ``EngageClient`` method and its arguments) and gets back the
method's result, or sees the :class:`~promoflow.client.PromoflowClientError` it raised raised at the
``yield``. :func:`run_flow` performs calls on an :class:`~promoflow.client.EngageClient`, :func:`arun_flow`
awaits them on an :class:`~promoflow.client.AsyncEngageClient`; both go through the one loop of
:mod:`promoflow.client._engine`. :class:`Calls` names the methods the flows use, typed, each run under the
flow's retry policy (the methods' ``retry=``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from promoflow.client._engine import CallOutcome, run_async, run_blocking
from promoflow.client._exceptions import PromoflowClientError
from promoflow.client._retry import RetryPolicy
from promoflow.wire.engage import ApiPromotion, ContactOut, Receipt, ReceiptResult

if TYPE_CHECKING:
    from promoflow.client._client import AsyncEngageClient, EngageClient

__all__ = ["Call", "Calls", "FlowPlan", "Raised", "arun_flow", "run_flow"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One step of a flow: call the client's public method ``method`` with these arguments."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Raised:
    """The call raised ``error`` (an SDK error; anything else propagates out of the flow)."""

    error: PromoflowClientError


FlowPlan = Generator[Call, Any, T]


def _call(method: str, *args: Any, **kwargs: Any) -> FlowPlan[Any]:
    reply = yield Call(method, args, kwargs)
    if isinstance(reply, Raised):
        raise reply.error
    return reply


def run_flow(plan: FlowPlan[T], client: EngageClient) -> T:
    """Run a flow plan with blocking calls on ``client``."""

    def perform(call: Call) -> Any:
        try:
            return getattr(client, call.method)(*call.args, **call.kwargs)
        except PromoflowClientError as exc:
            return Raised(exc)

    return run_blocking(plan, perform)


async def arun_flow(plan: FlowPlan[T], client: AsyncEngageClient) -> T:
    """Run a flow plan with awaited calls on ``client``."""

    async def perform(call: Call) -> Any:
        try:
            return await getattr(client, call.method)(*call.args, **call.kwargs)
        except PromoflowClientError as exc:
            return Raised(exc)

    return await run_async(plan, perform)


class Calls:
    """The client methods the flows call, as plan steps, each under ``retry``."""

    def __init__(self, retry: RetryPolicy) -> None:
        self.retry = retry

    def lookup_contact_id(
        self, param: str, value: str, contact_type: str | None = None
    ) -> FlowPlan[str | None]:
        """``lookup_contact_id`` by one parameter name (``email``, ``mobile_phone``, ``custom_key``, ``any``…)."""
        found: str | None = yield from _call(
            "lookup_contact_id", **{param: value}, contact_type=contact_type, retry=self.retry
        )
        return found

    def get_promotion_state(self, contact_id: str, assignment_id: str) -> FlowPlan[ApiPromotion | None]:
        state: ApiPromotion | None = yield from _call(
            "get_promotion_state", contact_id, assignment_id, retry=self.retry
        )
        return state

    def list_promotions(self, contact_id: str, channel: str) -> FlowPlan[list[ApiPromotion]]:
        found: list[ApiPromotion] = yield from _call("list_promotions", contact_id, channel, retry=self.retry)
        return found

    def redeem(self, assignment_id: str, channel: str, contact_id: str | None, *, redeemed_on: datetime,
               store_external_id: str | None, unique_receipt_id: str | None, idempotency_key: str | None,
               outcome: CallOutcome) -> FlowPlan[ApiPromotion | None]:  # fmt: skip
        redeemed: ApiPromotion | None = yield from _call(
            "redeem",
            assignment_id,
            channel,
            contact_id,
            redeemed_on=redeemed_on,
            store_external_id=store_external_id,
            unique_receipt_id=unique_receipt_id,
            idempotency_key=idempotency_key,
            retry=self.retry,
            outcome=outcome,
        )
        return redeemed

    def create_contact(self, attributes: Mapping[str, Any], *, contact_type: str | None,
                       preferences: Mapping[str, Any] | None, idempotency_key: str,
                       outcome: CallOutcome) -> FlowPlan[ContactOut]:  # fmt: skip
        contact: ContactOut = yield from _call(
            "create_contact",
            attributes,
            contact_type,
            preferences,
            idempotency_key=idempotency_key,
            retry=self.retry,
            outcome=outcome,
        )
        return contact

    def update_contact(self, contact_id: str, changes: Mapping[str, Any], *, idempotency_key: str,
                       outcome: CallOutcome) -> FlowPlan[ContactOut]:  # fmt: skip
        contact: ContactOut = yield from _call(
            "update_contact", contact_id, changes, idempotency_key=idempotency_key, retry=self.retry,
            outcome=outcome,
        )  # fmt: skip
        return contact

    def send_receipt(self, receipt: Receipt, idempotency_key: str | None,
                     outcome: CallOutcome) -> FlowPlan[ReceiptResult]:  # fmt: skip
        result: ReceiptResult = yield from _call(
            "send_receipt", receipt, idempotency_key, retry=self.retry, outcome=outcome
        )
        return result

    def count_contacts(self) -> FlowPlan[int]:
        count: int = yield from _call("count_contacts", retry=self.retry)
        return count
