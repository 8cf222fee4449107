"""Settings in a real browser (Debian's Chromium through pytest-playwright) against a real `promoflow serve` on a
free loopback port: an admin creates a named key in **Settings** (from the keyboard), copies it with the copy
button, uses it against the API, revokes it, and the API refuses it (401); the FTP and Users sections render.
axe-core checks every page. With PROMOFLOW_SCREENSHOTS_DIR set, the screenshots docs/admin-ui.md shows are saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from promoflow.server.config import Settings
from promoflow.server.migrate import upgrade
from tests.conftest import make_tenant
from tests.server.admin.conftest import CHROMIUM, create_user
from tests.server.admin.test_browser import Site, _in_thread, axe_check, shot
from tests.support.servers import start_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A real server (one process) with a tenant and an admin."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    data = tmp_path_factory.mktemp("browser-settings")
    url = f"sqlite:///{data / 'settings.sqlite3'}"
    settings = Settings(database_url=url, data_dir=data)

    def prepare() -> tuple[dict[str, Any], str, str | None]:
        upgrade(url)
        tenant = make_tenant(settings, name="nordic-shoes", time_zone="Europe/Stockholm")
        create_user(settings, tenant["name"], "marketer", "maria@example.com")
        return (tenant, *create_user(settings, tenant["name"], "admin", "admin@example.com"))

    tenant, email, password = _in_thread(prepare)
    assert password is not None
    server = start_server(url, data, "--no-ftp")
    try:
        yield Site(server, tenant, email, password)
    finally:
        server.stop()


def _count(site: Site, key: str) -> int:
    with httpx.Client(base_url=site.url, timeout=30) as http:
        return http.get("/api/v2/contacts/count", headers={"apikey": key}).status_code


def test_create_a_named_key_use_it_revoke_it_and_the_api_refuses_it(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page.goto(site.url + "/admin/login")
    page.get_by_label("Email").fill(site.email)
    page.get_by_label("Password").fill(site.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/promotions")

    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", level=2, name="General")).to_be_visible()
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Stockholm")
    axe_check(page)
    shot(page, "settings")

    # A wrong setting: an inline error next to the field, nothing saved.
    page.get_by_label("Clock-skew tolerance (seconds)").fill("99999")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#s-clockSkewSeconds-error")).to_have_text("a whole number of seconds from 0 to 3600")
    axe_check(page)

    # Create a named key, from the keyboard.
    page.get_by_role("navigation", name="Settings sections").get_by_role("link", name="API keys").click()
    name = page.get_by_label("Name", exact=True)
    name.focus()
    page.keyboard.type("store 12")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Key store 12 created")).to_be_visible()
    secret = page.get_by_label("Secret of store 12").input_value()
    assert secret.startswith("pf_")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#secret-value-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    axe_check(page)
    shot(page, "settings-key-created")

    # It works against the API; then it is revoked, and the API refuses it.
    assert _count(site, secret) == 200
    # Revoking asks first; answered "Cancel", nothing is sent and the key still works.
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def on_dialog(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", on_dialog)

    answer(False)
    page.get_by_role("button", name="Revoke store 12").click()
    expect(page.get_by_role("row").filter(has_text="store 12")).not_to_contain_text("Revoked")
    assert asked == [
        "Revoke key store 12? Every request with it is refused at once, and a revoked key cannot be used again."
    ]
    assert _count(site, secret) == 200
    answer(True)
    page.get_by_role("button", name="Revoke store 12").click()
    expect(page.get_by_role("status")).to_have_text("Key store 12 revoked.")
    row = page.get_by_role("row").filter(has_text="store 12")
    expect(row).to_contain_text("Revoked")
    assert _count(site, secret) == 401
    assert _count(site, site.tenant["apiKey"]) == 200  # the other keys are untouched
    axe_check(page)
    shot(page, "settings-keys")

    # The other sections.
    sections = page.get_by_role("navigation", name="Settings sections")
    sections.get_by_role("link", name="FTP credentials").click()
    expect(page.get_by_role("button", name="Replace FTP password")).to_be_visible()
    axe_check(page)
    sections.get_by_role("link", name="Users").click()
    expect(page.get_by_role("row").filter(has_text="maria@example.com")).to_contain_text("marketer")
    axe_check(page)
    shot(page, "settings-users")
