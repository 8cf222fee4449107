"""Promotions in the admin UI: list, editor, form errors in a marketer's words, the live customer preview,
activation with its exact window, and the lifecycle buttons; roles, CSRF, escaping and tenant isolation."""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta

import pytest

from tests.server.admin._helpers import EDITOR, assign, contact, promotion, store_presentation, text_of
from tests.server.admin.conftest import Admin


def _new(admin: Admin, **changes: str) -> tuple[object, str]:
    b = admin.browser("marketer")
    r = b.post("/admin/promotions", {**EDITOR, **changes})
    assert r.status_code == 303, text_of(r.text)
    return b, r.headers["location"].split("/")[-1].split("?")[0]


def test_a_marketer_creates_a_draft_that_the_api_reads_back(admin: Admin) -> None:
    _, pid = _new(admin, POS_local_values="EUR 2.50\nNOK 30", image_url="https://img.example/a.png")
    wire = admin.api.get(f"/api/v2/promotions/multichannels/{pid}").json()
    assert wire["status"] == "Draft" and wire["name"] == "Spring sale"
    assert wire["validity"]["startDate"].startswith("2027-01-01")
    ch = wire["redemptionChannels"][0]
    assert (ch["type"], ch["valueType"], ch["value"]) == ("POS", "PERCENT", "20")
    assert ch["localValues"] == [{"currency": "EUR", "amount": 2.5}, {"currency": "NOK", "amount": 30}]
    assert wire["presentation"]["imageUrl"] == "https://img.example/a.png"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"name": ""}, "name", "Give the promotion a name."),
        ({"start_date": ""}, "start_date", "Enter the start date."),
        ({"start_date": "31/01/2027"}, "start_date", "Enter the start date as a date"),
        ({"end_date": "2026-12-01"}, "end_date", "The end date is before the start date."),
        ({"POS_value": "150"}, "POS_value", "Enter a whole percentage from 1 to 100."),
        ({"POS_value_type": "MONEY", "POS_value": "-3"}, "POS_value", "Enter an amount above 0"),
        (
            {"POS_value_type": "EXTERNALOFFER", "POS_value": ""},
            "POS_value",
            "Enter the code of the web shop's",
        ),
        (
            {"POS_local_values": "five euros"},
            "POS_local_values",
            "Write one value per line as currency and amount",
        ),
        ({"ch_POS": ""}, "channels", "Choose at least one channel"),
        ({"assigned_amount": "0"}, "assigned_amount", "Enter a whole number from 1 to 3650"),
        ({"heading": "h" * 600}, "heading", "The heading is at most 450 characters."),
        ({"description": "d" * 20_000}, "description", "The description is at most 4,000 characters."),
        ({"image_url": "https://example.com/" + "i" * 3000}, "image_url", "The image URL is at most 2,000"),
        ({"link": "https://example.com/" + "l" * 3000}, "link", "The link is at most 2,000 characters."),
        ({"link": "javascript:alert(1)"}, "link", "Use a full web address that starts with https://"),
        ({"link": "/spring"}, "link", "Use a full web address that starts with https://"),
        ({"link": "https://"}, "link", "Use a full web address that starts with https://"),
        (
            {"image_url": "data:image/png;base64,AAAA"},
            "image_url",
            "Use a full web address that starts with https://",
        ),
    ],
)
def test_form_errors_are_shown_next_to_their_field_and_nothing_is_saved(
    admin: Admin, changes: dict[str, str], field: str, words: str
) -> None:
    b = admin.browser("marketer")
    before = admin.api.get("/api/v2/promotions/multichannels").json()["totalCount"]
    r = b.post("/admin/promotions", {**EDITOR, **changes})
    assert r.status_code == 400
    m = re.search(rf'<small class="field-error" id="{field}-error">([^<]*)</small>', r.text)
    assert m, text_of(r.text)[:2000]
    assert words in html.unescape(m.group(1))
    if field not in ("channels",):
        assert f'aria-describedby="{field}-error"' in r.text
    assert admin.api.get("/api/v2/promotions/multichannels").json()["totalCount"] == before


def test_an_external_id_in_use_is_explained_next_to_the_field(admin: Admin) -> None:
    promotion(admin.api, "First", activate=False, externalId="EXT-1")
    b = admin.browser("marketer")
    r = b.post("/admin/promotions", {**EDITOR, "external_id": "EXT-1"})
    assert r.status_code == 409
    assert (
        '<small class="field-error" id="external_id-error">Another promotion already uses this external id.'
        in r.text
    )


def test_the_customer_preview_is_the_api_item_and_follows_the_fields(admin: Admin) -> None:
    b = admin.browser("viewer")
    r = b.get("/admin/promotions/preview", params={**EDITOR, "POS_value_type": "MONEY", "POS_value": "50",
                                                   "ch_ECOM": "on", "ECOM_value_type": "PERCENT", "ECOM_value": "15"})  # fmt: skip
    assert r.status_code == 200
    text = text_of(r.text)
    assert "Customer preview" in text and "20% off" in text and "All shirts" in text
    assert "POS : 50 SEK off" in text and "ECOM : 15 % off" in text
    # Assigned "now" (10 Mar 2026) to a promotion of January 2027: valid from its start to its end, local time.
    assert "Valid from 1 Jan 2027 00:00 until 31 Jan 2027 23:59:59 (Europe/Stockholm)" in text
    half = text_of(b.get("/admin/promotions/preview", params={**EDITOR, "POS_value": "abc"}).text)
    assert "POS: the value is not complete yet" in half


def test_activation_states_the_exact_window_in_the_tenant_zone(admin: Admin) -> None:
    b, pid = _new(admin)
    page = text_of(b.get(f"/admin/promotions/{pid}/activate").text)
    assert "It will be active from 1 Jan 2027 00:00 to 31 Jan 2027 23:59:59 Europe/Stockholm." in page
    r = b.post(f"/admin/promotions/{pid}/activate")
    assert r.status_code == 303
    assert admin.api.get(f"/api/v2/promotions/multichannels/{pid}").json()["status"] == "Scheduled"
    page = b.get(f"/admin/promotions/{pid}").text
    assert "Only drafts can be edited" in page
    assert "<fieldset disabled>" in page and "Save draft" not in page
    r = b.post(f"/admin/promotions/{pid}", {**EDITOR, "name": "Changed"})
    assert r.status_code == 409 and "only a Draft can be changed" in r.text


def test_save_and_activate_goes_to_the_confirmation(admin: Admin) -> None:
    b = admin.browser("marketer")
    r = b.post("/admin/promotions", {**EDITOR, "action": "activate"})
    assert r.status_code == 303 and r.headers["location"].endswith("/activate")


def test_deactivate_duplicate_and_delete(admin: Admin) -> None:
    b = admin.browser("marketer")
    pid = promotion(admin.api, "Live one")
    cid = contact(admin.api, email="dup@example.com")
    assign(admin.api, cid, pid)
    page = b.get(f"/admin/promotions/{pid}").text
    assert "Cannot be deleted: it has been assigned to customers." in page
    assert re.search(r'<button type="submit" class="secondary outline" disabled[^>]*>Delete</button>', page)
    assert b.post(f"/admin/promotions/{pid}/delete").status_code == 409
    r = b.post(f"/admin/promotions/{pid}/duplicate")
    copy = r.headers["location"].split("/")[-1].split("?")[0]
    wire = admin.api.get(f"/api/v2/promotions/multichannels/{copy}").json()
    assert wire["name"] == "Copy of Live one" and wire["status"] == "Draft"
    assert b.post(f"/admin/promotions/{pid}/deactivate").status_code == 303
    assert admin.api.get(f"/api/v2/promotions/multichannels/{pid}").json()["status"] == "Ended"
    ended = text_of(b.get(f"/admin/promotions/{pid}").text)
    assert "Deactivated 2026-03-10 13:00 Europe/Stockholm : it ended then" in ended
    assert b.post(f"/admin/promotions/{copy}/delete").status_code == 303
    assert admin.api.get(f"/api/v2/promotions/multichannels/{copy}").status_code == 404


def test_the_list_filters_by_status_channel_and_text_and_shows_the_zone(admin: Admin) -> None:
    promotion(admin.api, "Alpha shirts", activate=False)
    admin.api.clock.advance(timedelta(seconds=1))
    promotion(admin.api, "Beta shoes", channels=("ECOM",))
    admin.api.clock.advance(timedelta(seconds=1))
    promotion(admin.api, "Gamma hats", start="2026-05-01", end=None)
    b = admin.browser("viewer")

    def names(**params: str) -> list[str]:
        html = b.get("/admin/promotions", params=params).text
        return re.findall(r'<a href="/admin/promotions/[0-9a-f-]{36}">([^<]*)</a>', html)

    assert names() == ["Gamma hats", "Beta shoes", "Alpha shirts"]
    assert names(status="Draft") == ["Alpha shirts"]
    assert names(status="Active") == ["Beta shoes"]
    assert names(status="Scheduled") == ["Gamma hats"]
    assert names(channel="ECOM") == ["Beta shoes"]
    assert names(q="SHO") == ["Beta shoes"]
    assert names(q="%") == []
    text = text_of(b.get("/admin/promotions").text)
    assert "Validity (Europe/Stockholm)" in text
    assert "1 Mar 2026 00:00 – 31 Mar 2026 23:59:59 Europe/Stockholm" in text
    assert "from 1 May 2026 00:00 Europe/Stockholm, no end date" in text
    partial = b.get(
        "/admin/promotions",
        params={"q": "Beta"},
        headers={"HX-Request": "true", "HX-Target": "promotion-results"},
    )
    assert "<html" not in partial.text and "Beta shoes" in partial.text


def test_the_list_pages_by_keyset_and_counts_assigned_and_redeemed(admin: Admin) -> None:
    ids = []
    for i in range(27):
        ids.append(promotion(admin.api, f"P{i:02d}", activate=i == 26))
        admin.api.clock.advance(timedelta(seconds=1))
    cid = contact(admin.api, email="count@example.com")
    aid = assign(admin.api, cid, ids[26])
    assign(admin.api, cid, ids[26])
    assert (
        admin.api.post(
            f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS"}
        ).status_code
        == 200
    )
    b = admin.browser("viewer")
    first = b.get("/admin/promotions").text
    rows = re.findall(r'<a href="/admin/promotions/[0-9a-f-]{36}">(P\d\d)</a>', first)
    assert rows == [f"P{i:02d}" for i in range(26, 1, -1)]
    # The figures come in one request after the page (counting 100,000s of assignments takes a while).
    figures = re.search(r'hx-get="(/admin/promotions/figures\?[^"]+)"', first).group(1).replace("&amp;", "&")
    assert figures.count("id=") == 25
    spans = dict(re.findall(r'<span id="((?:assigned|redeemed)-[0-9a-f-]{36})" hx-swap-oob="true">([\d,]+)</span>',
                            b.get(figures).text))  # fmt: skip
    assert (spans[f"assigned-{ids[26]}"], spans[f"redeemed-{ids[26]}"]) == ("2", "1")
    assert spans[f"assigned-{ids[25]}"] == "0"
    # Another tenant asking for these ids learns nothing.
    other = admin.browser("viewer", admin.api.new_tenant())
    assert f'id="assigned-{ids[26]}" hx-swap-oob="true">0<' in other.get(figures).text
    nxt = re.search(r'href="(/admin/promotions\?[^"]*after=[^"]+)">Next page', first)
    assert nxt
    second = b.get(nxt.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<a href="/admin/promotions/[0-9a-f-]{36}">(P\d\d)</a>', second) == ["P01", "P00"]
    assert "Next page" not in second and "First page" in second


def test_a_script_in_a_name_is_shown_as_text_everywhere(admin: Admin) -> None:
    evil = "<script>alert(1)</script>"
    pid = promotion(admin.api, evil, activate=True, presentation={"heading": evil})
    # Stored before the API refused them (it answers 400 InvalidUrl now): never a live link or image.
    store_presentation(
        admin.api, pid, link="javascript:alert(1)", image_url="data:image/svg+xml,<svg/onload=alert(1)>"
    )
    cid = contact(admin.api, email="xss@example.com", firstName=evil)
    assign(admin.api, cid, pid)
    b = admin.browser("viewer")
    for path in ("/admin/promotions", f"/admin/promotions/{pid}", f"/admin/contacts/{cid}",
                 f"/admin/contacts?q={evil}", "/admin/promotions/preview?heading=" + evil,
                 "/admin/promotions/preview?link=javascript:alert(1)&image_url=data:image/png;base64,AAAA"):  # fmt: skip
        html = b.get(path).text
        assert "<script>alert(1)</script>" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "preview?link" in path, path
        assert 'href="javascript:' not in html and 'src="data:' not in html, path
        assert "Promotion link" not in html and "<img" not in html, path


def test_a_stored_link_that_is_not_a_web_address_is_left_out_of_a_duplicate(admin: Admin) -> None:
    pid = promotion(admin.api, "Old one", presentation={"heading": "h", "link": "https://shop.example/a"})
    store_presentation(admin.api, pid, link="javascript:alert(1)", image_url="https://img.example/a.png")
    b = admin.browser("marketer")
    r = b.post(f"/admin/promotions/{pid}/duplicate")
    assert r.status_code == 303, text_of(r.text)[:500]
    copy = r.headers["location"].split("/")[-1].split("?")[0]
    wire = admin.api.get(f"/api/v2/promotions/multichannels/{copy}").json()
    assert wire["presentation"] == {"heading": "h", "imageUrl": "https://img.example/a.png"}


def test_pages_carry_a_strict_content_security_policy(admin: Admin) -> None:
    r = admin.browser("viewer").get("/admin/promotions")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


def test_another_tenants_promotion_answers_404(admin: Admin) -> None:
    mine = admin.browser("marketer")
    other = admin.api.new_tenant()
    theirs = admin.browser("marketer", other)
    pid = promotion(admin.api, "Mine only")
    for path in (
        f"/admin/promotions/{pid}",
        f"/admin/promotions/{pid}/activate",
        f"/admin/promotions/{pid}/assign",
    ):
        assert theirs.get(path).status_code == 404, path
    for path in (f"/admin/promotions/{pid}/deactivate", f"/admin/promotions/{pid}/duplicate",
                 f"/admin/promotions/{pid}/delete", f"/admin/promotions/{pid}"):  # fmt: skip
        assert theirs.post(path, EDITOR).status_code == 404, path
    assert mine.get(f"/admin/promotions/{pid}").status_code == 200
    assert theirs.get(f"/admin/promotions/{uuid.uuid4()}").status_code == 404
    assert theirs.get("/admin/promotions/not-a-guid").status_code == 404
