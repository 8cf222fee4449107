"""Admin UI fixtures: users made with the same service as `promoflow user create`, signed in through the real
sign-in form of the app in process (TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from promoflow.kit.clock import FrozenClock
from promoflow.server.admin.users import UserService
from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.http.app import create_app
from tests.conftest import Api, make_tenant

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def create_user(
    settings: Settings, tenant_name: str, role: str, email: str | None = None
) -> tuple[str, str | None]:
    email = email or f"u-{uuid.uuid4().hex[:10]}@example.com"

    async def run() -> Any:
        db = Database(settings.resolved_database_url(), pool_size=2)
        try:
            async with db.write() as conn:
                return await UserService(datetime.now(UTC)).create(conn, email, tenant_name, role)
        finally:
            await db.dispose()

    new = asyncio.run(run())
    return new.email, new.password


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF token on the page"
    return m.group(1)


@dataclass
class Browser:
    """A TestClient with a signed-in admin session (its own cookie jar)."""

    client: TestClient
    email: str
    csrf: str

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any) -> Any:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf)
        kw.setdefault("follow_redirects", False)
        return self.client.post(path, data=data, **kw)


def sign_in(client: TestClient, email: str, password: str, code: str = "") -> Any:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login",
        data={
            "email": email,
            "password": password,
            "code": code,
            "csrf_token": csrf_of(page.text),
            "next": "/admin/promotions",
        },
        follow_redirects=False,
    )


@dataclass
class Admin:
    api: Api
    clients: list[TestClient]

    @property
    def tenant(self) -> dict[str, Any]:
        return self.api.tenant

    def user(
        self, role: str, tenant: dict[str, Any] | None = None, email: str | None = None
    ) -> tuple[str, str | None]:
        return create_user(self.api.settings, (tenant or self.tenant)["name"], role, email)

    def browser(self, role: str = "marketer", tenant: dict[str, Any] | None = None) -> Browser:
        email, password = self.user(role, tenant)
        assert password is not None
        client = TestClient(self.api.client.app, base_url="http://testserver")
        # Its own cookie jar, the app's one event loop: entering a second client would run the app's lifespan
        # again (a second database and state, its locks used from two loops: "bound to a different event loop").
        client.portal = self.api.client.portal
        self.clients.append(client)
        r = sign_in(client, email, password)
        assert r.status_code == 303, r.text
        page = client.get("/admin/promotions")
        return Browser(client, email, csrf_of(page.text))


@pytest.fixture
def admin(settings: Settings, clock: FrozenClock) -> Iterator[Admin]:
    tenant = make_tenant(settings)
    app = create_app(settings, clock=clock, run_worker=False)
    clients: list[TestClient] = []
    with TestClient(app, raise_server_exceptions=True) as client:
        a = Admin(Api(client, clock, tenant, settings), clients)
        try:
            yield a
        finally:
            for c in clients:
                c.close()


# ---------------------------------------------------------------- the browser tests' browser, page and failure shots

CHROMIUM = Path("/usr/bin/chromium")
FAILURES = Path(__file__).parents[3] / "test-results" / "browser"


LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (never a downloaded browser). Module-scoped on purpose: the sync
    API keeps its event loop running while it is open, and tests of other modules call asyncio.run."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:  # pragma: no cover - a hook
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(chromium: Any, site: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page (CSP bypassed only to inject axe-core); on failure a screenshot is saved
    under test-results/browser/."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    yield page
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        page.screenshot(path=str(FAILURES / f"{name}.png"), full_page=True)
    context.close()
