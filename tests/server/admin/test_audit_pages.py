"""The Audit log in the admin UI: actions taken in the UI are recorded with the signed-in user as the actor; the
page filters by actor, object and time and pages by keyset; the CSV holds every matching entry; the contact card
and the promotion page show their own History; roles (admins and marketers read the log, viewers only the
History sections) and tenant isolation."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

from tests.server.admin._helpers import EDITOR, assign, contact, promotion
from tests.server.admin._helpers import text_of as _text
from tests.server.admin.conftest import Admin
from tests.server.audit._support import changes_of


def text_of(page: str) -> str:
    return html.unescape(_text(page))


def results(page: str) -> str:
    """The visible text of the page's results (not its filter form)."""
    return text_of(page.split('id="audit-results"')[1])


def _by(admin: Admin, since: int, email: str) -> list[dict[str, Any]]:
    found = changes_of(admin.api, since)
    assert {(e["actor_kind"], e["actor"]) for e in found} == {("user", email)}, found
    return found


def test_ui_actions_are_recorded_with_the_signed_in_user(admin: Admin) -> None:
    api = admin.api
    cid = contact(api, email="ada@example.com", firstName="Ada")
    contact(api, email="eve@example.com")
    live = promotion(api, "Live")
    aid = assign(api, cid, live)
    assert (
        api.post(f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS"}).status_code
        == 200
    )
    b = admin.browser("marketer")
    n = len(changes_of(api))
    r = b.post("/admin/promotions", EDITOR)
    pid = r.headers["location"].split("/")[3].split("?")[0]
    assert b.post(f"/admin/promotions/{pid}", {**EDITOR, "name": "Spring sale 2"}).status_code == 303
    assert b.post(f"/admin/promotions/{pid}/activate").status_code == 303
    assert b.post(f"/admin/contacts/{cid}/assign", {"promotion_id": pid}).status_code == 303
    assert (
        b.post(
            f"/admin/contacts/{cid}/reactivate", {"assignment_id": aid, "reason": "sale cancelled"}
        ).status_code
        == 303
    )
    copy = b.post(f"/admin/promotions/{pid}/duplicate").headers["location"].split("/")[3].split("?")[0]
    assert b.post(f"/admin/promotions/{copy}/delete").status_code == 303
    assert (
        b.post(
            f"/admin/promotions/{pid}/assign/run", {"contacts": "ada@example.com\neve@example.com"}
        ).status_code
        == 303
    )
    assert b.post(f"/admin/promotions/{live}/deactivate").status_code == 303
    found = _by(admin, n, b.email)
    assert [e["action"] for e in found] == [
        "promotion.create", "promotion.update", "promotion.activate", "assignment.create", "redemption.reactivate",
        "promotion.create", "promotion.delete", "assignment.bulk", "promotion.deactivate",
    ]  # fmt: skip
    assert found[1]["before"] == {"name": "Spring sale"} and found[1]["after"] == {"name": "Spring sale 2"}
    assert found[3]["after"]["source"] == "admin" and str(found[3]["contact_id"]) == cid
    assert found[4]["after"] == {"redeemed": False, "reactivationCount": 1, "reason": "sale cancelled"}
    assert found[5]["after"]["name"] == "Copy of Spring sale 2" and found[6]["object_id"] == copy
    assert found[7]["after"]["origin"] == "keys" and found[7]["after"]["contacts"] == 1
    # a refused UI action records nothing
    n = len(changes_of(api))
    assert b.post(f"/admin/promotions/{live}/delete").status_code == 409
    assert changes_of(api, n) == []


def test_the_audit_log_page_lists_filters_and_links(admin: Admin) -> None:
    api = admin.api
    cid = contact(api, email="bo@example.com")
    pid = promotion(api, "Autumn <b>sale</b>")
    b = admin.browser("marketer")
    b.post(f"/admin/contacts/{cid}/assign", {"promotion_id": pid})
    page = b.get("/admin/audit")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Audit log" in text and "Download CSV" in text
    assert (
        f"{b.email} Person (admin UI) assigned assignment.create Autumn <b>sale</b> to bo@example.com" in text
    )
    assert "<b>sale</b>" not in page.text and "&lt;b&gt;sale&lt;/b&gt;" in page.text  # names render as text
    assert "default API key created promotion promotion.create promotion Autumn" in text
    assert f'href="/admin/contacts/{cid}"' in page.text and f'href="/admin/promotions/{pid}"' in page.text
    mine = results(b.get("/admin/audit", params={"actor": b.email}).text)
    assert "assignment.create" in mine and "promotion.create" not in mine
    keys = results(b.get("/admin/audit", params={"kind": "api_key", "action": "promotion.activate"}).text)
    assert "promotion.activate" in keys and "assignment.create" not in keys
    by_object = results(b.get("/admin/audit", params={"object": pid.upper()}).text)
    assert (
        "promotion.create" in by_object
        and "promotion.activate" in by_object
        and "contact.create" not in by_object
    )
    # time range in the tenant's days: the frozen clock is 10 March 2026
    assert "promotion.create" in text_of(
        b.get("/admin/audit", params={"from": "2026-03-10", "to": "2026-03-10"}).text
    )
    assert "No changes match" in b.get("/admin/audit", params={"from": "2026-03-11", "to": "2026-03-12"}).text
    assert "No changes match" in b.get("/admin/audit", params={"to": "2026-03-09"}).text
    partial = b.get(
        "/admin/audit",
        params={"actor": b.email},
        headers={"HX-Request": "true", "HX-Target": "audit-results"},
    )
    assert "<html" not in partial.text and "assignment.create" in partial.text


def test_keyset_paging_walks_every_entry_once(admin: Admin) -> None:
    api = admin.api
    for i in range(57):
        contact(api, email=f"p{i}@example.com")
    b = admin.browser("admin")
    seen: list[str] = []
    url: str | None = "/admin/audit?action=contact.create"
    while url:
        html = b.get(url).text
        seen += re.findall(r"contact (p\d+@example\.com)", text_of(html))
        m = re.search(r'href="(/admin/audit\?[^"]*after=[^"]+)">Older', html)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert sorted(seen) == sorted(f"p{i}@example.com" for i in range(57))
    assert len(seen) == 57


def test_csv_has_every_matching_entry(admin: Admin) -> None:
    api = admin.api
    cid = contact(api, email="=cmd@example.com", firstName="=2+2")
    b = admin.browser("marketer")
    r = b.get("/admin/audit.csv", params={"object": cid})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1
    (row,) = rows
    assert (row["action"], row["objectType"], row["objectId"], row["actorKind"], row["actor"]) == (
        "contact.create", "contact", cid, "api_key", "default",
    )  # fmt: skip
    assert row["time"].startswith("2026-03-10T13:00:00+01:00")  # the tenant's zone
    assert '"firstName":"=2+2"' in row["after"] and row["before"] == ""
    everything = list(csv.DictReader(io.StringIO(b.get("/admin/audit.csv").text)))
    assert {"tenant.create", "api_key.create", "contact.create"} <= {r["action"] for r in everything}


def test_history_on_the_contact_card_and_the_promotion_page(admin: Admin) -> None:
    api = admin.api
    cid = contact(api, email="cy@example.com", firstName="Cy")
    other = contact(api, email="dee@example.com")
    pid = promotion(api, "Winter")
    assign(api, cid, pid)
    api.post(f"/api/v2/contacts/{cid}", json={"firstName": "Cyrus"})
    for role in ("viewer", "marketer"):
        b = admin.browser(role)
        card = b.get(f"/admin/contacts/{cid}").text
        history = text_of(card.split('id="history-heading"')[1])
        assert "edited contact" in history and "firstName : Cy → Cyrus" in history
        assert "assigned" in history and "Winter to cy@example.com" in history
        assert "dee@example.com" not in history
        promo = text_of(b.get(f"/admin/promotions/{pid}").text.split('id="history-heading"')[1])
        assert (
            "created promotion" in promo
            and "activated promotion" in promo
            and "Winter to cy@example.com" in promo
        )
    assert "No changes recorded yet" not in b.get(f"/admin/contacts/{other}").text


def test_roles_viewers_do_not_read_the_whole_log(admin: Admin) -> None:
    viewer = admin.browser("viewer")
    assert viewer.get("/admin/audit").status_code == 403
    assert viewer.get("/admin/audit.csv").status_code == 403
    assert 'href="/admin/audit"' not in viewer.get("/admin/promotions").text
    for role in ("marketer", "admin"):
        b = admin.browser(role)
        assert 'href="/admin/audit"' in b.get("/admin/promotions").text
        assert b.get("/admin/audit").status_code == 200 and b.get("/admin/audit.csv").status_code == 200


def test_another_tenants_entries_never_show(admin: Admin) -> None:
    api = admin.api
    other = api.new_tenant()
    theirs = promotion_in(api, other, "Theirs")
    b = admin.browser("admin")
    assert "Theirs" not in b.get("/admin/audit").text
    assert "No changes match" in b.get("/admin/audit", params={"object": theirs}).text
    assert list(csv.DictReader(io.StringIO(b.get("/admin/audit.csv", params={"object": theirs}).text))) == []
    assert b.get(f"/admin/promotions/{theirs}").status_code == 404


def promotion_in(api: Any, tenant: dict[str, Any], name: str) -> str:
    body = {
        "name": name,
        "validity": {"startDate": "2026-03-01"},
        "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "5"}],
    }
    r = api.post("/api/v2/promotions/multichannels", json=body, headers=api.as_tenant(tenant))
    assert r.status_code == 201
    return str(r.json()["id"])


def test_values_that_look_like_instants_but_are_none_are_shown_as_typed(admin: Admin) -> None:
    """An attribute any API key may set to text shaped like an instant that is not one (month 13), or one no
    time zone can show (year 1 at +14:00), is shown as typed: the audit log and the contact card never fail."""
    api = admin.api
    odd = ("0001-01-01T00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-13-45T10:00Z")
    cid = contact(api, email="odd@example.com", firstName=odd[0], lastName=odd[1], city=odd[2])
    b = admin.browser("admin")
    for page in (b.get("/admin/audit"), b.get(f"/admin/contacts/{cid}")):
        assert page.status_code == 200
        shown = html.unescape(page.text)
        assert all(value in shown for value in odd)
