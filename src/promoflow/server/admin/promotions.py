"""Promotions: the list, the editor with its live customer preview, activation, and the lifecycle buttons."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from starlette.responses import Response

from ...kit.guid import parse_guid
from ...wire.engage import ChannelType, PromotionStatus
from ..exceptions import PromoflowError
from . import gateway
from .audit import history
from .common import admin_router, guid_or_404, now_of, reading, writing
from .forms import VALUE_TYPE_LABELS, VALUE_TYPES, PromotionForm
from .sessions import AdminContext
from .users import Role
from .web import form_of, is_htmx, marketer, redirect, render, viewer

router = admin_router()


def _enum(kind: type, value: str | None) -> object | None:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


@router.get("/promotions")
async def promotions(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    q = request.query_params
    f = gateway.PromotionFilters(
        status=_enum(PromotionStatus, q.get("status")),  # type: ignore[arg-type]
        channel=_enum(ChannelType, q.get("channel")),  # type: ignore[arg-type]
        text=q.get("q", "")[:200],
    )
    async with reading(request) as conn:
        lines, nxt = await gateway.list_promotions(conn, who.tenant, now_of(request), f, q.get("after"))
    values: dict[str, Any] = {"lines": lines, "next": nxt, "filters": f, "after": q.get("after"),
              "statuses": [s.value for s in PromotionStatus if s is not PromotionStatus.TEMPORARY]}  # fmt: skip
    if is_htmx(request) and request.headers.get("hx-target") == "promotion-results":
        return render(request, "_promotion_rows.html", **values)
    return render(request, "promotions.html", **values)


def _editor(request: Request, who: AdminContext, form: PromotionForm, *, view: gateway.PromotionView | None = None,
            status: int = 200, ever_assigned: bool = False, notice: str = "", **extra: Any) -> Response:  # fmt: skip
    preview = gateway.preview(who.tenant, now_of(request), form.body(lenient=True))
    return render(
        request, "promotion.html", status, form=form, view=view, preview=preview, channels=gateway.CHANNELS,
        value_types=VALUE_TYPES, value_type_labels=VALUE_TYPE_LABELS, ever_assigned=ever_assigned, notice=notice,
        editable=(view is None or view.is_draft) and who.can(Role.MARKETER), **extra,
    )  # fmt: skip


@router.get("/promotions/figures")
async def figures(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    """Assigned and redeemed for the promotions of a list page, fetched after the page has rendered."""
    ids = [g for g in (parse_guid(v) for v in request.query_params.getlist("id")[:100]) if g is not None]
    async with reading(request) as conn:
        counts = await gateway.promotion_counts(conn, who.tenant, ids)
    return render(request, "_promotion_figures.html", ids=ids, counts=counts)


@router.get("/promotions/new")
async def new_promotion(request: Request, who: AdminContext = Depends(marketer)) -> Response:
    form = PromotionForm({"start_date": now_of(request).astimezone(who.tenant.tz).date().isoformat(),
                          "assigned_unit": "Days", "return_policy": "none"})  # fmt: skip
    return _editor(request, who, form)


@router.get("/promotions/preview")
async def live_preview(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    """The Customer preview region, re-rendered from the editor's current (unsaved) fields."""
    form = PromotionForm.from_form(request.query_params)  # type: ignore[arg-type]
    preview = gateway.preview(who.tenant, now_of(request), form.body(lenient=True))
    return render(request, "_preview.html", preview=preview)


async def _save(request: Request, who: AdminContext, pid: object | None) -> Response:
    form = PromotionForm.from_form(await form_of(request))
    action = str((await form_of(request)).get("action") or "save")
    body = form.validated()
    view = None
    if pid is not None:
        async with reading(request) as conn:
            view = await gateway.get_promotion(conn, who.tenant, now_of(request), pid)  # type: ignore[arg-type]
    if body is None:
        return _editor(request, who, form, view=view, status=400)
    try:
        async with writing(request) as conn:
            if pid is None:
                pid = await gateway.create_promotion(conn, who.tenant, now_of(request), body)
            else:
                await gateway.update_promotion(conn, who.tenant, now_of(request), pid, body)  # type: ignore[arg-type]
    except PromoflowError as exc:
        if exc.status == 404:
            raise
        form.service_error(exc, form.body())
        return _editor(request, who, form, view=view, status=exc.status if exc.status < 500 else 400)
    if action == "activate":
        return redirect(request, f"/admin/promotions/{pid}/activate")
    return redirect(request, f"/admin/promotions/{pid}?saved=1")


@router.post("/promotions")
async def create(request: Request, who: AdminContext = Depends(marketer)) -> Response:
    return await _save(request, who, None)


@router.get("/promotions/{promotion_id}")
async def promotion_page(
    promotion_id: str, request: Request, who: AdminContext = Depends(viewer)
) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    async with reading(request) as conn:
        view = await gateway.get_promotion(conn, who.tenant, now_of(request), pid)
        ever = await gateway.has_assignments(conn, pid)
        past, more = await history(conn, who.tenant, promotion_id=pid)
    notice = "Saved." if request.query_params.get("saved") else ""
    notice = {"activated": "Activated.", "deactivated": "Deactivated.", "duplicated": "This is the copy: a new draft."}.get(
        request.query_params.get("done", ""), notice)  # fmt: skip
    return _editor(
        request, who, PromotionForm.from_wire(view.wire), view=view, ever_assigned=ever, notice=notice,
        history=past, history_more=more, history_link=f"/admin/audit?promotion={pid}",
    )  # fmt: skip


@router.post("/promotions/{promotion_id}")
async def update(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    return await _save(request, who, guid_or_404(promotion_id, "promotion"))


@router.get("/promotions/{promotion_id}/activate")
async def confirm_activation(
    promotion_id: str, request: Request, who: AdminContext = Depends(marketer)
) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    async with reading(request) as conn:
        view = await gateway.get_promotion(conn, who.tenant, now_of(request), pid)
    return render(request, "activate.html", view=view, window=gateway.activation_window(view, who.tenant.tz))


@router.post("/promotions/{promotion_id}/activate")
async def activate(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    async with writing(request) as conn:
        await gateway.activate_promotion(conn, who.tenant, now_of(request), pid)
    return redirect(request, f"/admin/promotions/{pid}?done=activated")


@router.post("/promotions/{promotion_id}/deactivate")
async def deactivate(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    async with writing(request) as conn:
        await gateway.deactivate_promotion(conn, who.tenant, now_of(request), pid)
    return redirect(request, f"/admin/promotions/{pid}?done=deactivated")


@router.post("/promotions/{promotion_id}/duplicate")
async def duplicate(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    async with writing(request) as conn:
        new = await gateway.duplicate_promotion(conn, who.tenant, now_of(request), pid)
    return redirect(request, f"/admin/promotions/{new}?done=duplicated")


@router.post("/promotions/{promotion_id}/delete")
async def delete(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    pid = guid_or_404(promotion_id, "promotion")
    async with writing(request) as conn:
        await gateway.delete_promotion(conn, who.tenant, now_of(request), pid)
    return redirect(request, "/admin/promotions")
