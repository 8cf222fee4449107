"""``EngageClient`` and ``AsyncEngageClient``: the Engage API over httpx.

The two differ only in how they run a plan (:mod:`promoflow.client._engine`): blocking calls or awaits.
Paths, bodies, retries, idempotency keys and parsing come from :mod:`promoflow.client._requests`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

from promoflow import __version__
from promoflow.client._engine import CallOutcome, Plan, Send, Sleep, cap_timeout
from promoflow.client._exceptions import TransportError, transport_error_from_httpx
from promoflow.client._requests import ApiVersion, Operations, RedeemPath
from promoflow.client._retry import RetryPolicy
from promoflow.wire.engage import ApiPromotion, ContactOut, Receipt, ReceiptResult

T = TypeVar("T")

AuthHeader = Literal["apikey", "bearer"]

DEFAULT_USER_AGENT = f"promoflow-sdk/{__version__}"
DEFAULT_TIMEOUT = 15.0
"""Seconds per phase (connect, write, read, pool). Engage asks for patience: late answers are mostly load."""


class _ClientConfig:
    """Configuration and request building shared by both clients."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        user_agent: str | None,
        api_version: ApiVersion,
        auth_header: AuthHeader,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if auth_header not in ("apikey", "bearer"):
            raise ValueError("auth_header must be 'apikey' or 'bearer'")
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else RetryPolicy()
        self.ops = Operations(api_version=api_version, retry=self.retry)
        self.api_version = api_version
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        # Engage requires User-Agent and Content-Type on every call (a missing Content-Type is a 500 there).
        self.headers = {
            "User-Agent": user_agent or DEFAULT_USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if auth_header == "bearer":
            self.headers["Authorization"] = f"Bearer {api_key}"
        else:
            self.headers["apikey"] = api_key

    def build_request(self, http: httpx.Client | httpx.AsyncClient, action: Send) -> httpx.Request:
        spec = action.spec
        return http.build_request(
            spec.method,
            spec.path,
            params=list(spec.params) if spec.params else None,
            content=spec.body,
            headers=spec.request_headers(),
            timeout=cap_timeout(self.timeout, action.time_left),
        )


class EngageClient:
    """Blocking client for the Engage API (promoflow or Voyado Engage).

    ``api_version`` (2 or 3) selects the v2 or v3 paths of look-up, contacts, promotions, redeem, assign and
    receipts. ``auth_header="bearer"`` sends ``Authorization: Bearer <key>`` instead of the ``apikey`` header.
    ``retry`` governs every call (default :class:`RetryPolicy`; see ``RetryPolicy.interactive()`` for checkout
    and ``RetryPolicy.background()`` for sync jobs). ``transport`` plugs in any httpx transport (tests,
    proxies). Every method accepts ``outcome=CallOutcome()`` to learn attempts, replay and how it settled.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        user_agent: str | None = None,
        api_version: ApiVersion = 2,
        auth_header: AuthHeader = "apikey",
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._config = _ClientConfig(
            base_url,
            api_key,
            user_agent=user_agent,
            api_version=api_version,
            auth_header=auth_header,
            timeout=timeout,
            retry=retry,
        )
        self._ops = self._config.ops
        self._http = httpx.Client(
            base_url=self._config.base_url,
            headers=self._config.headers,
            timeout=self._config.timeout,
            transport=transport,
            follow_redirects=False,
        )

    @property
    def retry(self) -> RetryPolicy:
        return self._config.retry

    @property
    def api_version(self) -> ApiVersion:
        return self._config.api_version

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, plan: Plan[T]) -> T:
        reply: httpx.Response | TransportError | None = None
        try:
            while True:
                try:
                    action = plan.send(reply)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                if isinstance(action, Sleep):
                    self._config.retry.sleep(action.seconds)
                    reply = None
                else:
                    reply = self._send(action)
        finally:
            plan.close()

    def _send(self, action: Send) -> httpx.Response | TransportError:
        request = self._config.build_request(self._http, action)
        try:
            try:
                return self._http.send(request)
            except httpx.TransportError as exc:
                raise transport_error_from_httpx(exc) from exc
        except TransportError as error:
            # Handed to the plan, which decides whether to retry or to raise it (cause kept).
            return error

    # -------------------------------------------------------------------------------------------- contacts

    def lookup_contact_id(
        self,
        *,
        email: str | None = None,
        mobile_phone: str | None = None,
        social_security_number: str | None = None,
        custom_key: str | None = None,
        any: str | None = None,
        contact_type: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> str | None:
        """The contact's GUID for a key (``GET …/contacts/id``), or None when no contact matches (404)."""
        return self._run(
            self._ops.lookup_contact_id(
                email=email,
                mobile_phone=mobile_phone,
                social_security_number=social_security_number,
                custom_key=custom_key,
                any=any,
                contact_type=contact_type,
                outcome=outcome,
            )
        )

    def get_contact(self, contact_id: str, *, outcome: CallOutcome | None = None) -> ContactOut:
        """``GET …/contacts/{id}``."""
        return self._run(self._ops.get_contact(contact_id, outcome=outcome))

    def create_contact(
        self,
        attributes: Mapping[str, Any],
        contact_type: str | None = None,
        preferences: Mapping[str, Any] | None = None,
        source: str | None = None,
        store_external_id: str | None = None,
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """``POST …/contacts``; an existing key gives the existing contact (``source``/``storeExternalId`` are
        headers on v2 and query parameters on v3)."""
        return self._run(
            self._ops.create_contact(
                attributes,
                contact_type=contact_type,
                preferences=preferences,
                source=source,
                store_external_id=store_external_id,
                idempotency_key=idempotency_key,
                outcome=outcome,
            )
        )

    def update_contact(
        self,
        contact_id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """Partial update: v2 ``POST /api/v2/contacts/{id}``, v3 ``PATCH /api/v3/contacts/{id}``."""
        return self._run(
            self._ops.update_contact(contact_id, changes, idempotency_key=idempotency_key, outcome=outcome)
        )

    def count_contacts(self, *, outcome: CallOutcome | None = None) -> int:
        """``GET /api/v2/contacts/count`` (a cheap check that the key works)."""
        return self._run(self._ops.count_contacts(outcome=outcome))

    # ------------------------------------------------------------------------------------------ promotions

    def list_promotions(
        self, contact_id: str, channel: str | None = None, *, outcome: CallOutcome | None = None
    ) -> list[ApiPromotion]:
        """The contact's redeemable assignments, or only those valid in ``channel`` (POS/ECOM/OTHER)."""
        return self._run(self._ops.list_promotions(contact_id, channel, outcome=outcome))

    def get_promotion_state(
        self, contact_id: str, assignment_id: str, *, outcome: CallOutcome | None = None
    ) -> ApiPromotion | None:
        """One assignment of the contact, redeemed or not, or None if the server does not list it.

        Uses promoflow's ``includeRedeemed=true``; real Engage omits redeemed (and expired) assignments.
        """
        return self._run(self._ops.get_promotion_state(contact_id, assignment_id, outcome=outcome))

    def redeem(
        self,
        assignment_id: str,
        channel: str,
        contact_id: str | None = None,
        *,
        path: RedeemPath = "auto",
        redeemed_on: datetime | None = None,
        store_external_id: str | None = None,
        unique_receipt_id: str | None = None,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion | None:
        """Redeem an assignment (returns the redeemed item, or None if the server's body carries none).

        ``path="auto"`` picks v3 on api_version 3, else the v2 contact-scoped path when ``contact_id`` is
        given, else ``/api/v2/promotions/codes/{id}/redeem``. Every attempt carries the same
        ``Idempotency-Key``. Success also covers an earlier uncertain attempt of ours having been applied
        (see :class:`CallOutcome` ``settled_by``); read-before-retry needs ``contact_id``.
        """
        return self._run(
            self._ops.redeem(
                assignment_id,
                channel,
                contact_id,
                path=path,
                redeemed_on=redeemed_on,
                store_external_id=store_external_id,
                unique_receipt_id=unique_receipt_id,
                idempotency_key=idempotency_key,
                outcome=outcome,
            )
        )

    def assign(
        self,
        contact_id: str,
        promotion_id: str,
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion:
        """Assign a promotion (template id) to a contact; returns the new assignment."""
        return self._run(
            self._ops.assign(contact_id, promotion_id, idempotency_key=idempotency_key, outcome=outcome)
        )

    # -------------------------------------------------------------------------------------------- receipts

    def send_receipt(
        self, receipt: Receipt, idempotency_key: str | None = None, *, outcome: CallOutcome | None = None
    ) -> ReceiptResult:
        """``POST …/receipts``; status ``Created``, ``Duplicate`` or ``PendingContactMatch``."""
        return self._run(self._ops.send_receipt(receipt, idempotency_key=idempotency_key, outcome=outcome))


class AsyncEngageClient:
    """The async twin of :class:`EngageClient`: same constructor, same methods (awaitable), same behaviour.

    Use as an async context manager, or await :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        user_agent: str | None = None,
        api_version: ApiVersion = 2,
        auth_header: AuthHeader = "apikey",
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = _ClientConfig(
            base_url,
            api_key,
            user_agent=user_agent,
            api_version=api_version,
            auth_header=auth_header,
            timeout=timeout,
            retry=retry,
        )
        self._ops = self._config.ops
        self._http = httpx.AsyncClient(
            base_url=self._config.base_url,
            headers=self._config.headers,
            timeout=self._config.timeout,
            transport=transport,
            follow_redirects=False,
        )

    @property
    def retry(self) -> RetryPolicy:
        return self._config.retry

    @property
    def api_version(self) -> ApiVersion:
        return self._config.api_version

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, plan: Plan[T]) -> T:
        reply: httpx.Response | TransportError | None = None
        try:
            while True:
                try:
                    action = plan.send(reply)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                if isinstance(action, Sleep):
                    await self._config.retry.async_sleep(action.seconds)
                    reply = None
                else:
                    reply = await self._send(action)
        finally:
            plan.close()

    async def _send(self, action: Send) -> httpx.Response | TransportError:
        request = self._config.build_request(self._http, action)
        try:
            try:
                return await self._http.send(request)
            except httpx.TransportError as exc:
                raise transport_error_from_httpx(exc) from exc
        except TransportError as error:
            return error

    async def lookup_contact_id(
        self,
        *,
        email: str | None = None,
        mobile_phone: str | None = None,
        social_security_number: str | None = None,
        custom_key: str | None = None,
        any: str | None = None,
        contact_type: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> str | None:
        """See :meth:`EngageClient.lookup_contact_id`."""
        return await self._run(
            self._ops.lookup_contact_id(
                email=email,
                mobile_phone=mobile_phone,
                social_security_number=social_security_number,
                custom_key=custom_key,
                any=any,
                contact_type=contact_type,
                outcome=outcome,
            )
        )

    async def get_contact(self, contact_id: str, *, outcome: CallOutcome | None = None) -> ContactOut:
        """See :meth:`EngageClient.get_contact`."""
        return await self._run(self._ops.get_contact(contact_id, outcome=outcome))

    async def create_contact(
        self,
        attributes: Mapping[str, Any],
        contact_type: str | None = None,
        preferences: Mapping[str, Any] | None = None,
        source: str | None = None,
        store_external_id: str | None = None,
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """See :meth:`EngageClient.create_contact`."""
        return await self._run(
            self._ops.create_contact(
                attributes,
                contact_type=contact_type,
                preferences=preferences,
                source=source,
                store_external_id=store_external_id,
                idempotency_key=idempotency_key,
                outcome=outcome,
            )
        )

    async def update_contact(
        self,
        contact_id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """See :meth:`EngageClient.update_contact`."""
        return await self._run(
            self._ops.update_contact(contact_id, changes, idempotency_key=idempotency_key, outcome=outcome)
        )

    async def count_contacts(self, *, outcome: CallOutcome | None = None) -> int:
        """See :meth:`EngageClient.count_contacts`."""
        return await self._run(self._ops.count_contacts(outcome=outcome))

    async def list_promotions(
        self, contact_id: str, channel: str | None = None, *, outcome: CallOutcome | None = None
    ) -> list[ApiPromotion]:
        """See :meth:`EngageClient.list_promotions`."""
        return await self._run(self._ops.list_promotions(contact_id, channel, outcome=outcome))

    async def get_promotion_state(
        self, contact_id: str, assignment_id: str, *, outcome: CallOutcome | None = None
    ) -> ApiPromotion | None:
        """See :meth:`EngageClient.get_promotion_state`."""
        return await self._run(self._ops.get_promotion_state(contact_id, assignment_id, outcome=outcome))

    async def redeem(
        self,
        assignment_id: str,
        channel: str,
        contact_id: str | None = None,
        *,
        path: RedeemPath = "auto",
        redeemed_on: datetime | None = None,
        store_external_id: str | None = None,
        unique_receipt_id: str | None = None,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion | None:
        """See :meth:`EngageClient.redeem`."""
        return await self._run(
            self._ops.redeem(
                assignment_id,
                channel,
                contact_id,
                path=path,
                redeemed_on=redeemed_on,
                store_external_id=store_external_id,
                unique_receipt_id=unique_receipt_id,
                idempotency_key=idempotency_key,
                outcome=outcome,
            )
        )

    async def assign(
        self,
        contact_id: str,
        promotion_id: str,
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion:
        """See :meth:`EngageClient.assign`."""
        return await self._run(
            self._ops.assign(contact_id, promotion_id, idempotency_key=idempotency_key, outcome=outcome)
        )

    async def send_receipt(
        self, receipt: Receipt, idempotency_key: str | None = None, *, outcome: CallOutcome | None = None
    ) -> ReceiptResult:
        """See :meth:`EngageClient.send_receipt`."""
        return await self._run(
            self._ops.send_receipt(receipt, idempotency_key=idempotency_key, outcome=outcome)
        )
