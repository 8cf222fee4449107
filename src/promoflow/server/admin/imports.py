"""Imports: every uploaded file with its status, live progress and verdict counts; an import's per-line results
(filter by verdict, search by coupon or contact id) and its files; the background jobs. Every role may read."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import Depends, Request
from starlette.responses import FileResponse, Response

from ..http.edge import state_of
from ..transfer.files import FileStore
from . import transfers
from .common import admin_router, guid_or_404, now_of, reading
from .sessions import AdminContext
from .web import SECURITY_HEADERS, is_htmx, render, viewer

router = admin_router()


def _store(request: Request) -> FileStore:
    return FileStore(state_of(request).settings.data_dir)


@router.get("/imports")
async def imports_page(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    q = request.query_params
    status = q.get("status") if q.get("status") in transfers.STATUS_TEXT else None
    after = q.get("after")
    async with reading(request) as conn:
        lines, nxt = await transfers.list_imports(conn, who.tenant, status=status, after=after)
    values: dict[str, Any] = {"lines": lines, "next": nxt, "status_filter": status, "after": after,
                              "statuses": transfers.STATUS_TEXT, "as_of": now_of(request)}  # fmt: skip
    if is_htmx(request) and request.headers.get("hx-target") == "import-results":
        return render(request, "_import_rows.html", **values)
    return render(request, "imports.html", **values)


@router.get("/imports/jobs")
async def jobs_page(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    after = request.query_params.get("after")
    async with reading(request) as conn:
        lines, nxt = await transfers.list_jobs(conn, who.tenant, after=after)
    values: dict[str, Any] = {
        "jobs": lines,
        "next": nxt,
        "after": after,
        "as_of": now_of(request),
    }
    if is_htmx(request) and request.headers.get("hx-target") == "job-results":
        return render(request, "_job_rows.html", **values)
    return render(request, "jobs.html", **values)


@router.get("/imports/{import_id}")
async def import_page(import_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    iid = guid_or_404(import_id, "import")
    q = request.query_params
    f = transfers.RecordFilter(verdict=q.get("verdict") if q.get("verdict") in transfers.VERDICTS else None,
                               search=q.get("q", "")[:255])  # fmt: skip
    after = None
    with contextlib.suppress(ValueError):
        after = int(q["after"]) if q.get("after") else None
    async with reading(request) as conn:
        imp = await transfers.get_import(conn, who.tenant, iid)
        if is_htmx(request) and request.headers.get("hx-target") == "import-head":
            response = render(request, "_import_head.html", imp=imp)
            if (
                not imp.running
            ):  # only a page shown while it ran polls: reload it once, with every line result
                response.headers["HX-Refresh"] = "true"
            return response
        records, nxt = await transfers.list_records(conn, who.tenant, iid, f, after)
    values: dict[str, Any] = {"imp": imp, "records": records, "next": nxt, "filters": f, "after": after,
                              "verdicts": transfers.VERDICT_TEXT}  # fmt: skip
    if is_htmx(request) and request.headers.get("hx-target") == "record-results":
        return render(request, "_record_rows.html", **values)
    return render(request, "import.html", **values)


def _download(path: Any, name: str, media_type: str) -> Response:
    headers = {k: v for k, v in SECURITY_HEADERS.items() if k != "Cache-Control"}
    return FileResponse(
        path, media_type=media_type, filename=name, headers={**headers, "Cache-Control": "no-store"}
    )


@router.get("/imports/{import_id}/original")
async def original(import_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    iid = guid_or_404(import_id, "import")
    async with reading(request) as conn:
        path, name = await transfers.original_file(conn, who.tenant, _store(request), iid)
    return _download(path, name, "application/xml")


@router.get("/imports/{import_id}/result")
async def result(import_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    iid = guid_or_404(import_id, "import")
    async with reading(request) as conn:
        path = await transfers.result_file(conn, who.tenant, _store(request), iid)
    return _download(path, path.name, "application/xml")
