"""Receipts (A12): `POST /api/v2|v3/receipts`, contact history; extensions: stores, the assignment ledger and
promotion reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from ...wire.engage import Receipt, ReceiptResult
from ..contact.errors import (
    ContactNotFoundError,
    InvalidContactIdError,
    InvalidContactTypeError,
    InvalidEmailAddressError,
    InvalidPhoneNumberError,
    InvalidSearchQueryError,
    InvalidSocialSecurityNumberError,
)
from ..contact.service import parse_contact_id
from ..exceptions import InvalidJsonError, InvalidPayloadError, UnsupportedMediaTypeError
from ..http.edge import Edge, EdgeRoute, edge, fast_path
from ..http.errors import IdempotencyKeyInUseError, IdempotencyKeyMismatchError
from ..http.openapi import EXTENSION, errors
from ..promotion.assignment import parse_assignment_id
from ..promotion.errors import InvalidPromotionIdNoDataError, PromotionNotFoundError
from . import shown
from .errors import (
    InvalidAmountError,
    InvalidCreatedDateError,
    InvalidCurrencyError,
    InvalidFormatError,
    InvalidMatchKeyTypeError,
    InvalidOriginalReceiptError,
    InvalidStoreExternalIdError,
    PaymentTotalMismatchError,
    ReceiptTotalMismatchError,
    StoreNotFoundError,
)
from .history import HistoryService
from .ledger import LedgerService
from .quick import quick_receipt
from .report import ReportService, promotions_csv, report_csv
from .schemas import Ledger, PromotionReport, PromotionReportPage, StoreIn, StoreOut, TransactionPage
from .service import ReceiptService
from .store import StoreService

router = APIRouter(route_class=EdgeRoute)
RECEIPTS, STORES, REPORTS = "receipts", "stores", "reports"

_RECEIPT_ERRORS = errors(
    
        InvalidPayloadError, InvalidJsonError, InvalidMatchKeyTypeError, InvalidContactIdError, InvalidEmailAddressError,
        InvalidPhoneNumberError, InvalidSocialSecurityNumberError, InvalidSearchQueryError, InvalidContactTypeError,
        ReceiptTotalMismatchError, PaymentTotalMismatchError, InvalidCreatedDateError, InvalidCurrencyError, InvalidAmountError,
        InvalidOriginalReceiptError,
    IdempotencyKeyInUseError,
    UnsupportedMediaTypeError,
    IdempotencyKeyMismatchError,
)  # fmt: skip
_RECEIPT_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ReceiptResult,
        "description": "`Created` (stored and applied) or `Duplicate` (nothing changed).",
    },
    202: {
        "model": ReceiptResult,
        "description": "`PendingContactMatch`: stored; applied when the contact appears.",
    },
}


async def _receipt(e: Edge, body: Receipt) -> Response:
    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        outcome = await ReceiptService(e.ctx, now).ingest(conn, body, via="api")
        return {**outcome.wire(), "_status": outcome.http_status}

    return await e.write(work, lambda result: int(result.pop("_status")))


# Plain receipts are answered on PostgreSQL by the quick path (see quick.py).
@router.post("/api/v2/receipts", tags=[RECEIPTS], responses={**_RECEIPT_ERRORS, **_RECEIPT_DOC})
@fast_path(quick_receipt)
async def post_receipt_v2(body: Receipt, e: Edge = Depends(edge)) -> Response:
    """Register a purchase or return. Stored in the request; a known uniqueReceiptId is a `Duplicate`; an unknown
    contact keeps it `PendingContactMatch`. `usedPromotions` are linked, and redeemed when not yet redeemed."""
    return await _receipt(e, body)


@router.post("/api/v3/receipts", tags=[RECEIPTS], responses={**_RECEIPT_ERRORS, **_RECEIPT_DOC})
@fast_path(quick_receipt)
async def post_receipt_v3(body: Receipt, e: Edge = Depends(edge)) -> Response:
    """Register a purchase or return (v3): the same as v2."""
    return await _receipt(e, body)


@router.get(
    "/api/v2/contacts/{contact_id}/transactions",
    response_model=TransactionPage,
    tags=[RECEIPTS],
    responses=errors(InvalidContactIdError, InvalidPayloadError, ContactNotFoundError),
)
async def contact_transactions(
    contact_id: str,
    e: Edge = Depends(edge),
    offset: int = Query(0, ge=0, le=2**31 - 1),
    count: int = Query(100, ge=1, le=1000),
) -> Response:
    """The contact's receipts, newest first, paged: `{items, totalCount, offset, count}`."""
    cid = parse_contact_id(contact_id)
    return await e.read(
        lambda conn, now: HistoryService(e.ctx, now).transactions(conn, cid, offset=offset, count=count)
    )


# ------------------------------------------------------------------------------------------------ stores


@router.get("/api/v2/stores", response_model=list[StoreOut], tags=[STORES], openapi_extra=EXTENSION,
            responses=errors())  # fmt: skip
async def list_stores(e: Edge = Depends(edge)) -> Response:
    """Extension: every store of the tenant (registered on first sight or through PUT)."""
    return await e.read(lambda conn, now: StoreService(e.ctx, now).list(conn))


@router.get("/api/v2/stores/{external_id}", response_model=StoreOut, tags=[STORES], openapi_extra=EXTENSION,
            responses=errors(InvalidStoreExternalIdError, StoreNotFoundError))  # fmt: skip
async def get_store(external_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: a store."""
    return await e.read(lambda conn, now: StoreService(e.ctx, now).get(conn, external_id))


@router.put("/api/v2/stores/{external_id}", response_model=StoreOut, tags=[STORES], openapi_extra=EXTENSION,
            responses={**errors(InvalidStoreExternalIdError, InvalidPayloadError),
                       201: {"model": StoreOut, "description": "The store was new."}})  # fmt: skip
async def put_store(external_id: str, body: StoreIn, e: Edge = Depends(edge)) -> Response:
    """Extension: name a store and set its type — RETAIL (a redeem-by-receipt is POS) or ECOM. 201 when new."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        out, created = await StoreService(e.ctx, now).put(conn, external_id, body)
        return {**out, "_status": 201 if created else 200}

    return await e.write(work, lambda result: int(result.pop("_status")))


# ------------------------------------------------------------------------------------------------ ledger

_LEDGER_ERRORS = errors(InvalidPromotionIdNoDataError, PromotionNotFoundError)


async def _ledger(e: Edge, ref: str) -> Response:
    aid = parse_assignment_id(ref)
    await shown.flush_shown(e.state)
    return await e.read(lambda conn, now: LedgerService(e.ctx, now).events(conn, aid))


@router.get("/api/v2/promotions/codes/{promotion_id}/events", response_model=Ledger, tags=[REPORTS],
            openapi_extra=EXTENSION, responses=_LEDGER_ERRORS)  # fmt: skip
async def assignment_events(promotion_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: the assignment's ledger — assigned, shown, redeemed (how, where, when), linked to receipts,
    reactivated, deleted — oldest first."""
    return await _ledger(e, promotion_id)


@router.get("/api/v3/promotion-assignments/{assignment_id}/events", response_model=Ledger, tags=[REPORTS],
            openapi_extra=EXTENSION, responses=_LEDGER_ERRORS)  # fmt: skip
async def assignment_events_v3(assignment_id: str, e: Edge = Depends(edge)) -> Response:
    """Extension: the assignment's ledger (v3 path)."""
    return await _ledger(e, assignment_id)


# ----------------------------------------------------------------------------------------------- reports

_CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "JSON, or CSV with format=csv",
    }
}


def _format(value: str) -> str:
    fmt = value.strip().lower()
    if fmt not in ("json", "csv"):
        raise InvalidFormatError(f"format {value!r} is not json or csv")
    return fmt


async def _read_value(e: Edge, work: Callable[[AsyncConnection, datetime], Awaitable[Any]]) -> Any:
    async with e.state.db.read() as conn:
        return await work(conn, e.now)


def _csv(text: str, name: str) -> Response:
    return Response(
        text.encode("utf-8"),
        200,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/api/v2/reports/promotions/{promotion_id}", response_model=PromotionReport, tags=[REPORTS],
            openapi_extra=EXTENSION,
            responses={**errors(InvalidPromotionIdNoDataError, InvalidFormatError, PromotionNotFoundError),
                       **_CSV_DOC})  # fmt: skip
async def promotion_report(
    promotion_id: str, e: Edge = Depends(edge), format: str = Query("json", description="json or csv")
) -> Response:
    """Extension: assigned, shown, redeemed, redemption rate, by channel, store and day (tenant time zone), and the
    revenue and discount of the linked receipts."""
    fmt = _format(format)
    await shown.flush_shown(e.state)
    if fmt == "json":
        return await e.read(lambda conn, now: ReportService(e.ctx, now).promotion(conn, promotion_id))
    report = await _read_value(e, lambda conn, now: ReportService(e.ctx, now).promotion(conn, promotion_id))
    return _csv(report_csv(report), f"promotion-{report['promotionId']}")


@router.get("/api/v2/reports/promotions", response_model=PromotionReportPage, tags=[REPORTS],
            openapi_extra=EXTENSION, responses={**errors(InvalidFormatError, InvalidPayloadError), **_CSV_DOC})  # fmt: skip
async def promotions_report(
    e: Edge = Depends(edge),
    offset: int = Query(0, ge=0, le=2**31 - 1),
    count: int = Query(100, ge=1, le=1000),
    format: str = Query("json", description="json or csv"),
) -> Response:
    """Extension: every promotion (oldest first, paged) with its headline figures."""
    fmt = _format(format)
    await shown.flush_shown(e.state)

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        return await ReportService(e.ctx, now).promotions(conn, offset=offset, count=count)

    if fmt == "json":
        return await e.read(work)
    return _csv(promotions_csv(await _read_value(e, work)), "promotions")
