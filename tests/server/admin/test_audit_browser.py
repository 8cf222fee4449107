"""The audit log in a real browser (Debian's Chromium) against a real `promoflow serve`: a marketer's actions in
the UI show up in **Audit log** with the marketer as the actor, the filter narrows them, and the contact card's
**History** shows its slice. axe-core finds no serious or critical violation."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.server.admin.test_browser import Site, axe_check, shot, sign_in, site  # noqa: F401 - the module's site

pytestmark = pytest.mark.browser


def test_ui_actions_appear_in_the_audit_log_with_their_user(page: Any, site: Site) -> None:  # noqa: F811
    from playwright.sync_api import expect

    today = datetime.now(ZoneInfo("Europe/Stockholm")).date()
    sign_in(page, site)
    page.get_by_role("button", name="New promotion").click()
    page.get_by_label("Name", exact=True).fill("Audited offer")
    page.get_by_label("Start date").fill((today - timedelta(days=1)).isoformat())
    page.get_by_label("End date").fill((today + timedelta(days=10)).isoformat())
    page.get_by_label("POS", exact=True).check()
    page.get_by_label("POS value type").select_option("PERCENT")
    page.get_by_label("POS value", exact=True).fill("15")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    page.get_by_role("button", name="Activate").click()
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Active")

    page.get_by_role("link", name="Contacts").click()
    page.get_by_label("Search", exact=True).fill("bo@example.com")
    page.get_by_role("link", name="Bo Ek").click()
    page.get_by_label("Promotion to assign").select_option(label="Audited offer")
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Assigned.")
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text("assigned")
    expect(history).to_contain_text("Audited offer to bo@example.com")
    axe_check(page)

    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    results = page.locator("#audit-results")
    for action in ("created promotion", "activated promotion", "assigned"):
        expect(
            results.get_by_role("row").filter(has_text=action).filter(has_text=site.email).first
        ).to_be_visible()
    axe_check(page)
    shot(page, "audit-log")

    # Narrow to the API's changes: the marketer's disappear, the contacts the API created stay.
    page.get_by_label("Actor kind").select_option(label="API key")
    expect(results).not_to_contain_text(site.email)
    expect(results).to_contain_text("created contact")
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Actor", exact=True).fill(site.email)
    page.get_by_role("button", name="Filter").click()
    expect(results).to_contain_text("activated promotion")
    expect(results).not_to_contain_text("created contact")
    axe_check(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("time,actorKind,actor,")
    assert "promotion.activate" in text and "contact.create" not in text
