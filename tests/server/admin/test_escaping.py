"""No stored XSS from the API: every text of a promotion (and of the contact, store and receipt around it) that a
client wrote through the API is shown by the admin pages as text, never as markup, on every page that shows it.

The pages are parsed as a browser would: no element may carry an event handler attribute, no script may come from
anywhere but /admin/static, no link or image may carry another scheme than http(s) or the page's own paths, and
the payload's own characters must appear escaped where the field is shown."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.server.admin._helpers import assign, contact
from tests.server.admin.conftest import Admin
from tests.server.receipt.conftest import receipt_body

# Breaks out of a double- or single-quoted attribute and out of text, in one value.
XSS = "\"'><img src=x onerror=alert(1)><script>alert(2)</script>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;"


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for name, _ in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
        if tag == "script" and not (names.get("src") or "").startswith("/admin/static/"):
            self.problems.append(f"<script src={names.get('src')!r}>")
        for name in ("href", "src", "action", "hx-get", "hx-post"):
            value = (names.get(name) or "").strip().lower()
            if value and not value.startswith(("/admin", "#", "https://", "http://", "?")):
                self.problems.append(f"<{tag} {name}={value[:40]!r}>")


def _safe(html: str, where: str) -> None:
    assert "<img src=x" not in html and "<script>alert" not in html, where
    parser = _Elements()
    parser.feed(html)
    assert parser.problems == [], (where, parser.problems)


def test_every_text_a_client_wrote_is_shown_as_text(admin: Admin) -> None:
    api = admin.api
    body = {
        "name": "P " + XSS,
        "externalId": "X " + XSS,
        "validity": {"startDate": "2026-03-01", "endDate": "2026-03-31"},
        "presentation": {
            "heading": "H " + XSS,
            "description": "D " + XSS,
            # A web address may hold these characters; the pages must quote it as an attribute value.
            "link": "https://shop.example/?q=" + XSS,
            "imageUrl": "https://img.example/a.png?" + XSS,
        },
        "redemptionChannels": [
            {"type": "POS", "valueType": "EXTERNALOFFER", "value": "V " + XSS, "instruction": "I " + XSS},
            {"type": "ECOM", "valueType": "MANUAL", "value": "M " + XSS, "instruction": "J " + XSS},
        ],
    }
    r = api.post("/api/v2/promotions/multichannels", json=body)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    draft = api.post("/api/v2/promotions/multichannels", json={**body, "externalId": "Y " + XSS}).json()["id"]
    assert api.post(f"/api/v2/promotions/multichannels/{pid}/activate").status_code == 200
    email = "xss.person@example.com"
    cid = contact(api, email=email, firstName="F " + XSS, lastName="L " + XSS)
    coupon = assign(api, cid, pid)
    r = api.post(f"/api/v2/promotions/codes/{coupon}/redeem",
                 json={"redemptionChannel": "POS", "storeExternalId": "S " + XSS[:40]})  # fmt: skip
    assert r.status_code == 200, r.text
    second = assign(api, cid, pid)
    sale = receipt_body(key=email, used=[{"couponId": second}], store="R " + XSS[:40],
                        created="2026-03-10T13:00:00+01:00")  # fmt: skip
    assert api.post("/api/v2/receipts", json=sale).status_code == 200

    b = admin.browser("admin")
    pages = {
        "/admin/promotions": ("P ",),
        "/admin/promotions?q=onerror": ("P ",),
        f"/admin/promotions/{pid}": ("P ", "H ", "D ", "V ", "I ", "M ", "J "),
        f"/admin/promotions/{draft}": ("P ", "H ", "D "),
        f"/admin/promotions/{draft}/activate": ("P ",),
        f"/admin/promotions/{pid}/assign": ("P ",),
        f"/admin/contacts/{cid}": ("F ", "P "),
        f"/admin/contacts?q={email}": ("F ",),
        f"/admin/reports/{pid}": ("P ",),
        f"/admin/reports/compare?a={pid}&b={draft}": ("P ",),
        "/admin/audit": (),
    }
    for path, fields in pages.items():
        page = b.get(path)
        assert page.status_code == 200, (path, page.status_code)
        _safe(page.text, path)
        for prefix in fields:
            assert prefix + "&#34;&#39;&gt;" + ESCAPED in page.text, (path, prefix)
    # The editor's link and image: quoted attribute values, the payload inside them escaped.
    editor = b.get(f"/admin/promotions/{pid}").text
    assert 'href="https://shop.example/?q=&#34;&#39;&gt;' + ESCAPED + '"' in editor
    assert 'src="https://img.example/a.png?&#34;&#39;&gt;' + ESCAPED + '"' in editor
    # The store ids a redemption and a receipt named, in the report's table and chart.
    report = b.get(f"/admin/reports/{pid}").text
    for store in ("S", "R"):  # (the chart escapes with Python's html.escape: &quot; and &#x27;)
        assert f"{store} &#34;&#39;&gt;&lt;img src=x" in report, store
        assert f"{store} &quot;&#x27;&gt;&lt;img src=x" in report, store
    # The audit log's changed fields (the promotion's create entry carries its name).
    audit = b.get("/admin/audit", params={"promotion": pid}).text
    _safe(audit, "audit of the promotion")
    assert "P &#34;&#39;&gt;" + ESCAPED in audit
