"""The Imports screen: files uploaded over the real FTP server (loopback), imported by the worker run in process,
read through the admin pages by a viewer; line results filtered, searched and paged; the uploaded and result files
downloaded; another tenant's imports not found; jobs listed with their result. SQLite and PostgreSQL."""

from __future__ import annotations

import ftplib
import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from promoflow.server.transfer.files import FileStore
from promoflow.server.transfer.ftp import FtpServer
from promoflow.wire.xml import REDEMPTION_IMPORT_DIR, Redemption, write_redemptions
from tests.conftest import START
from tests.server.admin._helpers import assign, contact, promotion, text_of
from tests.server.admin.conftest import Admin

NAME = "20260310120000_7_redemptions.xml"
UNKNOWN = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"


@pytest.fixture
def ftp(admin: Admin) -> Iterator[FtpServer]:
    settings = admin.api.settings.model_copy(update={"ftp_port": 0, "ftp_auth_failed_delay_seconds": 0.05})
    server = FtpServer(settings, clock=admin.api.clock).start()
    try:
        yield server
    finally:
        server.stop()


def upload(server: FtpServer, tenant: dict[str, Any], folder: str, name: str, data: bytes) -> str:
    client = ftplib.FTP()
    client.connect("127.0.0.1", server.address[1], timeout=30)
    client.login(tenant["ftpUser"], tenant["ftpPassword"])
    try:
        return client.storbinary(f"STOR {folder}/{name}", io.BytesIO(data))
    finally:
        client.quit()


def _red(coupon: str, **kw: Any) -> Redemption:
    kw.setdefault("redemption_channel", "POS")
    kw.setdefault("redeemed_on", START + timedelta(minutes=1))
    return Redemption(coupon_id=coupon, **kw)


def _import_id(page: str, name: str) -> str:
    marker = 'href="/admin/imports/'
    for part in page.split(marker)[1:]:
        iid, _, rest = part.partition('"')
        if rest.startswith(f">{name}<"):
            return iid
    raise AssertionError(f"{name} not listed")


def _redemptions_file(admin: Admin) -> tuple[bytes, str, str]:
    api = admin.api
    pid = promotion(api, start="2026-03-01", end="2026-03-31")
    cid = contact(api, email="ada@example.com")
    coupon = assign(api, cid, pid)
    data = write_redemptions([_red(coupon, store_external_id="S1"), _red(UNKNOWN), _red(coupon)])
    return data, coupon, cid


def test_a_viewer_sees_an_import_its_line_results_and_downloads_its_files(
    admin: Admin, ftp: FtpServer
) -> None:
    data, coupon, _ = _redemptions_file(admin)
    assert upload(ftp, admin.tenant, REDEMPTION_IMPORT_DIR, NAME, data).startswith("226")
    viewer = admin.browser("viewer")
    # Waiting: listed at once, and the list polls while a file is not finished.
    waiting = viewer.get("/admin/imports")
    assert waiting.status_code == 200
    assert "Waiting" in text_of(waiting.text) and 'hx-trigger="every 2s"' in waiting.text
    admin.api.run_jobs()

    page = viewer.get("/admin/imports")
    text = text_of(page.text)
    assert NAME in text and REDEMPTION_IMPORT_DIR in text and "Imported" in text
    assert "applied 1 · already redeemed 1 · not found 1" in text
    assert 'hx-trigger="every 2s"' not in page.text  # nothing left to watch
    iid = _import_id(page.text, NAME)
    row = text_of(page.text.split(f'id="import-{iid}"')[1].split("</tr>")[0])
    assert "2026-03-10 13:00 Europe/Stockholm" in row  # uploaded at, in the tenant's zone, named

    detail = viewer.get(f"/admin/imports/{iid}")
    assert detail.status_code == 200
    rows = text_of(detail.text.split('id="records-table"')[1])
    assert "applied" in rows and "not found" in rows and "already redeemed" in rows and UNKNOWN in rows
    only = text_of(viewer.get(f"/admin/imports/{iid}", params={"verdict": "notFound"}).text.split('id="records-table"')[1])  # fmt: skip
    assert UNKNOWN in only and coupon not in only
    by_coupon = viewer.get(f"/admin/imports/{iid}", params={"q": coupon}).text.split('id="records-table"')[1]
    assert by_coupon.count("<tr>") == 1 + 2 and UNKNOWN not in by_coupon  # header + the coupon's two lines
    # The htmx fragment of the results alone.
    frag = viewer.get(f"/admin/imports/{iid}", params={"verdict": "applied"},
                      headers={"HX-Request": "true", "HX-Target": "record-results"})  # fmt: skip
    assert frag.status_code == 200 and "<html" not in frag.text and coupon in frag.text

    original = viewer.get(f"/admin/imports/{iid}/original")
    assert original.status_code == 200 and original.content == data
    assert NAME in original.headers["content-disposition"]
    result = viewer.get(f"/admin/imports/{iid}/result")
    assert result.status_code == 200 and b"<importResult" in result.content.replace(b"ns0:", b"")
    root = FileStore(admin.api.settings.data_dir).tenant_root(uuid.UUID(admin.tenant["tenantId"]))
    on_disk = next((root / "integration/importResults").iterdir())
    assert result.content == on_disk.read_bytes()


def test_a_rejected_file_says_why_on_the_list(admin: Admin, ftp: FtpServer) -> None:
    assert upload(ftp, admin.tenant, REDEMPTION_IMPORT_DIR, NAME, b"<promotionRedemptions><redemption>").startswith("226")  # fmt: skip
    admin.api.run_jobs()
    text = text_of(admin.browser("viewer").get("/admin/imports", params={"status": "rejected"}).text)
    assert "Rejected: " in text and "Nothing in it was applied" in text
    assert "not well-formed" in text or "truncated" in text or "end" in text, text
    # A line the reader names is on the list too, as in the result file.
    bad = b"<promotionRedemptions>\n<redemption>\n<couponId>x</couponId>\n</redemption\n</promotionRedemptions>\n"
    other = NAME.replace("_1_", "_2_") if "_1_" in NAME else "20260310120001_2_redemptions.xml"
    assert upload(ftp, admin.tenant, REDEMPTION_IMPORT_DIR, other, bad).startswith("226")
    admin.api.run_jobs()
    text = text_of(admin.browser("viewer").get("/admin/imports", params={"status": "rejected"}).text)
    assert "not well-formed (line 5): expected" in text, text


def test_line_results_page_by_keyset(admin: Admin, ftp: FtpServer) -> None:
    lines = [_red(str(uuid.UUID(int=i + 1))) for i in range(60)]
    assert upload(ftp, admin.tenant, REDEMPTION_IMPORT_DIR, NAME, write_redemptions(lines)).startswith("226")
    admin.api.run_jobs()
    viewer = admin.browser("viewer")
    iid = _import_id(viewer.get("/admin/imports").text, NAME)
    first = viewer.get(f"/admin/imports/{iid}").text.split('id="records-table"')[1]
    assert first.count('data-verdict="notFound"') == 50 and "after=50" in first
    second = viewer.get(f"/admin/imports/{iid}", params={"after": 50}).text.split('id="records-table"')[1]
    assert second.count('data-verdict="notFound"') == 10 and "Next page" not in second
    assert str(uuid.UUID(int=60)) in second and str(uuid.UUID(int=50)) not in second


def test_another_tenants_imports_are_not_found(admin: Admin, ftp: FtpServer) -> None:
    other = admin.api.new_tenant()
    assert upload(ftp, other, REDEMPTION_IMPORT_DIR, NAME, write_redemptions([_red(UNKNOWN)])).startswith(
        "226"
    )
    admin.api.run_jobs()
    theirs = admin.browser("viewer", tenant=other)
    iid = _import_id(theirs.get("/admin/imports").text, NAME)
    assert theirs.get(f"/admin/imports/{iid}/result").status_code == 200
    mine = admin.browser("admin")
    assert NAME not in mine.get("/admin/imports").text
    for path in (f"/admin/imports/{iid}", f"/admin/imports/{iid}/original", f"/admin/imports/{iid}/result",
                 "/admin/imports/not-a-guid", "/admin/imports/../../etc/passwd/original"):  # fmt: skip
        assert mine.get(path).status_code == 404, path


def test_a_deleted_result_file_is_explained_not_served(admin: Admin, ftp: FtpServer) -> None:
    assert upload(ftp, admin.tenant, REDEMPTION_IMPORT_DIR, NAME, write_redemptions([_red(UNKNOWN)])).startswith("226")  # fmt: skip
    admin.api.run_jobs()
    viewer = admin.browser("viewer")
    iid = _import_id(viewer.get("/admin/imports").text, NAME)
    root = FileStore(admin.api.settings.data_dir).tenant_root(uuid.UUID(admin.tenant["tenantId"]))
    for path in (root / "integration/importResults").iterdir():
        path.unlink()
    (root / "integration/processed" / NAME).write_bytes(b"something else")  # same name, other bytes
    r = viewer.get(f"/admin/imports/{iid}/result")
    assert r.status_code == 404 and "no longer on the server" in r.text
    r = viewer.get(f"/admin/imports/{iid}/original")
    assert r.status_code == 404 and "no longer on the server" in r.text


def test_jobs_are_listed_with_progress_and_result(admin: Admin) -> None:
    api = admin.api
    pid = promotion(api, start="2026-03-01", end="2026-03-31")
    cid = contact(api, email="bo@example.com")
    r = api.post(f"/api/v2/promotions/multichannels/{pid}/bulk-assignments", json={"contactIds": [cid]})
    assert r.status_code in (200, 202), r.text
    viewer = admin.browser("viewer")
    queued = viewer.get("/admin/imports/jobs")
    assert "Bulk assignment" in queued.text and 'hx-trigger="every 2s"' in queued.text
    api.run_jobs()
    done = text_of(viewer.get("/admin/imports/jobs").text)
    assert "Assigned 1 · already held 0 · unknown 0" in done and "invalid" not in done
    assert f'<a href="/admin/promotions/{pid}">Ten off</a>' in viewer.get("/admin/imports/jobs").text


def test_only_signed_in_users_see_imports(admin: Admin) -> None:
    r = admin.api.client.get("/admin/imports", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")


def test_every_role_reads_imports_and_jobs(admin: Admin) -> None:
    for role in ("viewer", "marketer", "admin"):
        b = admin.browser(role)
        for path in ("/admin/imports", "/admin/imports?status=failed", "/admin/imports/jobs"):
            r = b.get(path)
            assert r.status_code == 200, (role, path)
            assert 'aria-current="page">Imports<' in r.text


def test_an_import_page_polls_while_it_runs_and_reloads_when_done(admin: Admin, ftp: FtpServer) -> None:
    assert upload(ftp, admin.tenant, REDEMPTION_IMPORT_DIR, NAME, write_redemptions([_red(UNKNOWN)])).startswith("226")  # fmt: skip
    viewer = admin.browser("viewer")
    iid = _import_id(viewer.get("/admin/imports").text, NAME)
    page = viewer.get(f"/admin/imports/{iid}").text
    assert "Waiting" in page and 'hx-trigger="every 2s"' in page
    poll = {"HX-Request": "true", "HX-Target": "import-head"}
    still = viewer.get(f"/admin/imports/{iid}", headers=poll)
    assert "HX-Refresh" not in still.headers and "<html" not in still.text
    admin.api.run_jobs()
    done = viewer.get(f"/admin/imports/{iid}", headers=poll)
    assert done.headers["HX-Refresh"] == "true" and "Imported" in done.text
