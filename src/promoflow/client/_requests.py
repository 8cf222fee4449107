"""The Engage endpoints as plans: which path for which API version, what body, how to read the answer.

Shared by the sync and the async client (see :mod:`promoflow.client._engine`). Nothing here does I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from promoflow.client._engine import (
    CallOutcome,
    Plan,
    RequestSpec,
    Settled,
    StateReader,
    execute,
    execute_once,
)
from promoflow.client._exceptions import (
    AlreadyRedeemedError,
    InvalidResponseError,
    NotFoundError,
    PromoflowClientError,
)
from promoflow.client._retry import RetryPolicy
from promoflow.kit.guid import parse_guid
from promoflow.wire.engage import ApiPromotion, ContactOut, Receipt, ReceiptResult, RedeemBody
from promoflow.wire.errors import ErrorCode

M = TypeVar("M", bound=BaseModel)

ApiVersion = Literal[2, 3]
RedeemPath = Literal["auto", "v2-contact", "v2-code", "v3"]


def _segment(value: str) -> str:
    """A path segment: ids are quoted so that one can never change the path's shape."""
    text = str(value).strip()
    if not text:
        raise ValueError("an id must not be empty")
    return quote(text, safe="")


def channel_name(channel: str) -> str:
    """``POS``/``ECOM``/``OTHER`` (any case in, upper case out; ChannelType members are str too)."""
    text = str(channel).strip().upper()
    if not text:
        raise ValueError("channel must not be empty")
    return text


def _idempotency_key(given: str | None) -> str:
    if given is None:
        return str(uuid.uuid4())
    if not 1 <= len(given) <= 255:
        raise ValueError("an Idempotency-Key must be 1 to 255 characters")
    return given


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _wire(model: BaseModel) -> dict[str, Any]:
    # Optional fields left out entirely: Engage rejects or misreads explicit nulls on some endpoints.
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _body(reply: httpx.Response) -> Any:
    """The JSON body, None for an empty one; InvalidResponseError for anything that is not JSON."""
    if not reply.content.strip():
        return None
    try:
        return reply.json()
    except ValueError as exc:
        raise InvalidResponseError(
            f"expected JSON from {reply.request.method} {reply.request.url.path}",
            status=reply.status_code,
            body=reply.text[:2000],
        ) from exc


def _model(reply: httpx.Response, model: type[M], data: Any = None) -> M:
    data = _body(reply) if data is None else data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidResponseError(
            f"unexpected {model.__name__} body: {exc.errors()[:3]}",
            status=reply.status_code,
            body=reply.text[:2000],
        ) from exc


def _items(data: Any) -> list[Any] | None:
    """A bare array, or the ``items`` of a paged envelope (v3's list shape is undocumented)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        items = data.get("items", data.get("Items"))
        if isinstance(items, list):
            return items
    return None


def _guid_text(value: str) -> str:
    parsed = parse_guid(value)
    return str(parsed) if parsed is not None else value.strip()


def _same_id(a: str | None, b: str) -> bool:
    return a is not None and _guid_text(a).lower() == _guid_text(b).lower()


class Operations:
    """Plans for every Engage call the SDK offers; one instance per client, immutable."""

    def __init__(self, *, api_version: ApiVersion, retry: RetryPolicy) -> None:
        if api_version not in (2, 3):
            raise ValueError("api_version must be 2 or 3")
        self.api_version: ApiVersion = api_version
        self.retry = retry

    @property
    def _v(self) -> str:
        return f"/api/v{self.api_version}"

    def _send(self, spec: RequestSpec, outcome: CallOutcome | None) -> Plan[httpx.Response]:
        result = yield from execute(spec, self.retry, outcome if outcome is not None else CallOutcome())
        assert isinstance(result, httpx.Response)  # no settling hooks were given
        return result

    def _change(
        self,
        operation: str,
        method: str,
        path: str,
        body: Any,
        idempotency_key: str | None,
        *,
        params: tuple[tuple[str, str], ...] = (),
        headers: tuple[tuple[str, str], ...] = (),
    ) -> RequestSpec:
        return RequestSpec(
            operation=operation,
            method=method,
            path=path,
            params=params,
            headers=headers,
            body=None if body is None else _json_bytes(body),
            idempotency_key=_idempotency_key(idempotency_key),
        )

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
    ) -> Plan[str | None]:
        keys = {
            "email": email,
            "mobilePhone": mobile_phone,
            "socialSecurityNumber": social_security_number,
            "customKey": custom_key,
            "any": any,
        }
        params = [(name, value) for name, value in keys.items() if value is not None]
        if not params:
            raise ValueError(
                "give at least one of email, mobile_phone, social_security_number, custom_key, any"
            )
        if contact_type is not None:
            params.append(("contactType", contact_type))
        spec = RequestSpec("lookup_contact_id", "GET", f"{self._v}/contacts/id", params=tuple(params))
        try:
            reply = yield from self._send(spec, outcome)
        except NotFoundError as exc:
            # "No such contact" is ContactNotFound, or a bare 404 without a body. A 404 with some other body
            # (an unknown route, a wrong base URL) must not read as "no contact": the caller would create one.
            if exc.error_code == ErrorCode.CONTACT_NOT_FOUND or exc.body is None:
                return None
            raise
        data = _body(reply)
        if isinstance(data, dict):
            data = data.get("id", data.get("contactId"))
        if not isinstance(data, str) or not data.strip():
            raise InvalidResponseError(
                "expected the contact id as a JSON string", status=reply.status_code, body=reply.text[:2000]
            )
        return _guid_text(data)

    def get_contact(self, contact_id: str, *, outcome: CallOutcome | None = None) -> Plan[ContactOut]:
        spec = RequestSpec("get_contact", "GET", f"{self._v}/contacts/{_segment(contact_id)}")
        reply = yield from self._send(spec, outcome)
        return _model(reply, ContactOut)

    def create_contact(
        self,
        attributes: Mapping[str, Any],
        *,
        contact_type: str | None = None,
        preferences: Mapping[str, Any] | None = None,
        source: str | None = None,
        store_external_id: str | None = None,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> Plan[ContactOut]:
        body: dict[str, Any] = dict(attributes)
        if contact_type is not None:
            body["contactType"] = contact_type
        if preferences is not None:
            body["preferences"] = dict(preferences)
        extras = tuple(
            (name, value)
            for name, value in (("source", source), ("storeExternalId", store_external_id))
            if value is not None
        )
        # Engage v2 reads these as headers and v3 as query parameters (and ignores the other place).
        spec = self._change(
            "create_contact",
            "POST",
            f"{self._v}/contacts",
            body,
            idempotency_key,
            params=extras if self.api_version == 3 else (),
            headers=extras if self.api_version == 2 else (),
        )
        reply = yield from self._send(spec, outcome)
        return (yield from self._contact_from(reply))

    def update_contact(
        self,
        contact_id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> Plan[ContactOut]:
        path = f"{self._v}/contacts/{_segment(contact_id)}"
        method = "PATCH" if self.api_version == 3 else "POST"
        spec = self._change("update_contact", method, path, dict(changes), idempotency_key)
        reply = yield from self._send(spec, outcome)
        return (yield from self._contact_from(reply, contact_id))

    def _contact_from(self, reply: httpx.Response, contact_id: str | None = None) -> Plan[ContactOut]:
        data = _body(reply)
        if isinstance(data, dict):
            return _model(reply, ContactOut, data)
        # Engage v2 answers a create with just the GUID (of the first match when the key exists) and an
        # update possibly with nothing: fetch the contact so every caller gets the same shape.
        if isinstance(data, str) and data.strip():
            contact_id = data
        if contact_id is None:
            raise InvalidResponseError(
                "expected a contact or its id", status=reply.status_code, body=reply.text[:2000]
            )
        return (yield from self.get_contact(_guid_text(contact_id)))

    def count_contacts(self, *, outcome: CallOutcome | None = None) -> Plan[int]:
        # Only v2 documents this call; it is the smoke test Engage's auth page suggests.
        spec = RequestSpec("count_contacts", "GET", "/api/v2/contacts/count")
        reply = yield from self._send(spec, outcome)
        data = _body(reply)
        if isinstance(data, str) and data.strip().isdigit():
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            raise InvalidResponseError(
                "expected an integer", status=reply.status_code, body=reply.text[:2000]
            )
        return data

    # ------------------------------------------------------------------------------------------ promotions

    def _list_spec(self, operation: str, contact_id: str, params: list[tuple[str, str]]) -> RequestSpec:
        if self.api_version == 3:
            return RequestSpec(
                operation,
                "GET",
                "/api/v3/promotion-assignments",
                params=(("contactId", contact_id), *params),
            )
        return RequestSpec(
            operation, "GET", f"/api/v2/contacts/{_segment(contact_id)}/promotions", params=tuple(params)
        )

    @staticmethod
    def _promotions(reply: httpx.Response) -> list[ApiPromotion]:
        items = _items(_body(reply))
        if items is None:
            raise InvalidResponseError(
                "expected a list of promotions", status=reply.status_code, body=reply.text[:2000]
            )
        return [_model(reply, ApiPromotion, item) for item in items]

    def list_promotions(
        self, contact_id: str, channel: str | None = None, *, outcome: CallOutcome | None = None
    ) -> Plan[list[ApiPromotion]]:
        params = [] if channel is None else [("redemptionChannelType", channel_name(channel))]
        reply = yield from self._send(self._list_spec("list_promotions", contact_id, params), outcome)
        return self._promotions(reply)

    def _state_spec(self, contact_id: str) -> RequestSpec:
        # includeRedeemed is promoflow's extension; real Engage ignores it and omits redeemed items.
        return self._list_spec("get_promotion_state", contact_id, [("includeRedeemed", "true")])

    @staticmethod
    def _find(promotions: list[ApiPromotion], assignment_id: str) -> ApiPromotion | None:
        for promotion in promotions:
            if _same_id(promotion.id, assignment_id) or _same_id(promotion.assignment_id, assignment_id):
                return promotion
        return None

    def get_promotion_state(
        self, contact_id: str, assignment_id: str, *, outcome: CallOutcome | None = None
    ) -> Plan[ApiPromotion | None]:
        reply = yield from self._send(self._state_spec(contact_id), outcome)
        return self._find(self._promotions(reply), assignment_id)

    def _state_reader(self, contact_id: str, assignment_id: str) -> StateReader:
        def read(time_left: float | None) -> Plan[ApiPromotion | None]:
            # One attempt only: if the read fails too, the resend (and the 409 rule) settles it.
            try:
                reply = yield from execute_once(self._state_spec(contact_id), time_left)
                return self._find(self._promotions(reply), assignment_id)
            except PromoflowClientError:
                return None

        return read

    def _redeem_path(self, assignment_id: str, contact_id: str | None, path: RedeemPath) -> str:
        if path == "auto" and self.api_version == 3:
            path = "v3"
        elif path == "auto":
            path = "v2-contact" if contact_id is not None else "v2-code"
        if path == "v3":
            return f"/api/v3/promotion-assignments/{_segment(assignment_id)}/redeem"
        if path == "v2-code":
            return f"/api/v2/promotions/codes/{_segment(assignment_id)}/redeem"
        if path == "v2-contact":
            if contact_id is None:
                raise ValueError("the v2-contact redeem path needs contact_id")
            return f"/api/v2/contacts/{_segment(contact_id)}/promotions/{_segment(assignment_id)}/redeem"
        raise ValueError(f"unknown redeem path {path!r}")

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
    ) -> Plan[ApiPromotion | None]:
        if redeemed_on is not None and redeemed_on.tzinfo is None:
            raise ValueError("redeemed_on must be timezone-aware")
        body = RedeemBody(
            redemption_channel=channel_name(channel),
            redeemed_on=redeemed_on,
            store_external_id=store_external_id,
            unique_receipt_id=unique_receipt_id,
        )
        spec = self._change(
            "redeem", "POST", self._redeem_path(assignment_id, contact_id, path), _wire(body), idempotency_key
        )
        reader = None
        if self.retry.read_before_retry and contact_id is not None:
            reader = self._state_reader(contact_id, assignment_id)
        result = yield from execute(
            spec,
            self.retry,
            outcome if outcome is not None else CallOutcome(),
            settling_conflict=AlreadyRedeemedError,
            read_state=reader,
        )
        if isinstance(result, Settled):
            return result.state
        data = _body(result)
        if not isinstance(data, dict):
            return None  # Engage's success body is undocumented (often empty): success all the same.
        try:
            return ApiPromotion.model_validate(data)
        except ValidationError:
            # The redeem happened; an unfamiliar body must not turn that into an error.
            return None

    def assign(
        self,
        contact_id: str,
        promotion_id: str,
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> Plan[ApiPromotion]:
        if self.api_version == 3:
            spec = self._change(
                "assign",
                "POST",
                "/api/v3/promotion-assignments",
                {"contactId": contact_id, "promotionId": promotion_id},
                idempotency_key,
            )
        else:
            path = f"/api/v2/contacts/{_segment(contact_id)}/promotions/{_segment(promotion_id)}/assign"
            spec = self._change("assign", "POST", path, None, idempotency_key)
        # Without idempotency keys a resend after an uncertain failure could assign twice, and no read
        # can tell our assignment from an older one: then the caller decides.
        result = yield from execute(
            spec,
            self.retry,
            outcome if outcome is not None else CallOutcome(),
            on_uncertain="stop" if self.retry.read_before_retry else "retry",
        )
        assert isinstance(result, httpx.Response)
        return _model(result, ApiPromotion)

    # -------------------------------------------------------------------------------------------- receipts

    def send_receipt(
        self,
        receipt: Receipt,
        *,
        idempotency_key: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> Plan[ReceiptResult]:
        # Resending is safe even without keys: the server ignores a known uniqueReceiptId ("Duplicate").
        spec = self._change("send_receipt", "POST", f"{self._v}/receipts", _wire(receipt), idempotency_key)
        reply = yield from self._send(spec, outcome)
        data = _body(reply)
        if data is None:
            # Engage's success body is undocumented; an empty 2xx still means "taken".
            return ReceiptResult(unique_receipt_id=receipt.unique_receipt_id, status="Accepted")
        return _model(reply, ReceiptResult, data)
