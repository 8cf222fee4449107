"""Adding a person on the Users page is an invitation they accept: the answer is the same whether or not the address
already has an account (so one tenant's admin learns nothing about other tenants), an existing account is
neither joined without its owner's consent nor has its password shown or changed, and joining takes the code the
admin handed over. On SQLite and PostgreSQL (TestClient against the app in process, real database)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from promoflow.server.admin.users import UserService
from promoflow.server.db import Database, make_sync_engine
from promoflow.server.models import admin_user
from tests.server.admin._helpers import text_of
from tests.server.admin.conftest import Admin, create_user, sign_in
from tests.server.admin.test_settings import _fresh, _secret
from tests.server.audit._support import changes_of


def _invite(b: Any, email: str, role: str = "viewer") -> tuple[Any, str]:
    r = b.post("/admin/settings/users", {"email": email, "role": role})
    assert r.status_code == 200, text_of(r.text)[:800]
    return r, _secret(r.text)


def _answer(r: Any, email: str, code: str) -> str:
    """What the page says about the invitation just made, the address and the code taken out."""
    shown = r.text.split('<article class="shown-once"', 1)[1].split("</article>", 1)[0]
    return text_of(shown).replace(email, "EMAIL").replace(code, "CODE")


def _memberships(admin: Admin, email: str) -> dict[str, str]:
    async def run() -> list[dict[str, Any]]:
        db = Database(admin.api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.read() as conn:
                return await UserService(admin.api.clock.now()).list(conn)
        finally:
            await db.dispose()

    return {r["tenant"]: r["role"] for r in asyncio.run(run()) if r["email"] == email}


def _password_hash(admin: Admin, email: str) -> str:
    engine = make_sync_engine(admin.api.settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            return str(conn.scalar(select(admin_user.c.password_hash).where(admin_user.c.email == email)))
    finally:
        engine.dispose()


def _tenant_shown(client: Any) -> str:
    """The tenant the signed-in person is working in, as the page header names it."""
    page = client.get("/admin/promotions").text
    m = re.search(r'<option value="[^"]+" selected>([^<]+)</option>', page) or re.search(
        r"<span>([^<]+ · \w+)</span>", page
    )
    assert m, text_of(page)[:300]
    return m.group(1)


def test_adding_a_person_answers_alike_whether_or_not_they_have_an_account(admin: Admin) -> None:
    elsewhere = admin.api.new_tenant(name=f"acme-secret-{uuid.uuid4().hex[:6]}")
    known, known_password = create_user(admin.api.settings, elsewhere["name"], "admin")
    assert known_password is not None
    known_hash = _password_hash(admin, known)
    fresh = f"brand-new-{uuid.uuid4().hex[:6]}@example.com"
    b = admin.browser("admin")
    r_fresh, code_fresh = _invite(b, fresh)
    r_known, code_known = _invite(b, known)
    # One answer for both: the address and the code aside, not a character differs (the list below it grows).
    assert _answer(r_fresh, fresh, code_fresh) == _answer(r_known, known, code_known)
    assert elsewhere["name"] not in r_known.text
    # The account is untouched and joined nothing: its password stands, the code opens nothing.
    assert _memberships(admin, known) == {elsewhere["name"]: "admin"}
    assert _password_hash(admin, known) == known_hash
    assert sign_in(_fresh(admin), known, code_known).status_code == 400
    assert sign_in(_fresh(admin), known, "", code_known).status_code == 400
    assert sign_in(_fresh(admin), known, known_password).status_code == 303
    # The list shows both as invitations, alike; neither is a member yet.
    page = b.get("/admin/settings/users").text
    invited = page.split('id="invitations-heading"', 1)[1]
    members = page.split('id="invitations-heading"', 1)[0]
    assert fresh in invited and known in invited and fresh not in members and known not in members
    assert elsewhere["name"] not in page and "other tenant" not in invited
    # Their own tenant's admin still manages them (being invited elsewhere takes nothing away).
    theirs = admin.browser("admin", elsewhere)
    assert theirs.post("/admin/settings/users/reset", {"email": known}).status_code == 200
    # A member of this tenant is not invited again.
    r = b.post("/admin/settings/users", {"email": b.email, "role": "viewer"})
    assert r.status_code == 409 and "already" in r.text


def test_a_new_person_joins_with_the_code_which_stays_their_password(admin: Admin) -> None:
    b = admin.browser("admin")
    person_email = f"new.person-{uuid.uuid4().hex[:6]}@example.com"  # (users are global: one per test)
    _, code = _invite(b, person_email.replace("new.person", "New.Person"), "marketer")
    start = len(changes_of(admin.api))
    person = _fresh(admin)
    assert sign_in(person, person_email, "", code).status_code == 303
    assert _tenant_shown(person) == f"{admin.tenant['name']} · marketer"
    assert _memberships(admin, person_email) == {admin.tenant["name"]: "marketer"}
    # From now on the code is their password (typed as the password, as a generated one always was).
    assert sign_in(_fresh(admin), person_email, code).status_code == 303
    assert sign_in(_fresh(admin), person_email, "", code).status_code == 400  # used: no invitation
    page = b.get("/admin/settings/users").text
    assert person_email in page.split('id="invitations-heading"', 1)[0]
    assert person_email not in page.split('id="invitations-heading"', 1)[1]
    joined = changes_of(admin.api, start)
    assert [(e["action"], e["actor"]) for e in joined] == [("user.join", person_email)]
    assert joined[0]["after"] == {"email": person_email, "role": "marketer"}


def test_someone_with_an_account_joins_with_their_own_password_and_the_code(admin: Admin) -> None:
    other = admin.api.new_tenant(name=f"aa-{uuid.uuid4().hex[:8]}")  # before this admin's tenant by name
    email, password = create_user(admin.api.settings, other["name"], "viewer")
    assert password is not None
    b = admin.browser("admin")
    _, code = _invite(b, email, "marketer")
    assert sign_in(_fresh(admin), email, "", code).status_code == 400  # the code alone opens no account
    assert sign_in(_fresh(admin), email, "not their password", code).status_code == 400
    person = _fresh(admin)
    assert sign_in(person, email, password, code).status_code == 303
    assert _tenant_shown(person) == f"{admin.tenant['name']} (marketer)"  # they land where they were invited
    assert _memberships(admin, email) == {other["name"]: "viewer", admin.tenant["name"]: "marketer"}
    assert sign_in(_fresh(admin), email, password, code).status_code == 400  # a code works once
    assert sign_in(_fresh(admin), email, password).status_code == 303  # their password is as it was
    # Now a member (by their own choice), the list says they also work elsewhere, without naming it.
    row = b.get("/admin/settings/users").text.split(email, 1)[1].split("</tr>", 1)[0]
    assert "also in 1 other tenant" in row and other["name"] not in row


def test_an_invitation_is_replaced_when_sent_again_expires_and_can_be_withdrawn(admin: Admin) -> None:
    b = admin.browser("admin")
    late = f"late-{uuid.uuid4().hex[:6]}@example.com"
    start = len(changes_of(admin.api))
    _, first = _invite(b, late)
    _, second = _invite(b, late, "admin")
    assert sign_in(_fresh(admin), late, "", first).status_code == 400  # replaced
    admin.api.clock.advance(timedelta(days=7, seconds=1))
    assert sign_in(_fresh(admin), late, "", second).status_code == 400  # expired
    b = admin.browser("admin")  # (a week later: a new session)
    assert "Expired" in b.get("/admin/settings/users").text.split('id="invitations-heading"', 1)[1]
    _, third = _invite(b, late)
    r = b.post("/admin/settings/users/withdraw", {"email": late})
    assert r.status_code == 303
    assert late not in b.get("/admin/settings/users").text
    assert sign_in(_fresh(admin), late, "", third).status_code == 400
    assert b.post("/admin/settings/users/withdraw", {"email": late}).status_code == 404
    assert _memberships(admin, late) == {}
    entries = [e for e in changes_of(admin.api, start) if e["action"] != "user.create"]  # (the second admin)
    assert [e["action"] for e in entries] == ["user.invite", "user.invite", "user.invite", "user.withdraw"]
    assert [e["after"]["role"] for e in entries[:3]] == ["viewer", "admin", "viewer"]
    codes = (first, second, third)
    assert not any(c in repr(e) for e in entries for c in codes)  # the audit log never holds a code


def test_only_admins_invite_and_withdraw_and_another_tenants_invitation_is_not_found(admin: Admin) -> None:
    marketer = admin.browser("marketer")
    assert (
        marketer.post("/admin/settings/users", {"email": "x@example.com", "role": "viewer"}).status_code
        == 403
    )
    assert marketer.post("/admin/settings/users/withdraw", {"email": "x@example.com"}).status_code == 403
    b = admin.browser("admin")
    mine = f"mine-{uuid.uuid4().hex[:6]}@example.com"
    _, code = _invite(b, mine)
    theirs = admin.browser("admin", admin.api.new_tenant())
    assert theirs.post("/admin/settings/users/withdraw", {"email": mine}).status_code == 404
    assert mine not in theirs.get("/admin/settings/users").text
    assert sign_in(_fresh(admin), mine, "", code).status_code == 303  # still valid here
