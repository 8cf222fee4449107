"""Settings (admins only): the tenant's settings with inline errors, named API keys (created, used, rotated,
revoked, allow-listed), FTP credentials and users; every page and action per role, CSRF, another tenant's objects.
On SQLite and PostgreSQL (TestClient against the app in process, real database)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import pytest

from promoflow.server.db import Database
from promoflow.server.tenant.service import TenantService
from promoflow.server.transfer.accounts import verify_password
from tests.server.admin._helpers import contact, promotion, text_of
from tests.server.admin.conftest import Admin, Browser, create_user, sign_in

PAGES = ["/admin/settings", "/admin/settings/keys", "/admin/settings/ftp", "/admin/settings/users"]
SECRET = re.compile(r'id="secret-value" type="text" readonly value="([^"]+)"')


def _actions() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/admin/settings", {"reactivationLimit": "7"}),
        ("/admin/settings/keys", {"name": "till-x", "scope": "api"}),
        ("/admin/settings/keys/revoke", {"name": "default"}),
        ("/admin/settings/keys/rotate", {"name": "default"}),
        ("/admin/settings/keys/allow", {"name": "default", "allow": "10.0.0.0/8"}),
        ("/admin/settings/ftp/rotate", {}),
        ("/admin/settings/users", {"email": "someone-new@example.com", "role": "viewer"}),
        ("/admin/settings/users/withdraw", {"email": "someone-new@example.com"}),
        ("/admin/settings/users/role", {"email": "x@example.com", "role": "admin"}),
        ("/admin/settings/users/disable", {"email": "x@example.com"}),
        ("/admin/settings/users/enable", {"email": "x@example.com"}),
        ("/admin/settings/users/reset", {"email": "x@example.com"}),
        ("/admin/settings/users/remove", {"email": "x@example.com"}),
    ]


def _show(admin: Admin, name: str | None = None) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        db = Database(admin.api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.read() as conn:
                return await TenantService(admin.api.clock.now()).show(conn, name or admin.tenant["name"])
        finally:
            await db.dispose()

    return asyncio.run(run())


def _secret(html: str) -> str:
    m = SECRET.search(html)
    assert m, "no secret shown on the page"
    return m.group(1)


def _count(admin: Admin, key: str) -> int:
    return int(admin.api.client.get("/api/v2/contacts/count", headers={"apikey": key}).status_code)


# ------------------------------------------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ["viewer", "marketer"])
def test_only_admins_see_settings(admin: Admin, role: str) -> None:
    b = admin.browser(role)
    home = b.get("/admin/promotions")
    assert 'href="/admin/settings"' not in home.text
    for path in PAGES:
        r = b.get(path)
        assert r.status_code == 403, path
        assert "needs the admin role" in r.text
    before = _show(admin)
    for path, data in _actions():
        assert b.post(path, data).status_code == 403, path
    after = _show(admin)
    assert before == after


def test_admin_pages_render_and_settings_is_in_the_navigation(admin: Admin) -> None:
    b = admin.browser("admin")
    assert 'href="/admin/settings"' in b.get("/admin/promotions").text
    for path in PAGES:
        r = b.get(path)
        assert r.status_code == 200, path
        assert 'aria-current="page">Settings' in r.text
    assert "default" in b.get("/admin/settings/keys").text


def test_signed_out_goes_to_sign_in_and_a_post_without_csrf_is_refused(admin: Admin) -> None:
    anonymous = admin.api.client
    r = anonymous.get("/admin/settings/keys", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")
    b = admin.browser("admin")
    before = _show(admin)
    for path, data in _actions():
        r = b.post(path, data, csrf=False)
        assert r.status_code == 403, path
        assert "Form expired" in r.text
    assert _show(admin) == before


# ---------------------------------------------------------------------------------------------- general


def test_settings_are_saved_with_the_same_rules_as_tenant_set(admin: Admin) -> None:
    b = admin.browser("admin")
    page = b.get("/admin/settings").text
    for label in ("Time zone", "Currency", "Key attribute of Member contacts", "Custom key", "Reactivation limit",
                  "Rate limit (requests per second per key)", "Rate limit burst", "IP allow-list",
                  "Clock-skew tolerance (seconds)", "Keep processed upload files (days)"):  # fmt: skip
        assert f">{label}</label>" in page, label
    r = b.post("/admin/settings", {"timeZone": "Europe/Helsinki", "currency": "eur", "rateLimitPerSecond": "50",
                                   "rateLimitBurst": "80", "reactivationLimit": "5", "clockSkewSeconds": "60",
                                   "customKey": "externalId", "ipAllowList": "127.0.0.1, 10.0.0.0/8",
                                   "processedFileRetentionDays": "30"})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/admin/settings?saved=1"
    info = _show(admin)
    assert (info["timeZone"], info["currency"]) == ("Europe/Helsinki", "EUR")
    s = info["settings"]
    assert s["rateLimitPerSecond"] == 50 and s["rateLimitBurst"] == 80 and s["reactivationLimit"] == 5
    assert s["clockSkewSeconds"] == 60 and s["customKey"] == "externalId"
    assert s["ipAllowList"] == ["127.0.0.1/32", "10.0.0.0/8"] and s["processedFileRetentionDays"] == 30
    assert "Saved." in b.get("/admin/settings?saved=1").text
    # Empty optional settings go back to the server's default; the form shows them empty.
    r = b.post("/admin/settings", {"rateLimitPerSecond": "", "ipAllowList": ""})
    assert r.status_code == 303
    s = _show(admin)["settings"]
    assert "rateLimitPerSecond" not in s and "ipAllowList" not in s and s["rateLimitBurst"] == 80


def test_currency_and_time_zone_changes_ask_first_when_promotions_would_change(admin: Admin) -> None:
    """A new currency re-reads every MONEY value without its own, a new zone moves every validity day: with
    promotions not ended, the form says so and saves only when sent again with "I understand" ticked."""
    b = admin.browser("admin")
    promotion(admin.api, "Running", start="2026-03-01", end="2026-03-31")
    before = _show(admin)
    r = b.post(
        "/admin/settings", {"currency": "EUR", "timeZone": "America/New_York", "reactivationLimit": "4"}
    )
    assert r.status_code == 409
    text = text_of(r.text)
    assert "Nothing was saved yet." in text and "1 promotion not ended" in text
    assert "Currency → EUR" in text and "Time zone → America/New_York" in text
    assert 'value="America/New_York"' in r.text and 'name="confirm" value="yes"' in r.text
    assert _show(admin) == before
    r = b.post("/admin/settings", {"currency": "EUR", "timeZone": "America/New_York", "reactivationLimit": "4",
                                   "confirm": "yes"})  # fmt: skip
    assert r.status_code == 303
    info = _show(admin)
    assert (info["currency"], info["timeZone"], info["settings"]["reactivationLimit"]) == (
        "EUR",
        "America/New_York",
        4,
    )
    # Other settings never ask.
    assert b.post("/admin/settings", {"reactivationLimit": "5"}).status_code == 303


def test_wrong_settings_get_an_error_each_and_nothing_is_saved(admin: Admin) -> None:
    b = admin.browser("admin")
    before = _show(admin)
    r = b.post("/admin/settings", {"timeZone": "Mars/Olympus", "currency": "XYZ", "rateLimitBurst": "0",
                                   "clockSkewSeconds": "99999", "ipAllowList": "not-an-ip", "reactivationLimit": "9"})  # fmt: skip
    assert r.status_code == 400
    html = r.text
    assert "Nothing was saved: 5 settings need a change." in text_of(html)
    for field_id, words in [("s-timeZone", "unknown time zone 'Mars/Olympus'"),
                            ("s-currency", "not an ISO 4217 currency code"),
                            ("s-rateLimitBurst", "a whole number of at least 1"),
                            ("s-clockSkewSeconds", "a whole number of seconds from 0 to 3600"),
                            ("s-ipAllowList", "not an IP address or network")]:  # fmt: skip
        assert f'id="{field_id}-error">' in html, field_id
        error = html.split(f'id="{field_id}-error">', 1)[1].split("<", 1)[0]
        assert words in error.replace("&#39;", "'"), (field_id, error)
        assert re.search(rf'id="{field_id}"[^>]*aria-invalid="true"', html), field_id
    assert 'value="Mars/Olympus"' in html  # what was typed stays in the form
    assert _show(admin) == before  # the valid reactivationLimit=9 was not saved either


def test_a_contact_key_attribute_cannot_change_once_contacts_exist(admin: Admin) -> None:
    b = admin.browser("admin")
    assert b.post("/admin/settings", {"contactKeys.Contact": "mobilePhone"}).status_code == 303
    assert _show(admin)["settings"]["contactKeys"]["Contact"] == "mobilePhone"
    contact(admin.api, email="m@example.com", contactType="Member")
    r = b.post("/admin/settings", {"contactKeys.Member": "externalId"})
    assert r.status_code == 400
    assert "the key attribute can change only while it has none" in r.text
    assert _show(admin)["settings"]["contactKeys"]["Member"] == "email"


# --------------------------------------------------------------------------------------------- API keys


def test_a_named_key_is_created_used_rotated_and_revoked(admin: Admin) -> None:
    b = admin.browser("admin")
    r = b.post("/admin/settings/keys", {"name": "store 12", "allow": "", "scope": "api"})
    assert r.status_code == 200
    secret = _secret(r.text)
    assert "shown only this once" in r.text and 'data-copy="secret-value"' in r.text
    assert _count(admin, secret) == 200
    listing = b.get("/admin/settings/keys").text
    assert "store 12" in listing and secret not in listing and secret[:10] in listing
    # Rotate: the old secret stops at once (this process forgets it), the new one works; the others are untouched.
    r = b.post("/admin/settings/keys/rotate", {"name": "store 12", "prefix": secret[:10]})
    assert r.status_code == 200
    rotated = _secret(r.text)
    assert rotated != secret
    assert _count(admin, secret) == 401 and _count(admin, rotated) == 200
    # The same form sent again (a reload of the result page) names the old secret: nothing is rotated, so the
    # secret just handed out keeps working.
    again = b.post("/admin/settings/keys/rotate", {"name": "store 12", "prefix": secret[:10]})
    assert again.status_code == 409 and f"its secret now starts with {rotated[:10]}" in again.text
    assert rotated not in again.text and _count(admin, rotated) == 200
    assert _count(admin, admin.tenant["apiKey"]) == 200
    # Revoke.
    r = b.post("/admin/settings/keys/revoke", {"name": "store 12"})
    assert r.status_code == 303
    assert "Key store 12 revoked." in b.get(r.headers["location"]).text
    assert _count(admin, rotated) == 401
    assert _count(admin, admin.tenant["apiKey"]) == 200
    keys = {k["name"]: k for k in _show(admin)["apiKeys"]}
    assert keys["store 12"]["revokedOn"] and keys["store 12"]["rotatedOn"]
    # A revoked key's name can be used again.
    assert b.post("/admin/settings/keys", {"name": "store 12", "scope": "api"}).status_code == 200


def test_key_form_errors_are_inline(admin: Admin) -> None:
    b = admin.browser("admin")
    for data, status, where, words in [
        ({"name": "", "scope": "api"}, 400, "key-name", "not a valid API key name"),
        ({"name": "a/b", "scope": "api"}, 400, "key-name", "not a valid API key name"),
        ({"name": "default", "scope": "api"}, 409, "key-name", "has an active API key named"),
        (
            {"name": "ok", "allow": "300.1.1.1", "scope": "api"},
            400,
            "key-allow",
            "not an IP address or network",
        ),
        ({"name": "ok", "scope": "root"}, 400, "key-scope", "one of api, admin"),
    ]:
        r = b.post("/admin/settings/keys", data)
        assert r.status_code == status, data
        assert f'id="{where}-error">' in r.text, data
        assert words in r.text.replace("&#39;", "'"), data
    assert [k["name"] for k in _show(admin)["apiKeys"]] == ["default"]


def test_a_keys_allow_list_applies_in_addition_to_the_tenants(admin: Admin) -> None:
    b = admin.browser("admin")
    key = _secret(b.post("/admin/settings/keys", {"name": "office", "scope": "api"}).text)
    assert _count(admin, key) == 200
    # The test client's address is "testclient" (not an IP): any allow-list refuses it.
    r = b.post("/admin/settings/keys/allow", {"name": "office", "allow": "10.0.0.0/8"})
    assert r.status_code == 200 and "may now be used from 10.0.0.0/8" in r.text
    assert _count(admin, key) == 403
    assert _count(admin, admin.tenant["apiKey"]) == 200
    r = b.post("/admin/settings/keys/allow", {"name": "office", "allow": "nonsense"})
    assert r.status_code == 400 and "not an IP address or network" in r.text
    assert b.post("/admin/settings/keys/allow", {"name": "office", "allow": ""}).status_code == 200
    assert _count(admin, key) == 200


def test_another_tenants_keys_and_users_are_not_found(admin: Admin) -> None:
    other = admin.api.new_tenant()
    other_email, _ = create_user(admin.api.settings, other["name"], "viewer")
    b = admin.browser("admin")

    async def add() -> None:
        db = Database(admin.api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                svc = TenantService(admin.api.clock.now())
                await svc.add_key(conn, (await svc.by_name(conn, other["name"])).id, label="theirs")
        finally:
            await db.dispose()

    asyncio.run(add())
    for path in ("/admin/settings/keys/revoke", "/admin/settings/keys/rotate"):
        r = b.post(path, {"name": "theirs"})
        assert r.status_code == 404, path
    for path in ("/admin/settings/users/role", "/admin/settings/users/disable", "/admin/settings/users/reset",
                 "/admin/settings/users/remove"):  # fmt: skip
        assert b.post(path, {"email": other_email, "role": "admin"}).status_code == 404, path
    assert _count(admin, other["apiKey"]) == 200
    assert other_email not in b.get("/admin/settings/users").text


# -------------------------------------------------------------------------------------------------- FTP


def test_the_ftp_password_is_replaced_and_shown_once(admin: Admin) -> None:
    b = admin.browser("admin")
    page = b.get("/admin/settings/ftp").text
    assert admin.tenant["name"] in page and "Replace FTP password" in page
    r = b.post("/admin/settings/ftp/rotate")
    assert r.status_code == 200
    password = _secret(r.text)
    assert password != admin.tenant["ftpPassword"]

    async def stored() -> str:
        db = Database(admin.api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.read() as conn:
                row = await TenantService(admin.api.clock.now()).by_name(conn, admin.tenant["name"])
                return str(row.ftp_password_hash)
        finally:
            await db.dispose()

    hashed = asyncio.run(stored())
    assert verify_password(password, hashed) and not verify_password(admin.tenant["ftpPassword"], hashed)
    assert password not in b.get("/admin/settings/ftp").text


# ------------------------------------------------------------------------------------------------ users


def _fresh(admin: Admin) -> Any:
    from starlette.testclient import TestClient

    client = TestClient(admin.api.client.app, base_url="http://testserver")
    client.__enter__()
    admin.clients.append(client)
    return client


def test_an_admin_invites_users_and_they_sign_in_with_the_code_shown_once(admin: Admin) -> None:
    """(What the invitation does for an address that has an account, and what it hides: test_invitations.)"""
    b = admin.browser("admin")
    person = f"new.person-{uuid.uuid4().hex[:6]}@example.com"  # (users are global: one per test)
    r = b.post("/admin/settings/users", {"email": person.replace("new", "New"), "role": "marketer"})
    assert r.status_code == 200 and "is invited as marketer" in r.text
    code = _secret(r.text)
    assert sign_in(_fresh(admin), person, "", code).status_code == 303
    assert person in b.get("/admin/settings/users").text
    # Errors, inline.
    r = b.post("/admin/settings/users", {"email": "not an email", "role": "viewer"})
    assert r.status_code == 400 and 'id="user-email-error"' in r.text
    r = b.post("/admin/settings/users", {"email": "ok@example.com", "role": "owner"})
    assert r.status_code == 400 and 'id="user-role-error"' in r.text and "unknown role" in r.text
    r = b.post("/admin/settings/users", {"email": person, "role": "viewer"})
    assert r.status_code == 409 and "already a marketer" in r.text


def _member_role(b: Browser, email: str) -> str:
    html = b.get("/admin/settings/users").text
    row = html.split(email, 1)[1].split("</tr>", 1)[0]
    m = re.search(r'<option value="(\w+)" selected>', row)
    assert m, row
    return m.group(1)


def test_role_disable_enable_reset_and_remove(admin: Admin) -> None:
    b = admin.browser("admin")
    email, password = admin.user("viewer")
    assert password is not None
    them = _fresh(admin)
    assert sign_in(them, email, password).status_code == 303
    r = b.post("/admin/settings/users/role", {"email": email, "role": "marketer"})
    assert r.status_code == 303 and _member_role(b, email) == "marketer"
    assert "is now marketer" in b.get(r.headers["location"]).text
    # Disable: their session ends at once, and they cannot sign in.
    assert b.post("/admin/settings/users/disable", {"email": email}).status_code == 303
    assert them.get("/admin/promotions", follow_redirects=False).status_code == 303
    assert sign_in(_fresh(admin), email, password).status_code == 400
    assert b.post("/admin/settings/users/enable", {"email": email}).status_code == 303
    # Reset: a new password, shown once; the old one stops working.
    r = b.post("/admin/settings/users/reset", {"email": email})
    assert r.status_code == 200
    new_password = _secret(r.text)
    assert sign_in(_fresh(admin), email, password).status_code == 400
    assert sign_in(_fresh(admin), email, new_password).status_code == 303
    # Remove from the tenant.
    assert b.post("/admin/settings/users/remove", {"email": email}).status_code == 303
    assert email not in b.get("/admin/settings/users").text


def test_an_admin_cannot_change_or_disable_themselves(admin: Admin) -> None:
    b = admin.browser("admin")
    page = b.get("/admin/settings/users").text
    assert "Your own account" in page
    for path, data in [("/admin/settings/users/role", {"role": "viewer"}), ("/admin/settings/users/disable", {}),
                       ("/admin/settings/users/reset", {}), ("/admin/settings/users/remove", {})]:  # fmt: skip
        r = b.post(path, {"email": b.email, **data})
        assert r.status_code == 400, path
        assert "cannot change, disable, remove or reset your own account" in r.text
    assert b.get("/admin/settings").status_code == 200  # still an admin, still signed in


def test_a_person_of_a_tenant_the_admin_does_not_administer_can_only_be_removed(admin: Admin) -> None:
    other = admin.api.new_tenant(name=f"zz-{uuid.uuid4().hex[:8]}")  # after this admin's tenant by name
    email, password = create_user(admin.api.settings, other["name"], "admin")
    create_user(admin.api.settings, admin.tenant["name"], "viewer", email)
    b = admin.browser("admin")
    row = b.get("/admin/settings/users").text.split(email, 1)[1].split("</tr>", 1)[0]
    # The other tenant is not named: its name is its own business (the admin is not in it).
    assert "also in 1 other tenant" in row and other["name"] not in row
    assert "Disable" not in row and "Reset password" not in row
    for path in ("/admin/settings/users/disable", "/admin/settings/users/reset"):
        r = b.post(path, {"email": email})
        assert r.status_code == 409, path
        assert "also works for 1 other tenant, which you do not administer" in r.text
        assert other["name"] not in r.text  # the refusal does not name it either
    assert password is not None
    person = _fresh(admin)
    assert sign_in(person, email, password).status_code == 303  # still works in their other tenant
    # and lands there, the tenant they were in first, whatever another tenant's admin did since
    assert f" selected>{other['name']} (admin)</option>" in person.get("/admin/promotions").text
    assert b.post("/admin/settings/users/remove", {"email": email}).status_code == 303


# -------------------------------------------------------------------------------------------- audit log


def test_every_settings_action_is_in_the_audit_log_with_its_user(admin: Admin) -> None:
    """Each change made in Settings is recorded in its own transaction, named by the signed-in admin; a form
    refused for a wrong value records nothing."""
    from tests.server.audit._support import changes_of

    b = admin.browser("admin")
    email, _ = admin.user("viewer")
    start = len(changes_of(admin.api))
    assert b.post("/admin/settings", {"reactivationLimit": "4", "timeZone": "Mars/Base"}).status_code == 400
    assert changes_of(admin.api, start) == []
    assert b.post("/admin/settings", {"reactivationLimit": "4"}).status_code == 303
    b.post("/admin/settings/keys", {"name": "till 3", "allow": "10.0.0.0/8", "scope": "api"})
    b.post("/admin/settings/keys/allow", {"name": "till 3", "allow": "10.1.0.0/16"})
    b.post("/admin/settings/keys/rotate", {"name": "till 3"})
    b.post("/admin/settings/keys/revoke", {"name": "till 3"})
    b.post("/admin/settings/ftp/rotate")
    b.post("/admin/settings/users", {"email": "audited@example.com", "role": "viewer"})
    b.post("/admin/settings/users/role", {"email": email, "role": "marketer"})
    b.post("/admin/settings/users/disable", {"email": email})
    b.post("/admin/settings/users/reset", {"email": email})
    got = changes_of(admin.api, start)
    assert [e["action"] for e in got] == [
        "settings.update", "api_key.create", "api_key.allow_list", "api_key.rotate", "api_key.revoke",
        "ftp.rotate", "user.invite", "user.role", "user.disable", "user.reset",
    ]  # fmt: skip
    assert {(e["actor_kind"], e["actor"]) for e in got} == {("user", b.email)}
    settings, created, allow, rotated, revoked = got[:5]
    assert settings["before"] == {"reactivationLimit": 3} and settings["after"] == {"reactivationLimit": 4}
    assert created["after"]["name"] == "till 3" and created["after"]["ipAllowList"] == "10.0.0.0/8"
    assert allow["after"] == {"ipAllowList": "10.1.0.0/16"}
    assert rotated["before"]["prefix"] != rotated["after"]["prefix"]
    assert revoked["after"] == {"revoked": True} and created["object_id"] == revoked["object_id"]
    secrets_seen = json.dumps([e["after"] for e in got], default=str)
    assert "pf_" not in secrets_seen.replace(created["after"]["prefix"], "").replace(
        rotated["after"]["prefix"], ""
    )
    # On the page, what an edit's "before" names only to say what was changed is context, not a value erased.
    page = text_of(b.get("/admin/audit", params={"action": "api_key.revoke"}).text)
    assert "name : till 3" in page and "revoked : false → true" in page.lower() and "till 3 → —" not in page


def test_actions_that_cannot_be_undone_ask_first(admin: Admin) -> None:
    """Revoke, rotate, replace the FTP password, disable, reset, remove, deactivate, delete: each form carries the
    question `admin-confirm.js` asks before sending it (the browser test answers one), and every page loads it."""
    b = admin.browser("admin")
    b.post("/admin/settings/keys", {"name": "till 9", "allow": "", "scope": "api"})
    admin.user("viewer", email="v9@example.com")
    pages = {
        "/admin/settings/keys": ("/admin/settings/keys/revoke", "/admin/settings/keys/rotate"),
        "/admin/settings/ftp": ("/admin/settings/ftp/rotate",),
        "/admin/settings/users": tuple(f"/admin/settings/users/{a}" for a in ("disable", "reset", "remove")),
    }
    for path, actions in pages.items():
        text = b.get(path).text
        assert '<script src="/admin/static/admin-confirm.js" defer></script>' in text
        for action in actions:
            form = text.split(f'action="{action}"', 1)[1].split(">", 1)[0]
            assert 'data-confirm="' in form, action
    assert b.get("/admin/static/admin-confirm.js").status_code == 200
