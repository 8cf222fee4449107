"""Promotions: definitions (A5), assignment (A6), fetching (A7), redeeming (A8), reactivation (A10), and the
bulk-assignment extension."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from ...kit.guid import parse_guid
from ...wire.engage import (
    ApiPromotion,
    AssignmentCreateV3,
    BulkAssignCreate,
    ChannelType,
    JobOut,
    MultichannelPromotion,
    MultichannelPromotionCreate,
    PromotionPage,
    PromotionStatus,
    PromotionValidity,
    RedeemBody,
    StatusOk,
    ValidityOut,
)
from ..contact.errors import ContactNotFoundError, InvalidContactIdError, InvalidContactTypeError
from ..contact.service import parse_contact_id
from ..exceptions import InvalidJsonError, InvalidPayloadError, UnsupportedMediaTypeError
from ..hooks import fire_promotions_shown
from ..http.edge import Edge, EdgeRoute, Work, edge, fast_path
from ..http.errors import IdempotencyKeyInUseError, IdempotencyKeyMismatchError
from ..http.openapi import EXTENSION, body_schema, errors
from ..worker import queue
from ..worker.errors import InvalidJobIdError, JobNotFoundError
from . import fastlane, presenter
from .assignment import AssignmentService, RedemptionService, parse_assignment_id
from .bulk import bulk_payload, enqueue_bulk
from .domain import AssignmentView, Promotion
from .errors import (
    AmbiguousPromotionIdError,
    DuplicateRedemptionChannelError,
    ExternalIdInUseError,
    InvalidPromotionIdError,
    InvalidPromotionIdNoDataError,
    InvalidPromotionValueError,
    InvalidRedeemedOnError,
    InvalidUrlError,
    InvalidValidityError,
    NotAValidRedemptionChannelError,
    PromotionAlreadyRedeemedError,
    PromotionExpiredError,
    PromotionHasAssignmentsError,
    PromotionIncompleteError,
    PromotionNotActiveError,
    PromotionNotAssociatedWithContactError,
    PromotionNotDraftError,
    PromotionNotFoundError,
    PromotionNotRedeemableError,
    PromotionNotRedeemedError,
    PromotionNotValidForRedemptionChannelError,
    PromotionNotYetValidError,
    ReactivationLimitExceededError,
)
from .rules import parse_channel
from .service import PromotionService, parse_promotion_id

router = APIRouter(route_class=EdgeRoute)
DEFS = "promotion definitions"
FLOW = "promotion assignments"

_ID = (InvalidPromotionIdNoDataError,)
_DEF_BODY = (
    InvalidPayloadError,
    InvalidValidityError,
    InvalidPromotionValueError,
    DuplicateRedemptionChannelError,
    InvalidUrlError,
)


# -------------------------------------------------------------------------------------------- definitions


def _definition(e: Edge, call: Callable[[AsyncConnection, PromotionService], Awaitable[Promotion]]) -> Work:
    """A unit of work answering one promotion definition (`MultichannelPromotionModel`)."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        return presenter.definition(await call(conn, PromotionService(e.ctx, now)), now, e.ctx.tz)

    return work


def _validity(e: Edge, promotion_id: str | None, external_id: str | None) -> Work:
    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        return presenter.validity(
            await PromotionService(e.ctx, now).validity(conn, promotion_id, external_id), e.ctx.tz
        )

    return work


def _assignment(
    e: Edge, call: Callable[[AsyncConnection, datetime], Awaitable[AssignmentView]], *, v3: bool
) -> Work:
    """A unit of work answering one assignment (an `ApiPromotionModel` item)."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        return presenter.item(await call(conn, now), e.ctx.currency, e.ctx.tz, v3=v3)

    return work


@router.post(
    "/api/v2/promotions/multichannels",
    status_code=201,
    response_model=MultichannelPromotion,
    tags=[DEFS],
    responses=errors(*_DEF_BODY, ExternalIdInUseError, UnsupportedMediaTypeError),
)
@router.post("/api/v3/promotions/multichannels", status_code=201, response_model=MultichannelPromotion,
             tags=[DEFS], responses=errors(*_DEF_BODY, ExternalIdInUseError, UnsupportedMediaTypeError))  # fmt: skip
async def create_promotion(body: MultichannelPromotionCreate, e: Edge = Depends(edge)) -> Response:
    """Create a multichannel promotion; it starts as a Draft."""
    return await e.write(_definition(e, lambda conn, svc: svc.create(conn, body)), 201)


@router.get(
    "/api/v2/promotions/multichannels",
    response_model=MultichannelPromotion | PromotionPage,
    tags=[DEFS],
    responses=errors(InvalidPayloadError, PromotionNotFoundError),
)
async def get_promotion_by_external_id_or_list(
    e: Edge = Depends(edge),
    external_id: str | None = Query(None, alias="externalId", max_length=450),
    offset: int = Query(0, ge=0, le=2**31 - 1),
    count: int = Query(100, ge=1, le=1000),
    status: PromotionStatus | None = Query(None),
) -> Response:
    """With `externalId`: that promotion. Without (extension): a page of promotions, optionally by status."""
    if external_id is not None:
        return await e.read(_definition(e, lambda conn, svc: svc.get_by_external(conn, external_id)))

    async def listing(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        found = await PromotionService(e.ctx, now).list(conn, offset=offset, count=count, status=status)
        return presenter.page(found, now, e.ctx.tz)

    return await e.read(listing)


@router.get("/api/v2/promotions/multichannels/validity", response_model=ValidityOut, tags=[DEFS],
            responses=errors(PromotionNotFoundError))  # fmt: skip
async def get_validity_by_external_id(
    e: Edge = Depends(edge), external_id: str = Query(..., alias="externalId", max_length=450)
) -> Response:
    """The validity of the promotion with this externalId."""
    return await e.read(_validity(e, None, external_id))


@router.delete("/api/v2/promotions/multichannels", tags=[DEFS], response_model=StatusOk,
               responses=errors(PromotionNotFoundError, PromotionHasAssignmentsError))  # fmt: skip
async def delete_by_external_id(
    e: Edge = Depends(edge), external_id: str = Query(..., alias="externalId", max_length=450)
) -> Response:
    """Delete a promotion that was never assigned, by externalId."""

    async def work(conn: AsyncConnection, now: Any) -> dict[str, Any]:
        await PromotionService(e.ctx, now).delete(conn, None, external_id)
        return {"statusCode": "OK"}

    return await e.write(work)


@router.get("/api/v2/promotions/multichannels/{promotion_id}", response_model=MultichannelPromotion, tags=[DEFS],
            responses=errors(*_ID, PromotionNotFoundError))  # fmt: skip
@router.get("/api/v3/promotions/multichannels/{promotion_id}", response_model=MultichannelPromotion, tags=[DEFS],
            responses=errors(*_ID, PromotionNotFoundError))  # fmt: skip
async def get_promotion(promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """A promotion definition; `status` follows its dates in the tenant's time zone."""
    return await e.read(_definition(e, lambda conn, svc: svc.get(conn, promotion_id)))


@router.put("/api/v2/promotions/multichannels/{promotion_id}", response_model=MultichannelPromotion, tags=[DEFS],
            responses=errors(*_ID, *_DEF_BODY, PromotionNotFoundError,
                             PromotionNotDraftError, ExternalIdInUseError))  # fmt: skip
async def update_promotion(
    promotion_id: str, body: MultichannelPromotionCreate, e: Edge = Depends(edge)
) -> Response:
    """Replace a Draft promotion's definition."""
    return await e.write(_definition(e, lambda conn, svc: svc.update(conn, promotion_id, body)))


@router.delete("/api/v2/promotions/multichannels/{promotion_id}", tags=[DEFS], response_model=StatusOk,
               responses=errors(*_ID, PromotionNotFoundError, PromotionHasAssignmentsError))  # fmt: skip
async def delete_promotion(promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """Delete a promotion that was never assigned."""

    async def work(conn: AsyncConnection, now: Any) -> dict[str, Any]:
        await PromotionService(e.ctx, now).delete(conn, promotion_id, None)
        return {"statusCode": "OK"}

    return await e.write(work)


@router.get("/api/v2/promotions/multichannels/{promotion_id}/validity", response_model=ValidityOut, tags=[DEFS],
            responses=errors(*_ID, PromotionNotFoundError))  # fmt: skip
async def get_validity(promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """The validity of a promotion."""
    return await e.read(_validity(e, promotion_id, None))


@router.put("/api/v2/promotions/multichannels/{promotion_id}/validity", response_model=MultichannelPromotion,
            tags=[DEFS], responses=errors(*_ID, InvalidValidityError, PromotionNotFoundError,
                                          PromotionNotDraftError))  # fmt: skip
async def update_validity(promotion_id: str, body: PromotionValidity, e: Edge = Depends(edge)) -> Response:
    """Change a Draft promotion's validity."""
    return await e.write(_definition(e, lambda conn, svc: svc.update_validity(conn, promotion_id, body)))


@router.post("/api/v2/promotions/multichannels/{promotion_id}/activate", response_model=MultichannelPromotion,
             tags=[DEFS], openapi_extra=EXTENSION,
             responses=errors(*_ID, PromotionNotFoundError,
                              PromotionNotDraftError, PromotionIncompleteError, PromotionExpiredError))  # fmt: skip
async def activate_promotion(promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: Draft → Scheduled (start date in the future) or Active."""
    return await e.write(_definition(e, lambda conn, svc: svc.activate(conn, promotion_id)))


@router.post("/api/v2/promotions/multichannels/{promotion_id}/deactivate", response_model=MultichannelPromotion,
             tags=[DEFS], openapi_extra=EXTENSION,
             responses=errors(*_ID, PromotionNotFoundError, PromotionNotActiveError))  # fmt: skip
async def deactivate_promotion(promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: end a Scheduled or Active promotion now. Existing assignments stay valid."""
    return await e.write(_definition(e, lambda conn, svc: svc.deactivate(conn, promotion_id)))


@router.post("/api/v2/promotions/multichannels/{promotion_id}/bulk-assignments", status_code=202,
             response_model=JobOut, tags=[DEFS], openapi_extra=EXTENSION,
             responses=errors(*_ID, InvalidPayloadError, InvalidContactTypeError, PromotionNotFoundError,
                              PromotionNotActiveError, PromotionExpiredError))  # fmt: skip
async def bulk_assign(promotion_id: str, body: BulkAssignCreate, e: Edge = Depends(edge)) -> Response:
    """Extension: assign the promotion to many contacts (ids or keys) in the background; poll the job."""
    pid = parse_promotion_id(promotion_id)

    async def work(conn: AsyncConnection, now: Any) -> dict[str, Any]:
        await AssignmentService(e.ctx, now)._promotion_for_assign(
            conn, pid
        )  # fail fast on Draft/Ended/unknown
        payload = bulk_payload(pid, body)
        total = len(body.contact_ids or []) + len(body.contact_keys or [])
        job = await enqueue_bulk(conn, e.ctx, now, payload, total, "api")
        return queue.job_out(job, e.ctx.tz)

    response = await e.write(work, 202)
    e.wake_worker()
    return response


@router.get("/api/v2/jobs/{job_id}", response_model=JobOut, tags=[DEFS], openapi_extra=EXTENSION,
            responses=errors(InvalidJobIdError, JobNotFoundError))  # fmt: skip
async def get_job(job_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: a background job's status, progress and result."""
    guid = parse_guid(job_id)
    if guid is None:
        raise InvalidJobIdError(f"job id {job_id!r} is not a GUID")
    return await e.read(lambda conn, now: queue.get_job_out(conn, e.ctx, guid))


# --------------------------------------------------------------------------------- assignment & fetching


_ASSIGN_ERRORS = errors(
    InvalidContactIdError,
    InvalidPromotionIdError,
    ContactNotFoundError,
    PromotionNotFoundError,
    PromotionNotActiveError,
    PromotionExpiredError,
)


@router.post("/api/v2/contacts/{contact_id}/promotions/{promotion_id}/assign", response_model=ApiPromotion,
             tags=[FLOW], responses=_ASSIGN_ERRORS)  # fmt: skip
async def assign_v2(contact_id: str, promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """Assign a (Scheduled or Active) promotion to a contact; answers the new assignment."""
    cid = parse_contact_id(contact_id)
    pid = parse_promotion_id(promotion_id, InvalidPromotionIdError)
    return await e.write(
        _assignment(e, lambda conn, now: AssignmentService(e.ctx, now).assign(conn, cid, pid), v3=False)
    )


@router.post(
    "/api/v3/promotion-assignments", response_model=ApiPromotion, tags=[FLOW], responses=_ASSIGN_ERRORS
)
async def assign_v3(body: AssignmentCreateV3, e: Edge = Depends(edge)) -> Response:
    """Assign a promotion to a contact (v3)."""
    cid = parse_contact_id(body.contact_id)
    pid = parse_promotion_id(body.promotion_id, InvalidPromotionIdError)
    return await e.write(
        _assignment(e, lambda conn, now: AssignmentService(e.ctx, now).assign(conn, cid, pid), v3=True)
    )


def _channel_filter(query_value: str | None, header_value: str | None) -> ChannelType | None:
    value = query_value if query_value not in (None, "") else header_value
    return None if value in (None, "") else parse_channel(value)


def _listing(e: Edge, cid: uuid.UUID, channel: ChannelType | None, include_redeemed: bool, store: str | None,
             *, v3: bool) -> Any:  # fmt: skip
    async def work(conn: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
        rows = await AssignmentService(e.ctx, now).list_for_contact(
            conn, cid, channel, include_redeemed=include_redeemed
        )
        # The ledger's 'shown' events (buffered by the listener, never a write here), as the fast lane does.
        shown = [(r.id, r.promotion.promotion_id) for r in rows if r.redeemed_at is None]
        await fire_promotions_shown(e.state, e.ctx, cid, shown, store, now)
        return presenter.items(rows, e.ctx.currency, e.ctx.tz, v3=v3)

    return work


_LIST_ERRORS = errors(InvalidContactIdError, NotAValidRedemptionChannelError, ContactNotFoundError)


@router.get("/api/v2/contacts/{contact_id}/promotions", response_model=list[ApiPromotion], tags=[FLOW],
            responses=_LIST_ERRORS)  # fmt: skip
@fast_path(fastlane.fetch(v3=False))
async def list_contact_promotions(
    contact_id: str,
    e: Edge = Depends(edge),
    redemption_channel_type: str | None = Query(None, alias="redemptionChannelType"),
    include_redeemed: bool = Query(
        False, alias="includeRedeemed", description="Extension: also redeemed/expired."
    ),
    header_channel: str | None = Header(None, alias="redemptionChannelType"),
    store: str | None = Header(
        None, alias="storeExternalId", description="Extension: the store showing them."
    ),
) -> Response:
    """The contact's promotions valid now and not redeemed, optionally for one channel (query or header)."""
    cid = parse_contact_id(contact_id)
    channel = _channel_filter(redemption_channel_type, header_channel)
    return await e.read(_listing(e, cid, channel, include_redeemed, store, v3=False))


@router.get("/api/v3/promotion-assignments", response_model=list[ApiPromotion], tags=[FLOW],
            responses=_LIST_ERRORS)  # fmt: skip
@fast_path(fastlane.fetch(v3=True))
async def list_assignments_v3(
    e: Edge = Depends(edge),
    contact_id: str = Query(..., alias="contactId"),
    redemption_channel_type: str | None = Query(None, alias="redemptionChannelType"),
    include_redeemed: bool = Query(False, alias="includeRedeemed"),
    header_channel: str | None = Header(None, alias="redemptionChannelType"),
    store: str | None = Header(
        None, alias="storeExternalId", description="Extension: the store showing them."
    ),
) -> Response:
    """The contact's promotions (v3): the same items, each also carrying `assignmentId`."""
    cid = parse_contact_id(contact_id)
    channel = _channel_filter(redemption_channel_type, header_channel)
    return await e.read(_listing(e, cid, channel, include_redeemed, store, v3=True))


# ------------------------------------------------------------------------------------------------- redeem


async def redeem_body(request: Request) -> RedeemBody:
    """`{"redemptionChannel": "POS"}`, a bare JSON string `"POS"`, or nothing (→ OTHER)."""
    raw = await request.body()
    if not raw.strip():
        return RedeemBody()
    try:
        data = json.loads(raw)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise InvalidJsonError(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidJsonError("the body is not valid JSON: nested too deeply") from exc
    if data is None:
        return RedeemBody()
    if isinstance(data, str):
        return RedeemBody(redemption_channel=data)
    if not isinstance(data, dict):
        raise InvalidPayloadError('the body must be {"redemptionChannel": "POS|ECOM|OTHER"}')
    from pydantic import ValidationError

    from ..http.exception_handlers import validation_error

    try:
        return RedeemBody.model_validate(data)
    except ValidationError as exc:
        raise validation_error([{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]) from exc


_REDEEM_DOC = body_schema(
    {
        "anyOf": [
            RedeemBody.model_json_schema(),  # inline: the route reads its body itself, so FastAPI lists no model
            {"type": "string", "enum": ["POS", "ECOM", "OTHER"]},
            {"type": "null"},
        ]
    },
    required=False,
)
_REDEEM_ERRORS = errors(
    NotAValidRedemptionChannelError, InvalidPromotionIdNoDataError, InvalidContactIdError, InvalidRedeemedOnError,
    InvalidJsonError, InvalidPayloadError, UnsupportedMediaTypeError,
    PromotionNotFoundError, PromotionNotAssociatedWithContactError,
    PromotionAlreadyRedeemedError, PromotionExpiredError, PromotionNotYetValidError, PromotionNotRedeemableError,
          PromotionNotValidForRedemptionChannelError, AmbiguousPromotionIdError, IdempotencyKeyInUseError,
    IdempotencyKeyMismatchError,
)  # fmt: skip


async def _redeem(
    e: Edge, request: Request, assignment_ref: str, contact_ref: str | None, v3: bool
) -> Response:
    body = await redeem_body(request)
    channel = parse_channel(body.redemption_channel, default=ChannelType.OTHER)
    aid = parse_assignment_id(assignment_ref)
    cid = parse_contact_id(contact_ref) if contact_ref is not None else None
    idem = request.headers.get("idempotency-key")

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        svc = RedemptionService(e.ctx, now)
        target = await svc.resolve_for_contact(conn, cid, aid) if cid is not None else aid
        done = await svc.redeem(
            conn,
            target,
            channel,
            contact_id=cid,
            redeemed_on=body.redeemed_on,
            store_external_id=body.store_external_id,
            unique_receipt_id=body.unique_receipt_id,
            idempotency_key=idem,
        )
        return presenter.item(done.assignment, e.ctx.currency, e.ctx.tz, v3=v3)

    return await e.write(work)


@router.post("/api/v2/contacts/{contact_id}/promotions/{promotion_id}/redeem", response_model=ApiPromotion,
             tags=[FLOW], responses=_REDEEM_ERRORS, openapi_extra=_REDEEM_DOC)  # fmt: skip
@fast_path(fastlane.redeem(contact_scoped=True, v3=False))
async def redeem_v2_contact(
    contact_id: str, promotion_id: str, request: Request, e: Edge = Depends(edge)
) -> Response:
    """Redeem an assignment of this contact (by assignment id, or by template id when the contact holds exactly
    one redeemable assignment of it). Exactly once: concurrent redeems get one 200 and 409s."""
    return await _redeem(e, request, promotion_id, contact_id, v3=False)


@router.post("/api/v2/promotions/codes/{promotion_id}/redeem", response_model=ApiPromotion, tags=[FLOW],
             responses=_REDEEM_ERRORS, openapi_extra=_REDEEM_DOC)  # fmt: skip
@fast_path(fastlane.redeem(contact_scoped=False, v3=False))
async def redeem_v2_code(promotion_id: str, request: Request, e: Edge = Depends(edge)) -> Response:
    """Redeem by assignment id (the `id` of a contact's promotion item)."""
    return await _redeem(e, request, promotion_id, None, v3=False)


@router.post("/api/v3/promotion-assignments/{assignment_id}/redeem", response_model=ApiPromotion, tags=[FLOW],
             responses=_REDEEM_ERRORS, openapi_extra=_REDEEM_DOC)  # fmt: skip
@fast_path(fastlane.redeem(contact_scoped=False, v3=True))
async def redeem_v3(assignment_id: str, request: Request, e: Edge = Depends(edge)) -> Response:
    """Redeem an assignment (v3)."""
    return await _redeem(e, request, assignment_id, None, v3=True)


_REACTIVATE_ERRORS = errors(
    InvalidPromotionIdNoDataError,
    PromotionNotFoundError,
    PromotionNotRedeemedError,
    PromotionExpiredError,
    ReactivationLimitExceededError,
)


@router.post("/api/v2/promotions/codes/{promotion_id}/reactivate", response_model=ApiPromotion, tags=[FLOW],
             responses=_REACTIVATE_ERRORS, openapi_extra=EXTENSION)  # fmt: skip
async def reactivate_v2(promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: undo a redemption (e.g. a cancelled sale), within the tenant's reactivation limit."""
    aid = parse_assignment_id(promotion_id)
    return await e.write(
        _assignment(e, lambda conn, now: RedemptionService(e.ctx, now).reactivate(conn, aid), v3=False)
    )


@router.post("/api/v3/promotion-assignments/{assignment_id}/reactivate", response_model=ApiPromotion, tags=[FLOW],
             responses=_REACTIVATE_ERRORS, openapi_extra=EXTENSION)  # fmt: skip
async def reactivate_v3(assignment_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: undo a redemption (v3)."""
    aid = parse_assignment_id(assignment_id)
    return await e.write(
        _assignment(e, lambda conn, now: RedemptionService(e.ctx, now).reactivate(conn, aid), v3=True)
    )
