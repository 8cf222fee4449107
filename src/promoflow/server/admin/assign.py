"""Assigning a promotion: to one contact, to many pasted or uploaded keys (Check first, then Assign as the
API's bulk job with live progress and a per-line result CSV), or to a segment (a snapshot of who matches now)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import Depends, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from ...kit.csvtext import cell
from ...kit.guid import parse_guid
from ...kit.timeutil import filter_day
from ..exceptions import InvalidPayloadError
from . import gateway
from .common import admin_router, guid_or_404, now_of, reading, wake_worker, writing
from .sessions import AdminContext
from .web import form_of, marketer, redirect, render, viewer

router = admin_router()

OUTCOME_TEXT = {
    "assign": "assigned",
    "already-held": "already held",
    "unknown": "unknown",
    "invalid": "invalid",
    "duplicate": "duplicate line",
}


async def _page(
    request: Request, who: AdminContext, pid: uuid.UUID, status: int = 200, **values: Any
) -> Response:
    async with reading(request) as conn:
        view = await gateway.get_promotion(conn, who.tenant, now_of(request), pid)
        choices = await gateway.promotion_choices(conn, who.tenant, now_of(request))
    values.setdefault("segment", gateway.Segment())
    return render(request, "assign.html", status, view=view, choices=choices, **values)


@router.get("/promotions/{promotion_id}/assign")
async def assign_page(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    return await _page(request, who, guid_or_404(promotion_id, "promotion"))


def _csv_keys(data: bytes) -> str:
    """The contact keys of an uploaded CSV: its first column, or the column named like a key; one per line."""
    text = data.decode("utf-8-sig", errors="replace")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return ""
    header = [h.strip().lower() for h in rows[0]]
    names = (
        "contactid",
        "contact id",
        "email",
        "e-mail",
        "mobilephone",
        "phone",
        "membernumber",
        "member number",
        "key",
    )
    col = next((i for i, h in enumerate(header) if h in names), None)
    body = rows[1:] if col is not None else rows
    col = col or 0
    return "\n".join(r[col].strip() for r in body if len(r) > col and r[col].strip())


async def _keys_text(request: Request) -> str:
    form = await form_of(request)
    upload = form.get("csv_file")
    if isinstance(upload, UploadFile) and upload.filename:
        return _csv_keys(await upload.read())
    return str(form.get("contacts") or "")


@router.post("/promotions/{promotion_id}/assign/check")
async def check(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    """Counts before anything is assigned: found, unknown, invalid, already holding it."""
    pid = guid_or_404(promotion_id, "promotion")
    text = await _keys_text(request)
    if not text.strip():
        return await _page(
            request, who, pid, 400, contacts_error="Paste at least one contact key, or choose a CSV file."
        )
    async with reading(request) as conn:
        result = await gateway.check_keys(conn, who.tenant, pid, text)
    if len(result.lines) > gateway.MAX_BULK:
        return await _page(request, who, pid, 400, contacts=text,
                           contacts_error=f"At most {gateway.MAX_BULK:,} lines at a time.")  # fmt: skip
    return await _page(request, who, pid, contacts=text, checked=result, outcome_text=OUTCOME_TEXT)


@router.post("/promotions/{promotion_id}/assign/run")
async def run(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    text = await _keys_text(request)
    now = now_of(request)
    # Resolve on a read connection, so a 100,000-line paste never holds the (SQLite) write lock; only the
    # enqueue is a write.
    async with reading(request) as conn:
        result = await gateway.check_keys(conn, who.tenant, pid, text)
    if not result.lines or len(result.lines) > gateway.MAX_BULK:
        raise InvalidPayloadError("paste between 1 and 100,000 contact keys")
    lines = [[line.number, line.text, line.outcome, str(line.contact_id or "")] for line in result.lines]
    async with writing(request) as conn:
        job_id = await gateway.start_bulk(conn, who.tenant, now, pid, result.to_assign, lines, "keys")
    wake_worker(request)
    return redirect(request, f"/admin/runs/{job_id}")


@router.get("/promotions/{promotion_id}/assign/search")
async def search_one(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    async with reading(request) as conn:
        found = await gateway.search_contacts(
            conn, who.tenant, request.query_params.get("q", "")[:200], limit=10
        )
    return render(
        request, "_assign_one_results.html", found=found, pid=pid, q=request.query_params.get("q", "")
    )


@router.post("/promotions/{promotion_id}/assign/one")
async def assign_one(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    cid = guid_or_404(str((await form_of(request)).get("contact_id") or ""), "contact")
    async with writing(request) as conn:
        await gateway.assign_one(conn, who.tenant, now_of(request), cid, pid)
    return redirect(request, f"/admin/contacts/{cid}?assigned={pid}")


def _segment(values: Any) -> gateway.Segment:
    return gateway.Segment(
        contact_type=str(values.get("seg_type") or "")
        if values.get("seg_type") in ("Member", "Contact")
        else "",
        store=str(values.get("seg_store") or "").strip()[:255],
        city=str(values.get("seg_city") or "").strip()[:255],
        created_from=filter_day(values.get("seg_created_from")),
        created_to=filter_day(values.get("seg_created_to")),
        consent=str(values.get("seg_consent") or ""),
        redeemed_promotion=parse_guid(str(values.get("seg_promotion") or "")),
        redeemed=str(values.get("seg_redeemed") or ""),
    )


@router.get("/promotions/{promotion_id}/segment/count")
async def segment_count(promotion_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    guid_or_404(promotion_id, "promotion")
    seg = _segment(request.query_params)
    async with reading(request) as conn:
        n = await gateway.segment_count(conn, who.tenant, seg)
    return render(request, "_segment_count.html", count=n)


@router.post("/promotions/{promotion_id}/segment/run")
async def segment_run(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    seg = _segment(await form_of(request))
    async with reading(request) as conn:
        ids = await gateway.segment_ids(conn, who.tenant, seg)
        if len(ids) > gateway.MAX_BULK:
            raise InvalidPayloadError(f"the segment has more than {gateway.MAX_BULK:,} contacts; narrow it")
        result = await gateway.check_keys(conn, who.tenant, pid, "\n".join(str(i) for i in ids))
    lines = [[line.number, line.text, line.outcome, str(line.contact_id or "")] for line in result.lines]
    async with writing(request) as conn:
        job_id = await gateway.start_bulk(
            conn, who.tenant, now_of(request), pid, result.to_assign, lines, "segment"
        )
    wake_worker(request)
    return redirect(request, f"/admin/runs/{job_id}")


@router.get("/runs/{job_id}")
async def run_page(job_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    fragment = (
        request.headers.get("hx-request") == "true"
    )  # the progress the page polls: no promotion figures
    async with reading(request) as conn:
        j = await gateway.get_bulk(conn, who.tenant, guid_or_404(job_id, "run"))
        view = (
            None
            if fragment
            else await gateway.get_promotion(conn, who.tenant, now_of(request), j.promotion_id)
        )
    return render(request, "_run_progress.html" if fragment else "run.html", job=j, view=view)


@router.get("/runs/{job_id}/result.csv")
async def run_csv(job_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    async with reading(request) as conn:
        j = await gateway.get_bulk(conn, who.tenant, guid_or_404(job_id, "run"), with_lines=True)
    pending = {"succeeded": "assigned", "failed": "not assigned (the run failed)"}.get(j.status, "pending")

    def rows() -> Iterator[str]:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["line", "input", "contactId", "result"])
        for n, (number, text, outcome, cid) in enumerate(j.lines or [], 1):
            w.writerow([number, cell(text), cid, pending if outcome == "assign" else OUTCOME_TEXT[outcome]])
            if n % 5_000 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="assignment-{j.id}.csv"'})  # fmt: skip
