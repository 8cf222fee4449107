"""Assigning from the admin UI (one contact, pasted keys and CSV with Check then Assign as the bulk job, a segment
snapshot) and the contact card (search, sections, why the till does not show an assignment, reactivation)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from promoflow.server.models import job
from promoflow.server.promotion.assignment import AssignmentService
from promoflow.server.tenant.service import TenantService
from tests.server.admin._helpers import assign, contact, promotion, text_of
from tests.server.admin.conftest import Admin
from tests.server.receipt.conftest import receipt_body


def _people(admin: Admin) -> dict[str, str]:
    api = admin.api
    return {
        "ada": contact(api, email="ada@example.com", firstName="Ada", lastName="Lovelace", mobilePhone="+46701234567",
                       city="Lund"),
        "bo": contact(api, email="bo@example.com", firstName="Bo", memberNumber="M-778", city="Malmö"),
        "cy": contact(api, email="cy@example.com", firstName="Cy", city="lund"),
    }  # fmt: skip


def test_check_counts_then_assign_runs_the_bulk_job_with_a_summary_and_a_csv(admin: Admin) -> None:
    people = _people(admin)
    pid = promotion(admin.api, "Spring")
    assign(admin.api, people["cy"], pid)  # already holds it
    b = admin.browser("marketer")
    pasted = "\n".join(["ADA@example.com", "M-778", people["cy"], "nobody@example.com", "not-an-email@", "",
                        "+46 70 123 45 67", "=cmd"])  # fmt: skip
    r = b.post(f"/admin/promotions/{pid}/assign/check", {"contacts": pasted})
    assert r.status_code == 200
    text = text_of(r.text)
    assert "2 found, will be assigned" in text
    assert "1 already holding it" in text and "2 unknown" in text and "1 invalid" in text
    assert "1 duplicate lines" in text
    assert admin.api.get(f"/api/v2/contacts/{people['ada']}/promotions").json() == []  # nothing assigned yet
    r = b.post(f"/admin/promotions/{pid}/assign/run", {"contacts": pasted})
    assert r.status_code == 303
    run = r.headers["location"]
    assert "Working" in b.get(run).text
    assert admin.api.run_jobs() >= 1  # the run (and any job another test left due in the shared database)
    page = text_of(b.get(run).text)
    assert "Assigned 2 · already held 1 · unknown 2 · invalid 1 · duplicate lines 1" in page
    # The Jobs list says the same of the run, and names its promotion.
    jobs = b.get("/admin/imports/jobs").text
    assert "Assigned 2 · already held 1 · unknown 2 · invalid 1 · duplicate lines 1" in text_of(jobs)
    progress = b.get(run, headers={"HX-Request": "true"}).text
    assert "<html" not in progress and 'hx-trigger="every 1s"' not in progress  # polling stops when done
    rows = list(csv.reader(io.StringIO(b.get(run + "/result.csv").text)))
    assert rows[0] == ["line", "input", "contactId", "result"]
    results = {r[1]: (r[2], r[3]) for r in rows[1:]}
    assert results["ADA@example.com"] == (people["ada"], "assigned")
    assert results["M-778"] == (people["bo"], "assigned")
    assert results[people["cy"]] == (people["cy"], "already held")
    assert results["nobody@example.com"] == ("", "unknown")
    assert results["not-an-email@"] == ("", "invalid")
    assert results["'+46 70 123 45 67"] == (
        people["ada"],
        "duplicate line",
    )  # ' keeps spreadsheets from evaluating
    assert results["'=cmd"] == ("", "unknown")
    assert len(admin.api.get(f"/api/v2/contacts/{people['ada']}/promotions").json()) == 1


def test_a_csv_upload_is_checked_into_the_contacts_field(admin: Admin) -> None:
    people = _people(admin)
    pid = promotion(admin.api, "Spring")
    b = admin.browser("marketer")
    data = "name,email\nAda,ada@example.com\nBo,bo@example.com\nX,x@example.com\n"
    r = b.post(f"/admin/promotions/{pid}/assign/check", {"contacts": ""},
               files={"csv_file": ("list.csv", data.encode(), "text/csv")})  # fmt: skip
    assert r.status_code == 200
    assert "2 found, will be assigned" in text_of(r.text) and "1 unknown" in text_of(r.text)
    assert re.search(
        r'<textarea id="contacts"[^>]*>ada@example.com\nbo@example.com\nx@example.com</textarea>', r.text
    )
    assert people


def test_check_explains_an_empty_paste_next_to_the_field(admin: Admin) -> None:
    pid = promotion(admin.api, "Spring")
    r = admin.browser("marketer").post(f"/admin/promotions/{pid}/assign/check", {"contacts": "  \n"})
    assert r.status_code == 400
    assert 'id="contacts-error">Paste at least one contact key' in r.text


def test_a_draft_cannot_be_assigned(admin: Admin) -> None:
    _people(admin)
    pid = promotion(admin.api, "Draft", activate=False)
    r = admin.browser("marketer").post(f"/admin/promotions/{pid}/assign/run", {"contacts": "ada@example.com"})
    assert r.status_code == 409 and "only Scheduled or Active ones are assigned" in r.text


def test_assigning_to_a_segment_is_a_snapshot_with_a_live_count(admin: Admin) -> None:
    people = _people(admin)
    pid = promotion(admin.api, "Lund only")
    b = admin.browser("marketer")
    page = b.get(f"/admin/promotions/{pid}/assign").text
    assert "is a <strong>snapshot</strong>" in page
    count = b.get(f"/admin/promotions/{pid}/segment/count", params={"seg_city": "LUND"})
    assert text_of(count.text) == "2 contacts match now."
    r = b.post(f"/admin/promotions/{pid}/segment/run", {"seg_city": "Lund", "seg_type": "Member"})
    assert r.status_code == 303
    admin.api.run_jobs()
    assert "Assigned 2 · already held 0 · unknown 0" in text_of(b.get(r.headers["location"]).text)
    held = {c for c, cid in people.items() if admin.api.get(f"/api/v2/contacts/{cid}/promotions").json()}
    assert held == {"ada", "cy"}
    # has / has not redeemed promotion X
    aid = admin.api.get(f"/api/v2/contacts/{people['ada']}/promotions").json()[0]["id"]
    admin.api.post(f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS"})
    has = b.get(
        f"/admin/promotions/{pid}/segment/count", params={"seg_redeemed": "has", "seg_promotion": pid}
    )
    assert text_of(has.text) == "1 contacts match now."
    hasnt = b.get(
        f"/admin/promotions/{pid}/segment/count", params={"seg_redeemed": "has-not", "seg_promotion": pid}
    )
    assert text_of(hasnt.text) == "2 contacts match now."


def test_a_segment_with_odd_filters_counts_instead_of_failing(admin: Admin) -> None:
    """Hand-made query strings: a promotion id that is no GUID, days no zone can start (year 1, 9999). The count
    answers, as if the filter read what it could (every contact, here), never a 500."""
    people = _people(admin)
    pid = promotion(admin.api, "Odd")
    b = admin.browser("viewer")
    for params in (
        {"seg_redeemed": "has", "seg_promotion": "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"},
        {"seg_created_from": "0001-01-01"},
        {"seg_created_to": "9999-12-31"},
    ):
        r = b.get(f"/admin/promotions/{pid}/segment/count", params=params)
        assert r.status_code == 200 and text_of(r.text) == f"{len(people)} contacts match now.", params
    for params in ({"from": "0001-01-01"}, {"to": "9999-12-31"}, {"from": "0001-01-01", "to": "9999-12-31"}):
        assert admin.browser("admin").get("/admin/audit", params=params).status_code == 200, params
        assert b.get(f"/admin/reports/{pid}", params=params).status_code == 200, params


def test_assign_to_one_contact_found_by_search(admin: Admin) -> None:
    people = _people(admin)
    pid = promotion(admin.api, "One")
    b = admin.browser("marketer")
    found = b.get(f"/admin/promotions/{pid}/assign/search", params={"q": "lovelace"}).text
    assert "Ada Lovelace" in found and people["ada"] in found
    r = b.post(f"/admin/promotions/{pid}/assign/one", {"contact_id": people["ada"]})
    assert r.status_code == 303 and r.headers["location"].startswith(f"/admin/contacts/{people['ada']}")
    assert len(admin.api.get(f"/api/v2/contacts/{people['ada']}/promotions").json()) == 1


def test_contact_search_by_every_key_and_by_name(admin: Admin) -> None:
    people = _people(admin)
    b = admin.browser("viewer")
    page = b.get("/admin/contacts").text
    assert '<label for="search">Search</label>' in page
    for q in ("ADA@example.com", "+46 70 123 45 67", people["ada"], "ada lovelace", "LOVE"):
        html = b.get("/admin/contacts", params={"q": q}).text
        assert f'href="/admin/contacts/{people["ada"]}"' in html, q
        assert "Bo" not in text_of(html).split("Type", 1)[1], q
    assert f'href="/admin/contacts/{people["bo"]}"' in b.get("/admin/contacts", params={"q": "M-778"}).text
    assert "No contact matches" in b.get("/admin/contacts", params={"q": "zzz"}).text


def test_the_card_shows_why_the_till_does_not_show_an_assignment(admin: Admin) -> None:
    people = _people(admin)
    api = admin.api
    live = promotion(api, "POS only", channels=("POS",))
    later = promotion(api, "Later", start="2026-04-01", end="2026-04-30")
    gone = promotion(api, "Past", start="2026-03-01", end="2026-03-20")
    a_live = assign(api, people["ada"], live)
    assign(api, people["ada"], later)
    assign(api, people["ada"], gone)
    redeemed = assign(api, people["ada"], live)
    r = api.post(f"/api/v2/promotions/codes/{redeemed}/redeem",
                 json={"redemptionChannel": "POS", "storeExternalId": "S-1"})  # fmt: skip
    assert r.status_code == 200
    from datetime import timedelta

    api.clock.advance(timedelta(days=15))  # 25 Mar: "Past" has ended
    b = admin.browser("viewer")
    html = b.get(f"/admin/contacts/{people['ada']}").text
    text = text_of(html)
    for heading in ("Attributes", "Promotions", "Receipts", "Timeline"):
        assert f">{heading}</h2>" in html
    assert "Shown in POS" in text
    assert "Not shown in ECOM: not for ECOM" in text
    assert "Not shown in POS: not valid until 1 Apr 2026 00:00" in text
    assert "Not shown in POS: expired 20 Mar 2026 23:59:59" in text
    assert "Not shown in POS: already redeemed 2026-03-10 13:00 Europe/Stockholm via POS in store S-1" in text
    assert "redeemed" in text and "store S-1" in text
    assert "assigned" in text.split("Timeline", 1)[1]
    assert a_live


def test_reactivation_from_the_card_needs_a_reason_and_records_it(admin: Admin) -> None:
    people = _people(admin)
    pid = promotion(admin.api, "Used")
    aid = assign(admin.api, people["bo"], pid)
    admin.api.post(f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS"})
    b = admin.browser("marketer")
    r = b.post(f"/admin/contacts/{people['bo']}/reactivate", {"assignment_id": aid, "reason": " "})
    assert r.status_code == 400 and f'id="reason-error-{aid}">Say why' in r.text
    r = b.post(
        f"/admin/contacts/{people['bo']}/reactivate", {"assignment_id": aid, "reason": "sale cancelled"}
    )
    assert r.status_code == 303
    item = admin.api.get(f"/api/v2/contacts/{people['bo']}/promotions").json()
    assert [i["id"] for i in item] == [aid]
    text = text_of(b.get(f"/admin/contacts/{people['bo']}").text)
    assert f"reactivated Used · via admin · reason: sale cancelled (by {b.email})" in text
    # Not this contact's assignment: 404, nothing changed.
    other = admin.browser("marketer")
    assert (
        other.post(
            f"/admin/contacts/{people['ada']}/reactivate", {"assignment_id": aid, "reason": "x"}
        ).status_code
        == 404
    )


def test_assign_from_the_card(admin: Admin) -> None:
    people = _people(admin)
    pid = promotion(admin.api, "From card")
    b = admin.browser("marketer")
    assert f'<option value="{pid}">From card</option>' in b.get(f"/admin/contacts/{people['cy']}").text
    r = b.post(f"/admin/contacts/{people['cy']}/assign", {"promotion_id": pid})
    assert r.status_code == 303
    assert len(admin.api.get(f"/api/v2/contacts/{people['cy']}/promotions").json()) == 1
    # The same promotion again while the first coupon is unused: the card asks first, and assigns on "anyway".
    r = b.post(f"/admin/contacts/{people['cy']}/assign", {"promotion_id": pid})
    assert r.status_code == 409
    assert (
        "already holds 1 unused coupon of From card" in text_of(r.text)
        and 'name="again" value="yes"' in r.text
    )
    assert len(admin.api.get(f"/api/v2/contacts/{people['cy']}/promotions").json()) == 1
    r = b.post(f"/admin/contacts/{people['cy']}/assign", {"promotion_id": pid, "again": "yes"})
    assert r.status_code == 303
    assert len(admin.api.get(f"/api/v2/contacts/{people['cy']}/promotions").json()) == 2


def test_another_tenants_contacts_and_runs_answer_404(admin: Admin) -> None:
    people = _people(admin)
    pid = promotion(admin.api, "Mine")
    mine = admin.browser("marketer")
    r = mine.post(f"/admin/promotions/{pid}/assign/run", {"contacts": "ada@example.com"})
    run = r.headers["location"]
    theirs = admin.browser("marketer", admin.api.new_tenant())
    assert theirs.get(f"/admin/contacts/{people['ada']}").status_code == 404
    assert theirs.get(run).status_code == 404 and theirs.get(run + "/result.csv").status_code == 404
    assert theirs.post(f"/admin/contacts/{people['ada']}/assign", {"promotion_id": pid}).status_code == 404
    theirs_pid = promotion(admin.api, "x")  # the first tenant's again
    assert (
        theirs.post(f"/admin/promotions/{theirs_pid}/assign/one", {"contact_id": people["ada"]}).status_code
        == 404
    )
    assert people["ada"] not in theirs.get("/admin/contacts", params={"q": "ada@example.com"}).text
    assert theirs.get(f"/admin/contacts/{uuid.uuid4()}").status_code == 404


TIME = re.compile(r'<time datetime="([^"]+)">([^<]*)</time>')


def test_every_time_a_page_shows_is_local_and_named_the_same_way(admin: Admin) -> None:
    """Card (created, assigned, redeemed, receipts, timeline, history), promotion history, audit log, jobs and API
    keys: every moment is 'YYYY-MM-DD HH:MM <zone>' in the tenant's zone, in a <time> holding the exact instant;
    none is shown as raw ISO 8601 (the CSVs keep it)."""
    api = admin.api
    pid = promotion(api, "Timed")
    ada = contact(api, email="ada@example.com", firstName="Ada")
    coupon = assign(api, ada, pid)
    r = api.post(f"/api/v2/promotions/codes/{coupon}/redeem",
                 json={"redemptionChannel": "POS", "storeExternalId": "S-1"})  # fmt: skip
    assert r.status_code == 200, r.text
    sale = receipt_body(key="ada@example.com", created="2026-03-10T12:30:00.250+01:00")  # with milliseconds
    assert api.post("/api/v2/receipts", json=sale).status_code == 200
    b = admin.browser("admin")
    assert b.post(f"/admin/promotions/{pid}/assign/run", {"contacts": "ada@example.com"}).status_code == 303
    admin.api.run_jobs()
    card = b.get(f"/admin/contacts/{ada}").text
    text = text_of(card)
    assert "Created 2026-03-10 13:00 Europe/Stockholm" in text
    assert "assigned 2026-03-10 13:00 Europe/Stockholm" in text
    assert "2026-03-10 13:00 Europe/Stockholm · POS · store S-1" in text  # redeemed
    assert "already redeemed 2026-03-10 13:00 Europe/Stockholm via POS" in text
    assert "2026-03-10 12:30 Europe/Stockholm" in text.split("Receipts", 1)[1]
    assert "2026-03-10 13:00 Europe/Stockholm — assigned Timed" in text
    pages = [card]
    pages += [b.get(p).text for p in (f"/admin/promotions/{pid}", "/admin/audit", "/admin/imports/jobs",
                                      "/admin/settings/keys")]  # fmt: skip
    stockholm = ZoneInfo("Europe/Stockholm")
    for html in pages:
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text_of(TIME.sub("", html))), text_of(html)[:300]
        shown = TIME.findall(html)
        assert len(shown) >= 2
        for exact, words in shown:
            assert (
                words
                == f"{datetime.fromisoformat(exact).astimezone(stockholm):%Y-%m-%d %H:%M} Europe/Stockholm"
            )
    audit = text_of(pages[2])
    assert "activatedAt : — → 2026-03-10 13:00 Europe/Stockholm" in audit  # an instant in before → after


def test_a_run_taken_up_again_after_a_stop_counts_what_its_first_attempt_assigned(admin: Admin) -> None:
    """A worker stopped (or killed) between two chunks of a run: the next attempt goes over the whole list, and
    the contacts the first one assigned are in the run's batch already. The run assigned them all the same."""
    people = _people(admin)
    pid = promotion(admin.api, "Spring")
    b = admin.browser("marketer")
    r = b.post(f"/admin/promotions/{pid}/assign/run", {"contacts": "ada@example.com\nbo@example.com"})
    run = r.headers["location"]
    st = admin.api.client.app.state.promoflow  # type: ignore[attr-defined]

    async def first_attempt() -> None:
        # What the cut-short attempt committed: Ada's assignment, in the run's batch.
        async with st.db.write() as conn:
            payload = (
                await conn.execute(
                    select(job.c.payload).where(job.c.public_id == uuid.UUID(run.rsplit("/", 1)[1]))
                )
            ).scalar_one()
            ctx = await TenantService(admin.api.clock.now()).authenticate(conn, admin.tenant["apiKey"])
            assert ctx is not None
            new, _ = await AssignmentService(ctx, admin.api.clock.now()).assign_many(
                conn, uuid.UUID(pid), [uuid.UUID(people["ada"])], payload["batchRef"]
            )
            assert new == 1

    admin.api.client.portal.call(first_attempt)  # type: ignore[union-attr]
    assert admin.api.run_jobs() >= 1
    assert "Assigned 2 · already held 0 · unknown 0" in text_of(b.get(run).text)
    held = [p["promotionId"] for p in admin.api.get(f"/api/v2/contacts/{people['ada']}/promotions").json()]
    assert held == [pid]  # once: the second attempt did not assign Ada again
