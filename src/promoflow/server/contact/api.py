"""Contacts: `/api/v2/contacts…` and the v3 twins (A11, Part B §6)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Query
from starlette.responses import Response

from ...wire.engage import ContactOut, ContactOutV3
from ..exceptions import InvalidPayloadError, UnsupportedMediaTypeError
from ..http.edge import Edge, EdgeRoute, edge, fast_path
from ..http.openapi import errors
from . import quick
from .errors import (
    ContactKeyConflictError,
    ContactNotFoundError,
    InvalidAttributeValueError,
    InvalidContactIdError,
    InvalidContactTypeError,
    InvalidEmailAddressError,
    InvalidPhoneNumberError,
    InvalidSearchQueryError,
    InvalidSocialSecurityNumberError,
    MissingKeyAttributeError,
    MultipleMatchesError,
)
from .service import WARNINGS_HEADER, ContactService, attribute_warnings, warnings_header

router = APIRouter(tags=["contacts"], route_class=EdgeRoute)

_CREATE_EXAMPLE = {"firstName": "Ada", "email": "ada@example.com", "preferences": {"acceptsEmail": True}}


@router.get("/api/v2/contacts/count", response_model=int, responses=errors())
@router.get("/api/v3/contacts/count", response_model=int, responses=errors())
async def count_contacts(e: Edge = Depends(edge)) -> Response:
    """Number of contacts of the tenant (a bare integer)."""
    return await e.read(lambda conn, now: ContactService(e.ctx, now).count(conn))


_LOOKUP_ERRORS = errors(
    InvalidEmailAddressError, InvalidPhoneNumberError, InvalidSocialSecurityNumberError, InvalidContactTypeError,
          InvalidSearchQueryError,
    ContactNotFoundError,
    MultipleMatchesError,
)  # fmt: skip


@router.get("/api/v2/contacts/id", response_model=str, responses=_LOOKUP_ERRORS)
@router.get("/api/v3/contacts/id", response_model=str, responses=_LOOKUP_ERRORS)
@fast_path(quick.lookup())
async def lookup_contact_id(
    e: Edge = Depends(edge),
    email: str | None = Query(None),
    mobile_phone: str | None = Query(None, alias="mobilePhone"),
    social_security_number: str | None = Query(None, alias="socialSecurityNumber"),
    custom_key: str | None = Query(None, alias="customKey"),
    any_: str | None = Query(None, alias="any"),
    contact_type: str | None = Query(None, alias="contactType"),
) -> Response:
    """The contact id (GUID, as a JSON string) of the one contact a key names."""
    params = {
        "email": email,
        "mobilePhone": mobile_phone,
        "socialSecurityNumber": social_security_number,
        "customKey": custom_key,
        "any": any_,
        "contactType": contact_type,
    }
    return await e.read(lambda conn, now: ContactService(e.ctx, now).lookup(conn, params))


def engage_v2(contact: dict[str, Any]) -> dict[str, Any]:
    """The v2 answer is Engage's `IApiContact` (`{id, attributes, meta, preferences, consents}`, the type in
    `meta.contactType`): Engage clients parse it strictly, and the published one rejects any other field. v3
    answers carry A11's top-level `contactType` as well."""
    contact.pop("contactType", None)
    return contact


async def _create(
    e: Edge, body: dict[str, Any], source: str | None, store: str | None, unapproved: str | None, *, v3: bool
) -> Response:
    approved = (unapproved or "false").strip().lower() != "true"
    warnings = attribute_warnings(body)

    async def work(conn: Any, now: Any) -> dict[str, Any]:
        out, created = await ContactService(e.ctx, now).create(
            conn, body, source=source, store_external_id=store, approved=approved
        )
        out["_created"] = created
        return _shaped(out, warnings, v3=v3)

    def status(result: dict[str, Any]) -> int:
        return 201 if result.pop("_created") else 200

    return _warned(await e.write(work, status), warnings)


def _shaped(contact: dict[str, Any], warnings: list[str], *, v3: bool) -> dict[str, Any]:
    if not v3:
        return engage_v2(contact)
    if warnings:
        contact["warnings"] = warnings
    return contact


def _warned(response: Response, warnings: list[str]) -> Response:
    if warnings:
        response.headers[WARNINGS_HEADER] = warnings_header(warnings)
    return response


_WARNINGS = {
    WARNINGS_HEADER: {
        "description": "Extension: what the body carried that was not stored (unknown attribute names), as a "
        "JSON array of strings; absent when there is nothing to say. v3 answers carry the same list as "
        "`warnings`.",
        "schema": {"type": "string"},
    }
}


_CREATE_ERRORS = errors(
    InvalidPayloadError, InvalidEmailAddressError, InvalidPhoneNumberError, InvalidSocialSecurityNumberError,
          InvalidContactTypeError, MissingKeyAttributeError, InvalidAttributeValueError,
    ContactKeyConflictError,
    UnsupportedMediaTypeError,
)  # fmt: skip
_CREATE_ERRORS[200] = {
    "model": ContactOut,
    "description": "A contact with that key existed: it, unchanged.",
    "headers": _WARNINGS,
}
_CREATE_ERRORS[201] = {"description": "Created.", "headers": _WARNINGS}
_CREATE_ERRORS_V3 = {**_CREATE_ERRORS, 200: {**_CREATE_ERRORS[200], "model": ContactOutV3}}


@router.post("/api/v2/contacts", status_code=201, response_model=ContactOut, responses=_CREATE_ERRORS)
@fast_path(quick.create(v3=False))
async def create_contact_v2(
    e: Edge = Depends(edge),
    body: dict[str, Any] = Body(..., examples=[_CREATE_EXAMPLE]),
    source: str | None = Header(None),
    store_external_id: str | None = Header(None, alias="storeExternalId"),
    create_as_unapproved: str | None = Header(None, alias="createAsUnapproved"),
) -> Response:
    """Create a contact (201). When a contact with the same key exists: 200 with it, unchanged."""
    return await _create(e, body, source, store_external_id, create_as_unapproved, v3=False)


@router.post("/api/v3/contacts", status_code=201, response_model=ContactOutV3, responses=_CREATE_ERRORS_V3)
@fast_path(quick.create(v3=True))
async def create_contact_v3(
    e: Edge = Depends(edge),
    body: dict[str, Any] = Body(..., examples=[_CREATE_EXAMPLE]),
    source: str | None = Query(None),
    store_external_id: str | None = Query(None, alias="storeExternalId"),
    create_as_unapproved: str | None = Query(None, alias="createAsUnapproved"),
) -> Response:
    """Create a contact (v3 takes source, storeExternalId and createAsUnapproved as query parameters)."""
    return await _create(e, body, source, store_external_id, create_as_unapproved, v3=True)


_ID_ERRORS = errors(InvalidContactIdError, ContactNotFoundError)


@router.get("/api/v2/contacts/{contact_id}", response_model=ContactOut, responses=_ID_ERRORS)
@fast_path(quick.get(v3=False))
async def get_contact_v2(contact_id: str, e: Edge = Depends(edge)) -> Response:
    """A contact, as Engage's `IApiContact`: `{id, attributes, preferences, meta, consents}`."""
    return await e.read(lambda conn, now: _then(ContactService(e.ctx, now).get(conn, contact_id), engage_v2))


@router.get("/api/v3/contacts/{contact_id}", response_model=ContactOut, responses=_ID_ERRORS)
@fast_path(quick.get(v3=True))
async def get_contact(contact_id: str, e: Edge = Depends(edge)) -> Response:
    """A contact: `{id, contactType, attributes, preferences, meta}`."""
    return await e.read(lambda conn, now: ContactService(e.ctx, now).get(conn, contact_id))


_UPDATE_ERRORS = errors(
    InvalidContactIdError,
    InvalidPayloadError,
    InvalidEmailAddressError,
    InvalidPhoneNumberError,
    MissingKeyAttributeError,
    InvalidAttributeValueError,
    InvalidSocialSecurityNumberError,
    InvalidContactTypeError,
    ContactNotFoundError,
    ContactKeyConflictError,
)
_UPDATE_ERRORS[200] = {"description": "The contact after the update.", "headers": _WARNINGS}


async def _then(
    work: Awaitable[dict[str, Any]], then: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    return then(await work)


async def _update(e: Edge, contact_id: str, body: dict[str, Any], *, v3: bool) -> Response:
    warnings = attribute_warnings(body)

    def shape(contact: dict[str, Any]) -> dict[str, Any]:
        return _shaped(contact, warnings, v3=v3)

    answer = await e.write(
        lambda conn, now: _then(ContactService(e.ctx, now).update(conn, contact_id, body), shape)
    )
    return _warned(answer, warnings)


@router.post("/api/v2/contacts/{contact_id}", response_model=ContactOut, responses=_UPDATE_ERRORS)
@fast_path(quick.update(v3=False))
async def update_contact_v2(
    contact_id: str,
    e: Edge = Depends(edge),
    body: dict[str, Any] = Body(..., examples=[{"lastName": "Lovelace"}]),
) -> Response:
    """Partial update: present keys overwrite, null or "" clear, unknown keys are ignored (and named in the
    Promoflow-Warnings header)."""
    return await _update(e, contact_id, body, v3=False)


@router.patch("/api/v3/contacts/{contact_id}", response_model=ContactOutV3, responses=_UPDATE_ERRORS)
@fast_path(quick.update(v3=True))
async def update_contact_v3(
    contact_id: str,
    e: Edge = Depends(edge),
    body: dict[str, Any] = Body(..., examples=[{"lastName": "Lovelace"}]),
) -> Response:
    """Partial update (v3)."""
    return await _update(e, contact_id, body, v3=True)
