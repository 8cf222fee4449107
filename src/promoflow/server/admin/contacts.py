"""Contacts: search, the contact card (promotions with why the till does not show them, receipts, timeline),
assigning from the card and reactivating a redemption with a recorded reason."""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.responses import Response

from . import gateway
from .audit import history
from .common import admin_router, guid_or_404, now_of, reading, writing
from .sessions import AdminContext
from .web import form_of, is_htmx, marketer, redirect, render, viewer

router = admin_router()


@router.get("/contacts")
async def contacts(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    q = request.query_params.get("q", "")[:200]
    async with reading(request) as conn:
        found = await gateway.search_contacts(conn, who.tenant, q) if q.strip() else []
    if is_htmx(request) and request.headers.get("hx-target") == "contact-results":
        return render(request, "_contact_rows.html", found=found, q=q)
    return render(request, "contacts.html", found=found, q=q)


async def _card(
    request: Request, who: AdminContext, contact_id: str, status: int = 200, **values: object
) -> Response:
    cid = guid_or_404(contact_id, "contact")
    async with reading(request) as conn:
        card = await gateway.contact_card(conn, who.tenant, now_of(request), cid)
        choices = await gateway.promotion_choices(conn, who.tenant, now_of(request), assignable=True)
        past, more = await history(conn, who.tenant, contact_id=cid)
    return render(request, "contact.html", status, card=card, cid=cid, choices=choices, history=past,
                  history_more=more, history_link=f"/admin/audit?contact={cid}", **values)  # fmt: skip


@router.get("/contacts/{contact_id}")
async def card(contact_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    notice = ""
    if request.query_params.get("assigned"):
        notice = "Assigned."
    elif request.query_params.get("reactivated"):
        notice = "Reactivated: the customer can use it again."
    return await _card(request, who, contact_id, notice=notice)


@router.post("/contacts/{contact_id}/assign")
async def assign(contact_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    cid = guid_or_404(contact_id, "contact")
    form = await form_of(request)
    pid = guid_or_404(str(form.get("promotion_id") or ""), "promotion")
    if form.get("again") != "yes":
        # A second coupon of a promotion the customer still holds unused is rarely meant (the bulk check skips
        # such contacts): the card asks first.
        async with reading(request) as conn:
            held = await gateway.unused_held(conn, who.tenant, cid, pid)
        if held:
            return await _card(request, who, contact_id, 409, assign_again=(pid, held))
    async with writing(request) as conn:
        await gateway.assign_one(conn, who.tenant, now_of(request), cid, pid)
    return redirect(request, f"/admin/contacts/{cid}?assigned={pid}")


@router.post("/contacts/{contact_id}/reactivate")
async def reactivate(contact_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    cid = guid_or_404(contact_id, "contact")
    form = await form_of(request)
    aid = guid_or_404(str(form.get("assignment_id") or ""), "assignment")
    reason = str(form.get("reason") or "").strip()[:500]
    if not reason:
        return await _card(request, who, contact_id, 400, reactivate_error=(str(aid), "Say why (for example: the sale "
                           "was cancelled)."))  # fmt: skip
    async with writing(request) as conn:
        await gateway.reactivate(conn, who.tenant, now_of(request), aid, cid, reason, who.email)
    return redirect(request, f"/admin/contacts/{cid}?reactivated={aid}")
