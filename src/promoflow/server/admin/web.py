"""The web edge of the admin UI: templates, security headers, who is signed in, roles, CSRF, and HTML errors.

Every admin route is an ``AdminRoute``: a `PromoflowError` from a service becomes an HTML page with the same
status (another tenant's object is simply not found: 404), a missing session becomes a redirect to the sign-in
page (or ``HX-Redirect`` for htmx requests), and a refused role a 403 page.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ...wire.engage import is_web_url
from ..exceptions import PromoflowError
from ..http.edge import AppState, state_of
from .gateway import local_time_text
from .sessions import AdminContext, SessionStore
from .users import Role

HERE = Path(__file__).parent
SESSION_COOKIE = "pf_session"
LOGIN_CSRF_COOKIE = "pf_login_csrf"
MAX_FORM_BYTES = 16 * 1024 * 1024  # a pasted list of 100,000 contact keys is ~3 MB

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def web_url(value: object) -> str | None:
    """``{{ link|web_url }}``: a stored address a page may link or load, or None. The API's rule (`is_web_url`),
    applied again on the way out: a row stored before the API refused other schemes is never made a live
    ``javascript:`` link or a ``data:`` image."""
    text = str(value or "")
    return text if is_web_url(text) else None


templates.filters["web_url"] = web_url


@pass_context
def local_time(context: Context, at: datetime | str | None) -> Markup:
    """``{{ at|local_time }}``: every moment a page shows (an instant or the API's ISO text), in the signed-in
    tenant's zone, named — '2026-03-11 13:00 Europe/Stockholm' — in a ``<time>`` carrying the full ISO 8601."""
    if at is None or at == "":
        return Markup("")
    exact = at if isinstance(at, str) else at.isoformat()
    return Markup('<time datetime="{}">{}</time>').format(
        exact, local_time_text(at, context["who"].tenant.tz)
    )


templates.filters["local_time"] = local_time


class LoginRequired(Exception):
    pass


class RoleRequired(Exception):
    def __init__(self, needed: Role) -> None:
        super().__init__(needed.value)
        self.needed = needed


class CsrfRefused(Exception):
    pass


class FormTooLarge(Exception):
    pass


def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    who: AdminContext | None = getattr(request.state, "admin", None)
    html = templates.get_template(name).render(request=request, who=who, Role=Role, **values)
    return HTMLResponse(html, status, headers=SECURITY_HEADERS)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def redirect(request: Request, url: str) -> Response:
    """After a successful POST: a normal 303, or for htmx an HX-Redirect the browser follows."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url, **SECURITY_HEADERS})
    return RedirectResponse(url, 303, headers=SECURITY_HEADERS)


def is_https(request: Request) -> bool:
    st = state_of(request)
    if request.url.scheme == "https":
        return True
    if st.settings.admin_trust_forwarded_proto:
        return request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() == "https"
    return False


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/admin", httponly=True, samesite="lax", secure=is_https(request)
    )


def _error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", status, title=title, message=message)


class AdminRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                url = "/admin/login" + (f"?next={quote(target)}" if request.method == "GET" else "")
                if is_htmx(request):
                    return Response(status_code=204, headers={"HX-Redirect": url})
                return RedirectResponse(url, 303)
            except RoleRequired as exc:
                return _error_page(request, 403, "Not allowed",
                                   f"This needs the {exc.needed.value} role in this tenant; ask an admin.")  # fmt: skip
            except CsrfRefused:
                return _error_page(request, 403, "Form expired",
                                   "The form was missing its security token or it did not match. Reload the page "
                                   "and try again.")  # fmt: skip
            except FormTooLarge:
                return _error_page(request, 413, "Too large", "The form or file is larger than 16 MB.")
            except PromoflowError as exc:
                title = {404: "Not found", 409: "Not possible now"}.get(exc.status, "Something is not right")
                return _error_page(request, exc.status if exc.status < 500 else 500, title, exc.message)
            finally:
                form = getattr(request.state, "form", None)
                if form is not None:
                    await form.close()  # uploaded files are spooled to temporary files

        return run


async def form_of(request: Request) -> FormData:
    """The request's form, read once with the admin UI's limits (later calls get the same object)."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_FORM_BYTES:
        raise FormTooLarge()
    form = await request.form(max_files=2, max_fields=2000, max_part_size=MAX_FORM_BYTES)
    request.state.form = form
    return form


async def current_admin(request: Request) -> AdminContext:
    """The signed-in user (sessions are checked on every request, so a revoked one stops at once)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired()
    st: AppState = state_of(request)
    store = SessionStore(st.clock.now(), timedelta(minutes=st.settings.admin_session_idle_minutes))
    async with st.db.read() as conn:
        found = await store.load(conn, token)
    if found is None:
        raise LoginRequired()
    who, stale = found
    if stale:
        async with st.db.write() as conn:
            await store.touch(conn, who.session_id)
    request.state.admin = who
    if request.method not in ("GET", "HEAD"):
        await check_csrf(request, who.csrf_token)
    return who


async def check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await form_of(request)).get("csrf_token")
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()


def require(role: Role) -> Callable[..., Coroutine[Any, Any, AdminContext]]:
    """A dependency: the signed-in user, refused unless their role in this tenant includes ``role``."""

    async def dep(who: AdminContext = Depends(current_admin)) -> AdminContext:
        if not who.can(role):
            raise RoleRequired(role)
        return who

    return dep


viewer = require(Role.VIEWER)
marketer = require(Role.MARKETER)
admin = require(Role.ADMIN)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
