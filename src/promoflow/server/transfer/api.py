"""The imports API (extension): what became of each uploaded file, and of each of its records."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from ..exceptions import InvalidPayloadError
from ..http.edge import Edge, edge
from ..http.openapi import EXTENSION, errors
from ..models.transfer import IMPORT_STATUSES
from .errors import ImportNotFoundError, InvalidImportIdError, InvalidVerdictError
from .schemas import ImportDetailOut, ImportPage
from .service import ImportService, parse_import_id, parse_verdict

router = APIRouter()
TAG = "file imports"


@router.get("/api/v2/imports", response_model=ImportPage, tags=[TAG], openapi_extra=EXTENSION,
            responses=errors(InvalidPayloadError))  # fmt: skip
async def list_imports(
    e: Edge = Depends(edge),
    offset: int = Query(0, ge=0, le=10_000_000),
    count: int = Query(100, ge=1, le=1000),
    status: str | None = Query(None, pattern="^(" + "|".join(IMPORT_STATUSES) + ")$"),
) -> Response:
    """Extension: the tenant's uploaded files, newest first, with status and verdict counts."""
    return await e.read(lambda conn, now: ImportService(e.ctx, now).list(conn, offset=offset, count=count,
                                                                          status=status))  # fmt: skip


@router.get("/api/v2/imports/{import_id}", response_model=ImportDetailOut, tags=[TAG], openapi_extra=EXTENSION,
            responses=errors(InvalidImportIdError, InvalidVerdictError, ImportNotFoundError))  # fmt: skip
async def get_import(
    import_id: str,
    e: Edge = Depends(edge),
    offset: int = Query(0, ge=0, le=100_000_000),
    count: int = Query(100, ge=1, le=1000),
    verdict: str | None = Query(None, description="Only records with this verdict."),
) -> Response:
    """Extension: one import: status, counts, and a page of per-record verdicts (as in its result file)."""
    guid = parse_import_id(import_id)
    wanted = parse_verdict(verdict)
    return await e.read(
        lambda conn, now: ImportService(e.ctx, now).get(
            conn, guid, offset=offset, count=count, verdict=wanted
        )
    )
