"""Sign-in, sign-out, switching tenant, and the vendored static files."""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from fastapi import Depends, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from ..exceptions import NotFoundError
from ..http.edge import state_of
from .common import admin_router, client_address, guid_or_404, now_of, writing
from .sessions import AdminContext, SessionRefused, SessionStore
from .web import (
    HERE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    current_admin,
    form_of,
    new_login_token,
    redirect,
    render,
    set_cookie,
)

router = admin_router()

STATIC = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}
_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png", ".svg": "image/svg+xml"}


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    path = STATIC.get(name)
    if path is None:
        raise NotFoundError("no such file")
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})  # fmt: skip


def _safe_next(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    if text.startswith("/admin") and not text.startswith("//") and "\\" not in text:
        return text
    return "/admin/promotions"


def _login_page(
    request: Request, status: int = 200, *, error: str = "", email: str = "", nxt: str = ""
) -> Response:
    token = new_login_token()
    response = render(request, "login.html", status, error=error, email=email, next=nxt, login_token=token)
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("")
async def home() -> Response:
    return RedirectResponse("/admin/promotions", 303)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request, nxt=_safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    code = str(form.get("code") or "")[:200]
    nxt = _safe_next(form.get("next"))
    sent, cookie = str(form.get("csrf_token") or ""), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        return _login_page(
            request, 403, error="The sign-in form expired. Please try again.", email=email, nxt=nxt
        )
    if not email.strip() or not (password or code.strip()):
        return _login_page(request, 400, error="Enter your email and password.", email=email, nxt=nxt)
    st = state_of(request)
    store = SessionStore(now_of(request), timedelta(minutes=st.settings.admin_session_idle_minutes))
    try:
        async with writing(request) as conn:
            opened = await store.sign_in(conn, email, password, client_address(request),
                                         request.headers.get("user-agent"), code)  # fmt: skip
    except SessionRefused as exc:
        return _login_page(request, exc.status, error=exc.message, email=email, nxt=nxt)
    if opened is None:
        error = "The email or password is not right, or the account is disabled."
        if code.strip():
            error = ("The email, password or invitation code is not right (a code works once, for 7 days), or the "
                     "account is disabled.")  # fmt: skip
        return _login_page(request, 400, error=error, email=email, nxt=nxt)
    token = opened[0]
    response = RedirectResponse(nxt, 303)
    set_cookie(request, response, SESSION_COOKIE, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


@router.post("/logout")
async def logout(request: Request, who: AdminContext = Depends(current_admin)) -> Response:
    st = state_of(request)
    async with writing(request) as conn:
        await SessionStore(
            now_of(request), timedelta(minutes=st.settings.admin_session_idle_minutes)
        ).sign_out(conn, who.session_id)
    response = redirect(request, "/admin/login")
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@router.post("/tenant")
async def switch_tenant(request: Request, who: AdminContext = Depends(current_admin)) -> Response:
    form = await form_of(request)
    tid = guid_or_404(str(form.get("tenant_id") or ""), "tenant")
    st = state_of(request)
    async with writing(request) as conn:
        ok = await SessionStore(
            now_of(request), timedelta(minutes=st.settings.admin_session_idle_minutes)
        ).switch_tenant(conn, who, tid)
    if not ok:
        raise NotFoundError("no such tenant")
    return redirect(request, "/admin/promotions")
