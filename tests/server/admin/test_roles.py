"""Roles and CSRF on every state-changing admin action: a viewer's POST is refused and changes nothing; a POST
without the session's CSRF token is refused for every role; every page renders for the roles that may see it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.admin._helpers import EDITOR, assign, contact, promotion
from tests.server.admin.conftest import Admin, Browser


def _world(admin: Admin) -> dict[str, str]:
    api = admin.api
    cid = contact(api, email="roles@example.com", city="Lund")
    pid = promotion(api, "Live")
    draft = promotion(api, "Draft", activate=False)
    aid = assign(api, cid, pid)
    api.post(f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS"})
    marketer = admin.browser("marketer")
    run = marketer.post(f"/admin/promotions/{pid}/assign/run", {"contacts": "roles@example.com"}).headers[
        "location"
    ]
    return {"cid": cid, "pid": pid, "draft": draft, "aid": aid, "run": run}


def _actions(w: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Every state-changing admin action (all POSTs but sign-in/out and switching tenant, tested elsewhere)."""
    return [
        ("/admin/promotions", EDITOR),
        (f"/admin/promotions/{w['draft']}", EDITOR),
        (f"/admin/promotions/{w['draft']}/activate", {}),
        (f"/admin/promotions/{w['pid']}/duplicate", {}),
        (f"/admin/promotions/{w['draft']}/delete", {}),
        (f"/admin/promotions/{w['pid']}/assign/check", {"contacts": "roles@example.com"}),
        (f"/admin/promotions/{w['pid']}/assign/run", {"contacts": "roles@example.com"}),
        (f"/admin/promotions/{w['pid']}/assign/one", {"contact_id": w["cid"]}),
        (f"/admin/promotions/{w['pid']}/segment/run", {"seg_city": "Lund"}),
        (f"/admin/contacts/{w['cid']}/assign", {"promotion_id": w["pid"], "again": "yes"}),
        (f"/admin/contacts/{w['cid']}/reactivate", {"assignment_id": w["aid"], "reason": "test"}),
        (f"/admin/promotions/{w['pid']}/deactivate", {}),
    ]


def _state(admin: Admin, w: dict[str, str]) -> Any:
    api = admin.api
    return (
        api.get("/api/v2/promotions/multichannels", params={"count": 1000}).json()["totalCount"],
        api.get(f"/api/v2/promotions/multichannels/{w['pid']}").json()["status"],
        api.get(f"/api/v2/promotions/multichannels/{w['draft']}").json(),
        api.get(f"/api/v2/contacts/{w['cid']}/promotions", params={"includeRedeemed": "true"}).json(),
    )


def test_a_viewer_is_refused_every_action_and_nothing_changes(admin: Admin) -> None:
    w = _world(admin)
    viewer = admin.browser("viewer")
    before = _state(admin, w)
    for path, data in _actions(w):
        r = viewer.post(path, data)
        assert r.status_code == 403, path
        assert "This needs the marketer role" in r.text, path
    assert _state(admin, w) == before


@pytest.mark.parametrize("role", ["viewer", "marketer", "admin"])
def test_every_action_without_the_csrf_token_is_refused(admin: Admin, role: str) -> None:
    w = _world(admin)
    b = admin.browser(role)
    before = _state(admin, w)
    for path, data in _actions(w):
        r = b.post(path, data, csrf=False)
        assert r.status_code == 403 and "Form expired" in r.text, path
        r = b.post(path, {**data, "csrf_token": "forged"}, csrf=False)
        assert r.status_code == 403, path
    assert _state(admin, w) == before


def test_a_marketer_and_an_admin_may_do_every_action(admin: Admin) -> None:
    for role in ("marketer", "admin"):
        w = _world(admin)
        b: Browser = admin.browser(role)
        for path, data in _actions(w):
            r = b.post(path, data)
            assert r.status_code in (200, 303), (role, path, r.status_code)


def test_every_page_renders_for_each_role_that_may_see_it(admin: Admin) -> None:
    w = _world(admin)
    reader = [
        "/admin/promotions", f"/admin/promotions/{w['pid']}", f"/admin/promotions/{w['draft']}",
        "/admin/promotions/preview", "/admin/contacts", "/admin/contacts?q=roles", f"/admin/contacts/{w['cid']}",
        w["run"], w["run"] + "/result.csv", f"/admin/promotions/{w['pid']}/segment/count",
        f"/admin/promotions/figures?id={w['pid']}",
    ]  # fmt: skip
    writer = [
        "/admin/promotions/new", f"/admin/promotions/{w['draft']}/activate", f"/admin/promotions/{w['pid']}/assign",
        f"/admin/promotions/{w['pid']}/assign/search?q=roles",
    ]  # fmt: skip
    for role in ("viewer", "marketer", "admin"):
        b = admin.browser(role)
        for path in reader:
            assert b.get(path).status_code == 200, (role, path)
        for path in writer:
            assert b.get(path).status_code == (403 if role == "viewer" else 200), (role, path)
    viewer_page = admin.browser("viewer").get(f"/admin/promotions/{w['draft']}").text
    assert (
        "Save draft" not in viewer_page
        and "New promotion" not in admin.browser("viewer").get("/admin/promotions").text
    )
    assert "Reactivate" not in admin.browser("viewer").get(f"/admin/contacts/{w['cid']}").text
