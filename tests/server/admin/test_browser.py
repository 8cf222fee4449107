"""The critical marketer flow in a real browser (Debian's Chromium through pytest-playwright) against a real
`promoflow serve` on a free loopback port: sign in → create → preview → activate → assign by pasted keys with
an unknown one → see the result → open the contact card → redeem through the API → the card shows it redeemed
and why the till no longer shows it. axe-core checks every page; everything is also done from the keyboard.

A screenshot of the page is saved under test-results/browser/ when a test fails. With PROMOFLOW_SCREENSHOTS_DIR
set, the flow also saves the screenshots docs/admin-ui.md shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from promoflow.server.config import Settings
from promoflow.server.migrate import upgrade
from tests.conftest import make_tenant
from tests.server.admin.conftest import CHROMIUM, create_user
from tests.support.servers import ServerProcess, start_server

pytestmark = pytest.mark.browser

AXE = Path(__file__).parents[2] / "support" / "vendor" / "axe-core-4.11.0.min.js"


def _in_thread(fn: Any) -> Any:
    """Run set-up code that uses asyncio.run outside Playwright's (running) event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


class Site:
    """A real server with a tenant, two contacts and a marketer."""

    def __init__(self, server: ServerProcess, tenant: dict[str, Any], email: str, password: str) -> None:
        self.server = server
        self.url = server.base_url
        self.tenant = tenant
        self.email = email
        self.password = password

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"apikey": self.tenant["apiKey"]}, timeout=30)


def prepare_site(url: str, data: Path, role: str, email: str) -> tuple[dict[str, Any], str, str]:
    """Migrate the site's database and make its tenant (in Europe/Stockholm) and a user with ``role``: the tenant,
    the user's e-mail and password."""
    settings = Settings(database_url=url, data_dir=data)

    def prepare() -> tuple[dict[str, Any], str, str | None]:
        upgrade(url)
        tenant = make_tenant(settings, time_zone="Europe/Stockholm")
        return (tenant, *create_user(settings, tenant["name"], role, email))

    tenant, email, password = _in_thread(prepare)
    assert password is not None
    return tenant, email, password


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    data = tmp_path_factory.mktemp("browser")
    url = (
        f"sqlite:///{data / 'browser.sqlite3'}"  # its own database: this server's worker runs every job in it
    )
    tenant, email, password = prepare_site(url, data, "marketer", "marketer@example.com")
    server = start_server(url, data, "--no-ftp")
    try:
        with httpx.Client(base_url=server.base_url, headers={"apikey": tenant["apiKey"]}) as api:
            for attrs in ({"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"},
                          {"email": "bo@example.com", "firstName": "Bo", "lastName": "Ek"}):  # fmt: skip
                assert api.post("/api/v2/contacts", json=attrs).status_code == 201
        yield Site(server, tenant, email, password)
    finally:
        server.stop()


def axe_check(page: Any) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
              .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"""
    )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"{page.url}: {bad}"


def shot(page: Any, name: str) -> None:
    folder = os.environ.get("PROMOFLOW_SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in(page: Any, site: Site) -> None:
    page.goto(site.url + "/admin/login")
    axe_check(page)
    page.get_by_label("Email").fill(site.email)
    page.get_by_label("Password").fill(site.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/promotions")


def test_the_critical_marketer_flow(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    tz = ZoneInfo("Europe/Stockholm")
    today = datetime.now(tz).date()
    start, end = today - timedelta(days=1), today + timedelta(days=30)
    sign_in(page, site)
    axe_check(page)

    # Create, with the customer preview following the fields.
    page.get_by_role("button", name="New promotion").click()
    page.get_by_label("Name", exact=True).fill("Spring shirts")
    page.get_by_label("Start date").fill(start.isoformat())
    page.get_by_label("End date").fill(end.isoformat())
    page.get_by_label("Heading").fill("20% off all shirts")
    page.get_by_label("POS", exact=True).check()
    page.get_by_label("POS value type").select_option("PERCENT")
    page.get_by_label("POS value", exact=True).fill("20")
    preview = page.get_by_role("region", name="Customer preview")
    expect(preview).to_contain_text("20% off all shirts")
    expect(preview).to_contain_text("POS: 20 % off")
    axe_check(page)
    shot(page, "editor")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")

    # Activate, after a confirmation stating the exact window in the tenant's zone.
    page.get_by_role("button", name="Activate").click()
    window = f"from {start.day} {start:%b %Y} 00:00 to {end.day} {end:%b %Y} 23:59:59 Europe/Stockholm"
    expect(page.locator("#activation-window")).to_contain_text(window)
    axe_check(page)
    shot(page, "activate")
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Active")
    pid = page.url.split("?")[0].rsplit("/", 1)[1]
    expect(page.get_by_text("Only drafts can be edited")).to_be_visible()

    # Assign by pasted keys, one of them unknown: Check first, then Assign with live progress.
    page.get_by_role("button", name="Assign").click()
    expect(
        page.get_by_label("Contacts", exact=True)
    ).to_be_visible()  # the assign page, loaded: axe checks it
    axe_check(page)
    page.get_by_label("Contacts", exact=True).fill("ada@example.com\nbo@example.com\nghost@example.com")
    page.get_by_role("button", name="Check").click()
    counts = page.locator(".counts")
    expect(counts).to_contain_text("2 found, will be assigned")
    expect(counts).to_contain_text("1 unknown")
    axe_check(page)
    shot(page, "assign-check")
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.locator("#run-summary")).to_have_text(
        "Assigned 2 · already held 0 · unknown 1", timeout=30_000
    )
    expect(page.get_by_role("link", name="Download every line's result (CSV)")).to_be_visible()
    axe_check(page)
    shot(page, "assign-result")

    # The contact card: shown at the till.
    page.get_by_role("link", name="Contacts").click()
    page.get_by_label("Search", exact=True).fill("ada@example.com")
    page.get_by_role("link", name="Ada Lovelace").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    expect(page.locator("main")).to_contain_text("Shown in POS")
    axe_check(page)

    # Redeem through the API, as the till does; the card then says redeemed and why it is no longer shown.
    cid = page.url.rsplit("/", 1)[1]
    with site.api() as api:
        items = api.get(f"/api/v2/contacts/{cid}/promotions", params={"redemptionChannelType": "POS"}).json()
        assert [i["name"] for i in items] == ["Spring shirts"]
        r = api.post(f"/api/v2/promotions/codes/{items[0]['id']}/redeem",
                     json={"redemptionChannel": "POS", "storeExternalId": "STORE-7"})  # fmt: skip
        assert r.status_code == 200
    page.reload()
    main = page.locator("main")
    expect(main).to_contain_text("redeemed")
    expect(main).to_contain_text("Not shown in POS: already redeemed")
    expect(main).to_contain_text("in store STORE-7")
    axe_check(page)
    shot(page, "contact-card")
    page.get_by_role("link", name="Promotions").first.click()
    expect(page.locator(f"#assigned-{pid}")).to_have_text("2")  # the figures arrive after the page
    expect(page.locator(f"#redeemed-{pid}")).to_have_text("1")
    axe_check(page)
    shot(page, "promotions")


def test_everything_works_from_the_keyboard(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    page.goto(site.url + "/admin/login")

    def tab_to(predicate: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => {{ const e = document.activeElement; return {predicate}; }}"):
                return
        raise AssertionError(f"never reached {predicate}")

    tab_to("e.id === 'email'")
    page.keyboard.type(site.email)
    page.keyboard.press("Tab")
    page.keyboard.type(site.password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/promotions")
    tab_to("e.textContent.trim() === 'New promotion'")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/promotions/new")
    tab_to("e.id === 'f-name'")
    page.keyboard.type("Keyboard promo")
    tab_to("e.id === 'f-ch_ECOM'")
    page.keyboard.press("Space")
    tab_to("e.id === 'f-ECOM_value'")
    page.keyboard.type("15")
    expect(page.get_by_role("region", name="Customer preview")).to_contain_text("ECOM: 15 % off")
    tab_to("e.textContent.trim() === 'Save draft'")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Saved.")
    page.wait_for_load_state()
    tab_to("e.textContent.trim() === 'Contacts' && e.tagName === 'A'")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/contacts")
    tab_to("e.id === 'search'")
    page.keyboard.type("bo@example.com")
    expect(page.get_by_role("link", name="Bo Ek")).to_be_visible()  # live results while typing
    tab_to("e.textContent.trim() === 'Bo Ek'")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Bo Ek")
    tab_to("e.textContent.trim() === 'Sign out'")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/login")


def test_a_phone_wide_screen_reaches_every_menu_item_without_scrolling_sideways(
    page: Any, site: Site
) -> None:
    """At 390 px the header wraps instead of widening the page: every navigation link and Sign out are on the
    screen, and no page is wider than the screen (wide tables scroll inside their own box)."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, site)
    for path in ("/admin/promotions", "/admin/contacts", "/admin/imports", "/admin/reports", "/admin/audit"):
        page.goto(site.url + path)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
        for name in ("Promotions", "Contacts", "Imports", "Reports", "Audit log"):
            link = page.get_by_role("navigation", name="Main").get_by_role("link", name=name)
            expect(link).to_be_in_viewport()
        expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()
    shot(page, "narrow-promotions")
