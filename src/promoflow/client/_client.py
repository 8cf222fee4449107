"""``EngageClient`` and ``AsyncEngageClient``: the Engage API over httpx.

The two differ only in how they run a plan (:mod:`promoflow.client._engine`): blocking calls or awaits.
Paths, bodies, retries, idempotency keys and parsing come from :mod:`promoflow.client._requests`.

Every method takes ``retry=`` to run that one call under another :class:`RetryPolicy` than the client's (the
checkout flow and the sync agent call the client's public methods that way).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

from promoflow import __version__
from promoflow.client._engine import (
    Action,
    CallOutcome,
    Plan,
    Reply,
    Send,
    Sleep,
    cap_timeout,
    run_async,
    run_blocking,
)
from promoflow.client._exceptions import TransportError, transport_error_from_httpx
from promoflow.client._requests import ApiVersion, Operations, RedeemPath
from promoflow.client._retry import RetryPolicy
from promoflow.wire.engage import ApiPromotion, ContactOut, Receipt, ReceiptResult

T = TypeVar("T")

AuthHeader = Literal["apikey", "bearer"]

_VERSION_SUFFIX = re.compile(r"/api/v([23])$", re.IGNORECASE)

DEFAULT_USER_AGENT = f"promoflow-sdk/{__version__}"
DEFAULT_TIMEOUT = 15.0
"""Seconds per phase (connect, write, read, pool). Engage asks for patience: late answers are mostly load."""


def split_base_url(base_url: str, api_version: ApiVersion | None) -> tuple[str, ApiVersion]:
    """The server's root URL and the API version, from a base URL that may end in ``/api/v2`` or ``/api/v3``.

    The SDK builds every path from the root (``/api/v2/contacts/…``), so a URL copied with its version suffix
    (``https://engage.example.com/api/v2``) is accepted: the suffix goes, and it names the version unless
    ``api_version`` says otherwise, which is a contradiction worth an error, not a guess.
    """
    url = base_url.strip().rstrip("/")
    if not url:
        raise ValueError("base_url must not be empty")
    match = _VERSION_SUFFIX.search(url)
    if match is None:
        return url, api_version if api_version is not None else 2
    named: ApiVersion = 3 if match.group(1) == "3" else 2
    if api_version is not None and api_version != named:
        raise ValueError(
            f"base_url ends in /api/v{named} but api_version={api_version}: give the server's root URL "
            f"({url[: match.start()] or '/'}) and the api_version you want"
        )
    return url[: match.start()], named


class _ClientConfig:
    """Configuration and request building shared by both clients."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        user_agent: str | None,
        api_version: ApiVersion | None,
        auth_header: AuthHeader,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if auth_header not in ("apikey", "bearer"):
            raise ValueError("auth_header must be 'apikey' or 'bearer'")
        self.base_url, api_version = split_base_url(base_url, api_version)
        self.retry = retry if retry is not None else RetryPolicy()
        self.ops = Operations(api_version=api_version, retry=self.retry)
        self.api_version: ApiVersion = api_version
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

    def ops_for(self, retry: RetryPolicy | None) -> Operations:
        """The operations under ``retry`` (one call's override), else the client's own policy."""
        if retry is None or retry is self.retry:
            return self.ops
        return Operations(api_version=self.api_version, retry=retry)

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

    ``base_url`` is the server's root (``https://engage.example.com``); a URL ending in ``/api/v2`` or
    ``/api/v3`` is accepted too and selects that version. ``api_version`` (2 or 3; default 2, or the URL's)
    selects the v2 or v3 paths of look-up, contacts, promotions, redeem, assign and receipts.
    ``auth_header="bearer"`` sends ``Authorization: Bearer <key>`` instead of the ``apikey`` header.
    ``retry`` governs every call (default :class:`RetryPolicy`; see ``RetryPolicy.interactive()`` for checkout
    and ``RetryPolicy.background()`` for sync jobs); each method's ``retry=`` overrides it for that call.
    ``transport`` plugs in any httpx transport (tests, proxies). Every method accepts ``outcome=CallOutcome()``
    to learn attempts, replay and how it settled.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        user_agent: str | None = None,
        api_version: ApiVersion | None = None,
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
        self._http = httpx.Client(
            base_url=self._config.base_url,
            headers=self._config.headers,
            timeout=self._config.timeout,
            transport=transport,
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        """The server's root URL (without an ``/api/vN`` suffix)."""
        return self._config.base_url

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

    def _run(self, plan: Plan[T], retry: RetryPolicy | None) -> T:
        sleep = (retry or self._config.retry).sleep

        def perform(action: Action) -> Reply:
            if isinstance(action, Sleep):
                sleep(action.seconds)
                return None
            return self._send(action)

        return run_blocking(plan, perform)

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
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> str | None:
        """The contact's GUID for a key (``GET …/contacts/id``), or None when no contact matches (404)."""
        plan = self._config.ops_for(retry).lookup_contact_id(
            email=email,
            mobile_phone=mobile_phone,
            social_security_number=social_security_number,
            custom_key=custom_key,
            any=any,
            contact_type=contact_type,
            outcome=outcome,
        )
        return self._run(plan, retry)

    def get_contact(
        self, contact_id: str, *, retry: RetryPolicy | None = None, outcome: CallOutcome | None = None
    ) -> ContactOut:
        """``GET …/contacts/{id}``."""
        return self._run(self._config.ops_for(retry).get_contact(contact_id, outcome=outcome), retry)

    def create_contact(
        self,
        attributes: Mapping[str, Any],
        contact_type: str | None = None,
        preferences: Mapping[str, Any] | None = None,
        source: str | None = None,
        store_external_id: str | None = None,
        *,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """``POST …/contacts``; an existing key gives the existing contact (``source``/``storeExternalId`` are
        headers on v2 and query parameters on v3)."""
        plan = self._config.ops_for(retry).create_contact(
            attributes,
            contact_type=contact_type,
            preferences=preferences,
            source=source,
            store_external_id=store_external_id,
            idempotency_key=idempotency_key,
            outcome=outcome,
        )
        return self._run(plan, retry)

    def update_contact(
        self,
        contact_id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """Partial update: v2 ``POST /api/v2/contacts/{id}``, v3 ``PATCH /api/v3/contacts/{id}``."""
        plan = self._config.ops_for(retry).update_contact(
            contact_id, changes, idempotency_key=idempotency_key, outcome=outcome
        )
        return self._run(plan, retry)

    def count_contacts(self, *, retry: RetryPolicy | None = None, outcome: CallOutcome | None = None) -> int:
        """``GET /api/v2/contacts/count`` (a cheap check that the key works)."""
        return self._run(self._config.ops_for(retry).count_contacts(outcome=outcome), retry)

    # ------------------------------------------------------------------------------------------ promotions

    def list_promotions(
        self,
        contact_id: str,
        channel: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> list[ApiPromotion]:
        """The contact's redeemable assignments, or only those valid in ``channel`` (POS/ECOM/OTHER)."""
        return self._run(
            self._config.ops_for(retry).list_promotions(contact_id, channel, outcome=outcome), retry
        )

    def get_promotion_state(
        self,
        contact_id: str,
        assignment_id: str,
        *,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion | None:
        """One assignment of the contact, redeemed or not, or None if the server does not list it.

        Uses promoflow's ``includeRedeemed=true``; real Engage omits redeemed (and expired) assignments.
        """
        plan = self._config.ops_for(retry).get_promotion_state(contact_id, assignment_id, outcome=outcome)
        return self._run(plan, retry)

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
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion | None:
        """Redeem an assignment (returns the redeemed item, or None if the server's body carries none).

        ``path="auto"`` picks v3 on api_version 3, else the v2 contact-scoped path when ``contact_id`` is
        given, else ``/api/v2/promotions/codes/{id}/redeem``. Every attempt carries the same
        ``Idempotency-Key``. Success also covers an earlier uncertain attempt of ours having been applied
        (see :class:`CallOutcome` ``settled_by``); read-before-retry needs ``contact_id``.
        """
        plan = self._config.ops_for(retry).redeem(
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
        return self._run(plan, retry)

    def assign(
        self,
        contact_id: str,
        promotion_id: str,
        *,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion:
        """Assign a promotion (template id) to a contact; returns the new assignment."""
        plan = self._config.ops_for(retry).assign(
            contact_id, promotion_id, idempotency_key=idempotency_key, outcome=outcome
        )
        return self._run(plan, retry)

    # -------------------------------------------------------------------------------------------- receipts

    def send_receipt(
        self,
        receipt: Receipt,
        idempotency_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ReceiptResult:
        """``POST …/receipts``; status ``Created``, ``Duplicate`` or ``PendingContactMatch``."""
        plan = self._config.ops_for(retry).send_receipt(
            receipt, idempotency_key=idempotency_key, outcome=outcome
        )
        return self._run(plan, retry)


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
        api_version: ApiVersion | None = None,
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
        self._http = httpx.AsyncClient(
            base_url=self._config.base_url,
            headers=self._config.headers,
            timeout=self._config.timeout,
            transport=transport,
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        """The server's root URL (without an ``/api/vN`` suffix)."""
        return self._config.base_url

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

    async def _run(self, plan: Plan[T], retry: RetryPolicy | None) -> T:
        sleep = (retry or self._config.retry).async_sleep

        async def perform(action: Action) -> Reply:
            if isinstance(action, Sleep):
                await sleep(action.seconds)
                return None
            return await self._send(action)

        return await run_async(plan, perform)

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
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> str | None:
        """See :meth:`EngageClient.lookup_contact_id`."""
        plan = self._config.ops_for(retry).lookup_contact_id(
            email=email,
            mobile_phone=mobile_phone,
            social_security_number=social_security_number,
            custom_key=custom_key,
            any=any,
            contact_type=contact_type,
            outcome=outcome,
        )
        return await self._run(plan, retry)

    async def get_contact(
        self, contact_id: str, *, retry: RetryPolicy | None = None, outcome: CallOutcome | None = None
    ) -> ContactOut:
        """See :meth:`EngageClient.get_contact`."""
        return await self._run(self._config.ops_for(retry).get_contact(contact_id, outcome=outcome), retry)

    async def create_contact(
        self,
        attributes: Mapping[str, Any],
        contact_type: str | None = None,
        preferences: Mapping[str, Any] | None = None,
        source: str | None = None,
        store_external_id: str | None = None,
        *,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """See :meth:`EngageClient.create_contact`."""
        plan = self._config.ops_for(retry).create_contact(
            attributes,
            contact_type=contact_type,
            preferences=preferences,
            source=source,
            store_external_id=store_external_id,
            idempotency_key=idempotency_key,
            outcome=outcome,
        )
        return await self._run(plan, retry)

    async def update_contact(
        self,
        contact_id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ContactOut:
        """See :meth:`EngageClient.update_contact`."""
        plan = self._config.ops_for(retry).update_contact(
            contact_id, changes, idempotency_key=idempotency_key, outcome=outcome
        )
        return await self._run(plan, retry)

    async def count_contacts(
        self, *, retry: RetryPolicy | None = None, outcome: CallOutcome | None = None
    ) -> int:
        """See :meth:`EngageClient.count_contacts`."""
        return await self._run(self._config.ops_for(retry).count_contacts(outcome=outcome), retry)

    async def list_promotions(
        self,
        contact_id: str,
        channel: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> list[ApiPromotion]:
        """See :meth:`EngageClient.list_promotions`."""
        plan = self._config.ops_for(retry).list_promotions(contact_id, channel, outcome=outcome)
        return await self._run(plan, retry)

    async def get_promotion_state(
        self,
        contact_id: str,
        assignment_id: str,
        *,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion | None:
        """See :meth:`EngageClient.get_promotion_state`."""
        plan = self._config.ops_for(retry).get_promotion_state(contact_id, assignment_id, outcome=outcome)
        return await self._run(plan, retry)

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
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion | None:
        """See :meth:`EngageClient.redeem`."""
        plan = self._config.ops_for(retry).redeem(
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
        return await self._run(plan, retry)

    async def assign(
        self,
        contact_id: str,
        promotion_id: str,
        *,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ApiPromotion:
        """See :meth:`EngageClient.assign`."""
        plan = self._config.ops_for(retry).assign(
            contact_id, promotion_id, idempotency_key=idempotency_key, outcome=outcome
        )
        return await self._run(plan, retry)

    async def send_receipt(
        self,
        receipt: Receipt,
        idempotency_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        outcome: CallOutcome | None = None,
    ) -> ReceiptResult:
        """See :meth:`EngageClient.send_receipt`."""
        plan = self._config.ops_for(retry).send_receipt(
            receipt, idempotency_key=idempotency_key, outcome=outcome
        )
        return await self._run(plan, retry)
