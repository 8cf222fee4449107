"""Sign-in, sessions, cookies, CSRF, throttling and tenants: the admin UI's security edge."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from promoflow.server.admin.sessions import MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS
from promoflow.server.http.app import create_app
from tests.conftest import make_tenant
from tests.server.admin.conftest import Admin, create_user, csrf_of, sign_in


def test_the_sign_in_page_has_labelled_email_password_and_sign_in(admin: Admin) -> None:
    html = admin.api.client.get("/admin/login").text
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert '<button type="submit">Sign in</button>' in html


def test_signing_in_sets_an_httponly_lax_session_cookie_and_opens_the_page_asked_for(admin: Admin) -> None:
    email, password = admin.user("viewer")
    client = admin.api.client
    page = client.get("/admin/login?next=/admin/contacts")
    r = client.post("/admin/login", data={"email": email.upper(), "password": password,
                                          "csrf_token": csrf_of(page.text), "next": "/admin/contacts"},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/admin/contacts"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("pf_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert client.get("/admin/contacts").status_code == 200


def test_the_cookie_is_secure_over_https_and_behind_a_proxy_only_when_opted_in(admin: Admin) -> None:
    email, password = admin.user("viewer")

    def cookie(client: TestClient, **headers: str) -> str:
        page = client.get("/admin/login")
        r = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
                        headers=headers, follow_redirects=False)  # fmt: skip
        assert r.status_code == 303
        return next(
            v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("pf_session=")
        )

    app = admin.api.client.app
    with TestClient(app, base_url="https://testserver") as https:
        assert "Secure" in cookie(https)
    with TestClient(app) as plain:
        assert "Secure" not in cookie(plain, **{"X-Forwarded-Proto": "https"})  # not trusted by default
    settings = admin.api.settings.model_copy(update={"admin_trust_forwarded_proto": True})
    with TestClient(create_app(settings, clock=admin.api.clock, run_worker=False)) as proxied:
        assert "Secure" in cookie(proxied, **{"X-Forwarded-Proto": "https"})


def test_a_wrong_password_or_unknown_email_is_refused_alike(admin: Admin) -> None:
    email, _ = admin.user("viewer")
    for who in (email, "nobody@example.com"):
        page = admin.api.client.get("/admin/login")
        r = admin.api.client.post("/admin/login", data={"email": who, "password": "wrong-password",
                                                         "csrf_token": csrf_of(page.text)})  # fmt: skip
        assert r.status_code == 400
        assert "The email or password is not right" in r.text
        assert "pf_session" not in r.headers.get("set-cookie", "")


def test_a_sign_in_without_its_form_token_is_refused(admin: Admin) -> None:
    email, password = admin.user("viewer")
    with TestClient(admin.api.client.app) as fresh:
        r = fresh.post("/admin/login", data={"email": email, "password": password}, follow_redirects=False)
    assert r.status_code == 403
    assert "pf_session" not in r.headers.get("set-cookie", "")


def _fail(client: TestClient, email: str) -> Any:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login", data={"email": email, "password": "nope", "csrf_token": csrf_of(page.text)}
    )


def test_sign_in_is_throttled_per_account_even_for_the_right_password(admin: Admin) -> None:
    email, password = admin.user("viewer")
    client = admin.api.client
    for _ in range(MAX_FAILURES_PER_ACCOUNT):
        assert _fail(client, email).status_code == 400
    r = sign_in(client, email, password)
    assert r.status_code == 429
    assert "Too many failed sign-in attempts" in r.text
    admin.api.clock.advance(__import__("datetime").timedelta(minutes=16))
    assert sign_in(client, email, password).status_code == 303


def test_sign_in_is_throttled_per_address_across_accounts(admin: Admin) -> None:
    email, password = admin.user("viewer")
    client = admin.api.client
    # Other tests' failures from the same test address would count too: use a window of our own.
    admin.api.clock.advance(__import__("datetime").timedelta(days=1))
    for i in range(MAX_FAILURES_PER_ADDRESS):
        assert _fail(client, f"guess{i}-{email}").status_code in (400, 429)
    assert sign_in(client, email, password).status_code == 429


def test_signing_out_ends_the_session_on_the_server(admin: Admin) -> None:
    b = admin.browser("viewer")
    token = b.client.cookies.get("pf_session")
    assert b.post("/admin/logout").status_code == 303
    with TestClient(admin.api.client.app) as other:
        other.cookies.set("pf_session", token, path="/admin")
        r = other.get("/admin/promotions", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")


def test_disabling_a_user_ends_their_sessions_at_once(admin: Admin) -> None:
    import asyncio
    from datetime import UTC, datetime

    from promoflow.server.admin.users import UserService
    from promoflow.server.db import Database

    b = admin.browser("marketer")
    assert b.get("/admin/promotions").status_code == 200

    async def disable() -> None:
        db = Database(admin.api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                await UserService(datetime.now(UTC)).disable(conn, b.email)
        finally:
            await db.dispose()

    asyncio.run(disable())
    assert b.get("/admin/promotions", follow_redirects=False).status_code == 303


def test_pages_need_a_session_and_htmx_requests_are_sent_to_sign_in(admin: Admin) -> None:
    with TestClient(admin.api.client.app) as anon:
        r = anon.get("/admin/contacts?q=x", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/admin/login?next=/admin/contacts%3Fq%3Dx"
        r = anon.get("/admin/contacts", headers={"HX-Request": "true"}, follow_redirects=False)
        assert r.headers["HX-Redirect"].startswith("/admin/login")


def test_next_never_leaves_the_admin_ui(admin: Admin) -> None:
    email, password = admin.user("viewer")
    client = admin.api.client
    page = client.get("/admin/login")
    r = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text),
                                          "next": "//evil.example/admin"}, follow_redirects=False)  # fmt: skip
    assert r.headers["location"] == "/admin/promotions"


def test_a_user_of_two_tenants_switches_between_them(admin: Admin) -> None:
    other = make_tenant(admin.api.settings)
    b = admin.browser("viewer")
    create_user(admin.api.settings, other["name"], "marketer", b.email)
    page = b.get("/admin/promotions").text
    assert "Switch tenant" in page and other["name"] in page
    assert b.get("/admin/promotions/new").status_code == 403  # viewer in the first tenant
    assert b.post("/admin/tenant", {"tenant_id": other["tenantId"]}).status_code == 303
    assert b.get("/admin/promotions/new").status_code == 200  # marketer in the other
    stranger = make_tenant(admin.api.settings)
    assert b.post("/admin/tenant", {"tenant_id": stranger["tenantId"]}).status_code == 404


@pytest.mark.parametrize("header", [{"X-CSRF-Token": "wrong"}, {}])
def test_htmx_posts_need_the_session_csrf_header(admin: Admin, header: dict[str, str]) -> None:
    b = admin.browser("marketer")
    r = b.client.post("/admin/logout", headers={"HX-Request": "true", **header}, follow_redirects=False)
    assert r.status_code == 403
    r = b.client.post(
        "/admin/logout", headers={"HX-Request": "true", "X-CSRF-Token": b.csrf}, follow_redirects=False
    )
    assert r.status_code == 204 and r.headers["HX-Redirect"] == "/admin/login"
